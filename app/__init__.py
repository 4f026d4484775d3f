"""Keel: one aiohttp process with pluggable storage, cache, limits, breakers, jobs, WebSockets."""

__version__ = "0.1.0"
