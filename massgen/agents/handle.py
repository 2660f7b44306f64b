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
from massgen.resilience import Bound
from massgen.tools.context import ToolContext
from massgen.types import CallContext, Completion

OnRetry = Callable[[int, int, float, BaseException], None]
"""Told ``(attempt, max_retries, wait, error)`` before each retry's wait."""


class AgentHandle(Protocol):
    name: str

    @property
    def supports_tools(self) -> bool: ...

    async def ask(
        self,
        turn: Turn,
        on_delta: OnDelta | None = None,
        ctx: ToolContext | None = None,
        *,
        on_retry: OnRetry | None = None,
    ) -> Completion:
        """Answer ``turn``; ``ctx`` carries the run's event sink and peers to its tools,
        ``on_retry`` hears each retry of its requests."""

    def cost_of(self, completion: Completion) -> float: ...


class LocalHandle:
    """A handle to an agent in this process.

    ``wrap`` gives the agent's backend in its resilience stack (built lazily, on the first
    turn; the orchestrator's :meth:`~massgen.orchestrator.Orchestrator._wrap`). Each request
    is stamped with who asks (:class:`~massgen.types.CallContext`) for the wrappers.
    """

    def __init__(self, agent: Agent, wrap: Callable[[Agent], Backend] | None = None) -> None:
        self.agent = agent
        self.name = agent.name
        self._wrap = wrap
        self._backend: Bound | None = None
        agent.local_handle = self

    @property
    def backend(self) -> Bound:
        if self._backend is None:
            stack = self._wrap(self.agent) if self._wrap else self.agent.backend
            self._backend = Bound(stack, CallContext(self.name))
        return self._backend

    def _bound(self, on_retry: OnRetry | None) -> Backend:
        backend = self.backend
        if on_retry is None:
            return backend
        return Bound(backend.inner, CallContext(self.name, on_retry=on_retry))

    @property
    def supports_tools(self) -> bool:
        return self.backend.supports_tools

    async def ask(
        self,
        turn: Turn,
        on_delta: OnDelta | None = None,
        ctx: ToolContext | None = None,
        *,
        on_retry: OnRetry | None = None,
    ) -> Completion:
        return await self.agent.respond(turn, on_delta, backend=self._bound(on_retry), ctx=ctx)

    async def answer(
        self,
        turn: Turn,
        memory: MemoryContext,
        on_delta: OnDelta | None = None,
        on_folded: Callable[[Folded], None] | None = None,
        ctx: ToolContext | None = None,
        on_retry: OnRetry | None = None,
    ) -> tuple[Completion, Folded | None]:
        """Answer a turn with memory its caller owns (a worker's turn for a run elsewhere;
        see :meth:`Agent.respond_with`)."""
        return await self.agent.respond_with(
            turn,
            memory,
            on_delta,
            backend=self._bound(on_retry),
            ctx=ctx,
            on_folded=on_folded,
        )

    def cost_of(self, completion: Completion) -> float:
        return self.agent.cost_of(completion)
