"""The in-process store, for tests and one-shot runs that want no file."""

from __future__ import annotations

import time
from collections.abc import Callable

from massgen.store.sqlite import SQLiteStore


class MemoryStore(SQLiteStore):
    """:class:`~massgen.store.base.Store` in a private in-memory SQLite database: the same
    code as the file store, gone with the object. ``clock`` decides expiry (tests pass a
    fake one)."""

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        super().__init__(":memory:", clock=clock)

    def __repr__(self) -> str:
        return "MemoryStore()"
