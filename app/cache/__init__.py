"""The cache: one small backend interface, an in-process and a Redis backend, cache-aside."""
