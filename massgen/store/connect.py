"""Open a store from one string, as the config and the CLI spell it."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from massgen.errors import ConfigError
from massgen.store.base import Store
from massgen.store.memory import MemoryStore
from massgen.store.sqlite import SQLiteStore

_REDIS_SCHEMES = ("redis://", "rediss://", "unix://")


def open_store(
    target: str | Path,
    *,
    prefix: str = "massgen:",
    clock: Callable[[], float] = time.time,
) -> Store:
    """The store ``target`` names.

    - ``memory://``: a fresh :class:`~massgen.store.memory.MemoryStore`;
    - ``redis://…``, ``rediss://…`` (TLS), ``unix://…``: a
      :class:`~massgen.store.redis_store.RedisStore` with keys under ``prefix``;
    - ``sqlite:///relative/file`` or ``sqlite:////absolute/file`` (SQLAlchemy's spelling),
      or a plain path: a :class:`~massgen.store.sqlite.SQLiteStore`.

    ``clock`` only matters to the memory and SQLite stores; Redis expires keys itself.
    """
    if isinstance(target, Path):
        return SQLiteStore(target, clock=clock)
    text = target.strip()
    lower = text.lower()
    if lower == "memory://":
        return MemoryStore(clock=clock)
    if lower.startswith(_REDIS_SCHEMES):
        from massgen.store.redis_store import RedisStore  # imports redis: only when asked

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
