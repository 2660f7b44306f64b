"""How strategies reach agents: :class:`AgentHandle`, an in-process call here
(:class:`LocalHandle`) or a request over the bus to a worker (``distributed.connect``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from massgen.agents.agent import Agent, OnDelta
from massgen.backends.base import Backend
from massgen.memory.short_term import Folded, MemoryContext, Writer
from massgen.resilience import Bound
from massgen.tools.context import ToolContext
from massgen.types import NESTED, CallContext, Completion, OnAttempt, OnRetry, Turn


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
        on_attempt: OnAttempt | None = None,
    ) -> Completion: ...

    def cost_of(self, completion: Completion) -> float: ...


class LocalHandle:
    """An agent in this process, its backend inside the orchestrator's resilience stack."""

    def __init__(self, agent: Agent, wrap: Callable[[Writer], Backend] | None = None) -> None:
        self.agent, self.name = agent, agent.name
        self._wrap = wrap

    @property
    def backend(self) -> Bound:
        return self.bound()

    def bound(
        self,
        on_retry: OnRetry | None = None,
        who: Writer | None = None,
        on_attempt: OnAttempt | None = None,
        phase: str = "",
    ) -> Bound:
        """The stack of ``who`` (this agent by default), stamped with who asks and listens."""
        who = who or self.agent
        stack = self._wrap(who) if self._wrap else who.backend
        call = CallContext(who.name, on_retry=on_retry, on_attempt=on_attempt, phase=phase)
        return Bound(stack, call)

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
        on_attempt: OnAttempt | None = None,
        memory: MemoryContext | None = None,
        on_folded: Callable[[Folded], None] | None = None,
    ) -> Completion:
        """The turn through this orchestrator's stacks, its summarizer's too (Agent.respond)."""
        writer = self.agent.memory.summarizer
        nested = turn.phase if turn.phase in NESTED else ""
        return await self.agent.respond(
            turn,
            on_delta,
            backend=self.bound(on_retry, on_attempt=on_attempt, phase=nested),
            ctx=ctx,
            memory=memory,
            on_folded=on_folded,
            summarizer=self.bound(who=writer, on_attempt=on_attempt, phase="summary")
            if writer
            else None,
        )

    def cost_of(self, completion: Completion) -> float:
        return self.agent.cost_of(completion)
