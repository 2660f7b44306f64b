"""The in-process store: dicts and lists, gone when the process ends.

For tests and one-shot runs that want no file. Expired entries are dropped as time passes
(a heap ordered by expiry), so a long run full of short-lived entries does not grow.
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Callable

from massgen.store.base import Store, check_keep, check_limit, check_ttl
from massgen.store.words import Text, WordIndex


class MemoryStore(Store):
    """:class:`~massgen.store.base.Store` in process memory.

    ``clock`` (seconds, default :func:`time.time`) decides expiry; tests pass a fake one to
    expire entries without waiting.
    """

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self._values: dict[str, tuple[bytes, float | None]] = {}
        self._expiries: list[tuple[float, str]] = []  # heap; stale items are skipped
        self._logs: dict[str, list[bytes]] = {}
        self._appended: dict[str, int] = {}  # records ever appended, per log (for search)
        self._words = WordIndex()

    def __repr__(self) -> str:
        return f"MemoryStore({len(self._values)} keys, {len(self._logs)} logs)"

    def _purge(self) -> None:
        now = self.clock()
        heap = self._expiries
        while heap and heap[0][0] <= now:
            expires, key = heapq.heappop(heap)
            entry = self._values.get(key)
            if entry is not None and entry[1] == expires:
                del self._values[key]

    async def get(self, key: str) -> bytes | None:
        self._purge()
        entry = self._values.get(key)
        return None if entry is None else entry[0]

    async def set(self, key: str, value: bytes, ttl: float | None = None) -> None:
        check_ttl(ttl)
        self._purge()
        expires = None if ttl is None else self.clock() + ttl
        self._values[key] = (bytes(value), expires)
        if expires is not None:
            heapq.heappush(self._expiries, (expires, key))

    async def delete(self, key: str) -> bool:
        self._purge()
        return self._values.pop(key, None) is not None

    async def delete_prefix(self, prefix: str) -> int:
        self._purge()
        doomed = [k for k in self._values if k.startswith(prefix)]
        for k in doomed:
            del self._values[k]
        return len(doomed)

    async def count(self, prefix: str = "") -> int:
        self._purge()
        return sum(1 for k in self._values if k.startswith(prefix))

    async def append(self, log: str, record: bytes) -> None:
        self._logs.setdefault(log, []).append(bytes(record))
        self._appended[log] = self._appended.get(log, 0) + 1

    async def read(self, log: str, start: int = 0, limit: int | None = None) -> list[bytes]:
        check_limit(limit)
        records = self._logs.get(log, [])[start:]
        return records if limit is None else records[:limit]

    async def length(self, log: str) -> int:
        return len(self._logs.get(log, ()))

    async def trim(self, log: str, keep_last: int) -> None:
        check_keep(keep_last)
        records = self._logs.get(log)
        if records is None:
            return
        if keep_last == 0:
            del self._logs[log]
        else:
            del records[:-keep_last]

    async def search(
        self, log: str, query: str, text: Text, limit: int
    ) -> list[tuple[float, bytes]]:
        check_limit(limit)

        async def fetch(seen: int) -> tuple[int, int, list[bytes]]:
            records = self._logs.get(log, [])
            appended = self._appended.get(log, 0)
            unseen = min(appended - seen, len(records))
            return appended, len(records), records[len(records) - unseen :]

        return await self._words.search(log, query, text, limit, fetch)

    async def aclose(self) -> None:
        """Stop the search thread; the data stays readable until the store is dropped."""
        await self._words.aclose()
