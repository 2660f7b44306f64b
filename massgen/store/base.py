"""The Store interface: key/value with TTL plus append-only logs searchable by words, one for
the cache, sessions, memory and state on SQLite and Redis (medium failures: TransportError)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Self


class Store(ABC):
    """Async key/value store with expiry, and append-only logs of opaque byte records. An
    entry past its TTL is never returned or counted, whatever the medium still holds."""

    @abstractmethod
    async def get(self, key: str) -> bytes | None: ...

    @abstractmethod
    async def set(self, key: str, value: bytes, ttl: float | None = None) -> None:
        """Replace ``key``'s value and TTL (seconds; ``None``: until deleted)."""

    @abstractmethod
    async def delete(self, key: str) -> bool:
        """Remove ``key``; ``True`` if a live value was there."""

    @abstractmethod
    async def delete_prefix(self, prefix: str) -> int:
        """Remove every key starting with ``prefix`` (``""``: all keys); how many were live."""

    @abstractmethod
    async def count(self, prefix: str = "") -> int: ...

    @abstractmethod
    async def append(self, log: str, record: bytes) -> None: ...

    @abstractmethod
    async def read(self, log: str, start: int = 0, limit: int | None = None) -> list[bytes]:
        """Records of ``log`` oldest first, as ``records[start:][:limit]`` gives them."""

    @abstractmethod
    async def length(self, log: str) -> int: ...

    @abstractmethod
    async def trim(self, log: str, keep_last: int) -> None:
        """Drop all but the newest ``keep_last`` records; ``trim(log, 0)`` deletes the log."""

    @abstractmethod
    async def search(
        self, log: str, query: str, text: Callable[[bytes], str], limit: int
    ) -> list[tuple[float, bytes]]:
        """At most ``limit`` records of ``log`` sharing a word with ``query``, best first, with
        their BM25 score (> 0; newer first among equals). ``text(record)`` gives a record's
        words (the same function for a log every time); words compare case-folded as FTS5's
        ``unicode61`` splits them; drop stop words from both sides yourself."""

    @abstractmethod
    async def aclose(self) -> None: ...

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


def check_ttl(ttl: float | None) -> None:  # a value dead on arrival is almost always a bug
    if ttl is not None and not ttl > 0:
        raise ValueError(f"ttl must be a positive number of seconds or None, not {ttl!r}")


def check_count(name: str, value: int | None) -> None:  # a negative limit or keep_last
    if value is not None and value < 0:
        raise ValueError(f"{name} must be >= 0, not {value!r}")
