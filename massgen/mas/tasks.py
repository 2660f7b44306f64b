"""Starting and stopping: ``async with`` for what starts, and cancelling tasks reliably."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any, Self


async def cancel_and_wait(tasks: Iterable[asyncio.Task[Any]]) -> None:
    """Cancel ``tasks`` until every one is gone: redis-py may swallow a cancellation that
    lands between two reads of one command."""
    pending = {t for t in tasks if not t.done()}
    while pending:
        for t in pending:
            t.cancel()
        _, pending = await asyncio.wait(pending, timeout=0.05)


class Lifecycle:
    """``async with`` runs ``start()`` then, on the way out, ``stop()``."""

    async def start(self) -> None:
        raise NotImplementedError

    async def stop(self) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
