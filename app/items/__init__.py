"""The items resource: validation, ids and cursors (model), storage across shards (store)."""
