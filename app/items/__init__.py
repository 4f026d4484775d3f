"""The items resource: validation, ids and cursors (model), storage across shards (store,
published as `app[ITEMS]`). Its HTTP handlers are `app/api/items.py`."""

from app.items.model import ItemEvent, item_cache_key
from app.items.store import ITEMS, ItemStore

__all__ = ["ITEMS", "ItemEvent", "ItemStore", "item_cache_key"]
