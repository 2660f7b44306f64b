"""How strategies reach agents: :class:`AgentHandle`, an in-process call here
(:class:`LocalHandle`) or a request over the bus to a worker (``distributed.remote``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from massgen.agents.agent import Agent, OnDelta
from massgen.backends.base import Backend
from massgen.memory.short_term import Folded, MemoryContext
from massgen.resilience import Bound
from massgen.tools.context import ToolContext
from massgen.types import CallContext, Completion, OnRetry, Turn


class AgentHandle(Protocol):
    """An agent as strategies see it: ``ctx`` carries the run's event sink and peers to its
    tools, ``on_retry`` hears each retry of its requests."""

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
    ) -> Completion: ...

    def cost_of(self, completion: Completion) -> float: ...


class LocalHandle:
    """A handle to an agent in this process. ``wrap`` gives the agent's backend in its
    resilience stack (built on the first turn); each request is stamped with who asks."""

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
        memory: MemoryContext | None = None,
        on_folded: Callable[[Folded], None] | None = None,
    ) -> Completion:
        """``memory``/``on_folded``: memory the caller owns (see :meth:`Agent.respond`)."""
        backend: Backend = self.backend
        if on_retry is not None:
            backend = Bound(self.backend.inner, CallContext(self.name, on_retry=on_retry))
        return await self.agent.respond(
            turn, on_delta, backend=backend, ctx=ctx, memory=memory, on_folded=on_folded
        )

    def cost_of(self, completion: Completion) -> float:
        return self.agent.cost_of(completion)
