"""The teams one ``massgen serve`` process answers as: each a team file's orchestrator, shared
by every request, plus one per session in use (its agents remember that session's earlier
runs, so its runs take turns). With ``redis:`` (or ``$MASSGEN_REDIS_URL``), turns go to live
workers as ``massgen run`` sends them (massgen/distributed/connect.py)."""

from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from massgen.backends.base import Backend
    from massgen.config import TeamConfig
    from massgen.distributed.target import BusTarget
    from massgen.observability.metrics import Metrics
    from massgen.orchestrator import Orchestrator


@dataclass(eq=False)
class Team:
    """A served team. ``options``: what the command line overrides (``max_cost``,
    ``cache_enabled``); ``told``: where the bus placement of its agents is said; ``make``:
    builds its orchestrator for a session (default: from ``config``); ``observer``: the
    metrics its orchestrators feed (``--metrics-port``)."""

    name: str
    config: TeamConfig | None
    bus: BusTarget | None = None
    options: dict[str, Any] = field(default_factory=dict)
    max_sessions: int = 64
    told: Callable[[str], None] = print
    make: Callable[[str | None], Orchestrator] | None = None
    observer: Metrics | None = None
    _shared: Orchestrator | None = None
    _sessions: OrderedDict[str, tuple[Orchestrator, asyncio.Lock, contextlib.AsyncExitStack]] = (
        field(default_factory=OrderedDict)
    )
    _stack: contextlib.AsyncExitStack = field(default_factory=contextlib.AsyncExitStack)

    async def start(self) -> None:
        """Build the shared orchestrator (and put it on the bus)."""
        self._shared = await self._open(self._stack, None)

    def seats(self) -> int:
        assert self._shared is not None
        return len(self._shared.seats())

    async def _open(self, stack: contextlib.AsyncExitStack, session: str | None) -> Orchestrator:
        from massgen.orchestrator import Orchestrator

        if self.make is not None:
            built = self.make(session)
        else:
            assert self.config is not None
            built = Orchestrator.from_config(self.config, session=session, **self.options)
        if self.observer is not None:
            built.subscribers.append(self.observer)
        await stack.enter_async_context(built)
        if self.bus is not None:
            from massgen.distributed.connect import distributed

            bus = self.bus
            on = distributed(built, bus.url, prefix=bus.prefix, secret=bus.secret)
            placed = await stack.enter_async_context(on)
            if session is None:
                self.told(f"massgen serve: {self.name}: {placed.describe()}")
        return built

    def backends(self) -> list[Backend]:
        """The backends of its orchestrators (the shared one and its sessions')."""
        open_ = [self._shared] if self._shared is not None else []
        open_ += [o for o, _, _ in list(self._sessions.values())]
        return [backend for o in open_ for backend in o.backends()]

    @contextlib.asynccontextmanager
    async def use(self, session: str | None) -> AsyncIterator[Orchestrator]:
        """The orchestrator for a run: the shared one, or the session's (held for the run)."""
        if session is None:
            assert self._shared is not None
            yield self._shared
            return
        if session not in self._sessions:
            await self._evict()
            stack = contextlib.AsyncExitStack()
            opened = await self._open(stack, session)
            if session in self._sessions:  # another request opened it meanwhile
                await stack.aclose()
            else:
                self._sessions[session] = (opened, asyncio.Lock(), stack)
        self._sessions.move_to_end(session)
        orchestrator, lock, _ = self._sessions[session]
        async with lock:
            yield orchestrator

    async def _evict(self) -> None:
        """Close the least recently used idle sessions' orchestrators beyond the cap (their
        memory stays in the store: a later request reopens them)."""
        idle = [name for name, (_, lock, _) in self._sessions.items() if not lock.locked()]
        while len(self._sessions) >= self.max_sessions and idle:
            closing, _, stack = self._sessions.pop(idle.pop(0))
            if self.observer is not None:  # its cache's counts stay counted
                self.observer.retire(closing.backends())
            await stack.aclose()

    async def aclose(self) -> None:
        while self._sessions:
            await self._sessions.popitem()[1][2].aclose()
        await self._stack.aclose()
