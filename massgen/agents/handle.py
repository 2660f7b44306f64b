"""How strategies reach agents: an in-process call here, a request over the bus elsewhere.

Strategies see only :class:`AgentHandle`; whether the agent runs in this process or on a
worker across the network is the handle's business.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from massgen.agents.agent import Agent, OnDelta
from massgen.agents.turn import Turn
from massgen.backends.base import Backend
from massgen.memory.short_term import Folded, MemoryContext
from massgen.tools.context import ToolContext
from massgen.types import Completion


class AgentHandle(Protocol):
    name: str

    @property
    def supports_tools(self) -> bool: ...

    async def ask(
        self, turn: Turn, on_delta: OnDelta | None = None, ctx: ToolContext | None = None
    ) -> Completion:
        """Answer ``turn``; ``ctx`` carries the run's event sink and peers to its tools."""

    def cost_of(self, completion: Completion) -> float: ...


class LocalHandle:
    """A handle to an agent in this process.

    ``wrap`` layers the resilience wrappers around the agent's backend (built lazily, on the
    first turn); agents sharing one backend should share one ``wrap`` result, which the
    orchestrator arranges.
    """

    def __init__(self, agent: Agent, wrap: Callable[[Backend], Backend] | None = None) -> None:
        self.agent = agent
        self.name = agent.name
        self._wrap = wrap
        self._backend: Backend | None = None
        agent.local_handle = self

    @property
    def backend(self) -> Backend:
        if self._backend is None:
            raw = self.agent.backend
            self._backend = self._wrap(raw) if self._wrap else raw
        return self._backend

    @property
    def supports_tools(self) -> bool:
        return self.backend.supports_tools

    async def ask(
        self, turn: Turn, on_delta: OnDelta | None = None, ctx: ToolContext | None = None
    ) -> Completion:
        return await self.agent.respond(turn, on_delta, backend=self.backend, ctx=ctx)

    async def answer(
        self,
        turn: Turn,
        memory: MemoryContext,
        on_delta: OnDelta | None = None,
        on_folded: Callable[[Folded], None] | None = None,
        ctx: ToolContext | None = None,
    ) -> tuple[Completion, Folded | None]:
        """Answer a turn with memory its caller owns (a worker's turn for a run elsewhere;
        see :meth:`Agent.respond_with`)."""
        return await self.agent.respond_with(
            turn,
            memory,
            on_delta,
            backend=self.backend,
            ctx=ctx,
            on_folded=on_folded,
        )

    def cost_of(self, completion: Completion) -> float:
        return self.agent.cost_of(completion)
