"""massgen.store: key/value with TTL plus append-only logs, on SQLite, Redis or in memory.
Importing it does not import redis: :class:`RedisStore` loads on first use."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from massgen.store.base import Store
from massgen.store.connect import open_store
from massgen.store.memory import MemoryStore
from massgen.store.sqlite import SQLiteStore

if TYPE_CHECKING:
    from massgen.store.redis_store import RedisStore

__all__ = ["MemoryStore", "RedisStore", "SQLiteStore", "Store", "open_store"]


def __getattr__(name: str) -> Any:
    if name == "RedisStore":  # lazy: it imports redis
        from massgen.store.redis_store import RedisStore

        return RedisStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
