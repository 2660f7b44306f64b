"""Calls made together, run as one job (group commit): calls made while a job runs go in
the next one. The result log groups fsyncs with it, the SQLite store reads and writes."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


class Grouped(Generic[Item, Result]):
    """``job`` gets the items of one group and returns one result per item, in order; if it
    raises, every call of that group raises it (the next group still runs)."""

    def __init__(self, job: Callable[[list[Item]], Awaitable[list[Result]]]) -> None:
        self._job = job
        self._queue: list[tuple[Item, asyncio.Future[Result]]] = []
        self._task: asyncio.Task[None] | None = None
        self.trips = 0  # jobs run: fewer than calls when calls were grouped

    def submit(self, item: Item) -> asyncio.Future[Result]:
        """Queue ``item``; the future resolves when its group's job has run."""
        waiter: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self._queue.append((item, waiter))
        if self._task is None:
            self._task = asyncio.create_task(self._drain())
        return waiter

    async def __call__(self, item: Item) -> Result:
        return await self.submit(item)

    def take_pending(self) -> list[Item]:
        """Remove (for a synchronous close) the items no job has taken, cancelling callers."""
        queue, self._queue = self._queue, []
        for _, w in queue:
            w.cancel()
        return [item for item, _ in queue]

    async def _drain(self) -> None:
        try:
            while self._queue:
                queue, self._queue = self._queue, []
                waiters = [w for _, w in queue]
                self.trips += 1
                try:
                    results = await self._job([item for item, _ in queue])
                except asyncio.CancelledError:
                    for w in waiters:
                        w.cancel()
                    raise
                except Exception as e:
                    for w in waiters:
                        if not w.done():
                            w.set_exception(e)
                    continue
                for w, result in zip(waiters, results, strict=True):
                    if not w.done():
                        w.set_result(result)
        finally:
            self._task = None
