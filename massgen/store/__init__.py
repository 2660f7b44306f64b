"""massgen.store: key/value with TTL plus append-only logs, on SQLite, Redis or in memory.
Importing it does not import redis: :class:`RedisStore` loads on first use."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from massgen.errors import ConfigError
from massgen.store.base import Store
from massgen.store.sqlite import MemoryStore, SQLiteStore

if TYPE_CHECKING:
    from massgen.store.redis_client import RedisStore

__all__ = ["MemoryStore", "RedisStore", "SQLiteStore", "Store", "open_store"]


def __getattr__(name: str) -> Any:
    if name == "RedisStore":  # lazy: it imports redis
        from massgen.store.redis_client import RedisStore

        return RedisStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def open_store(
    target: str | Path, *, prefix: str = "massgen:", clock: Callable[[], float] = time.time
) -> Store:
    """The store ``target`` names: ``memory://``; ``redis://``, ``rediss://`` (TLS) or
    ``unix://`` (keys under ``prefix``); else a SQLite file, as a path or ``sqlite:///path``
    (SQLAlchemy's spelling). ``clock`` decides expiry for memory and SQLite only."""
    if isinstance(target, Path):
        return SQLiteStore(target, clock=clock)
    text = target.strip()
    lower = text.lower()
    if lower == "memory://":
        return MemoryStore(clock=clock)
    if lower.startswith(("redis://", "rediss://", "unix://")):
        from massgen.store.redis_client import RedisStore

        return RedisStore(text, prefix=prefix)
    if lower.startswith("sqlite:///"):
        text = text[len("sqlite:///") :]
    elif "://" in text:
        raise ConfigError(
            f"unknown store {text.split('://', 1)[0]!r}://",
            hint="use memory://, a file path, sqlite:///path, redis://host or rediss://host",
        )
    if not text:
        raise ConfigError(
            "the store path is empty", hint="give a file path, e.g. .massgen/state.sqlite3"
        )
    return SQLiteStore(text, clock=clock)
