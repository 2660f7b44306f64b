"""What a strategy gets: calling an agent (with fallback and error policy), events, and the
result being built; so a strategy only decides who is asked what, in which order."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager, nullcontext
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from massgen import events as ev
from massgen.agents.handle import AgentHandle
from massgen.budget import Budget
from massgen.errors import AgentFailed, BudgetExceeded, RunError
from massgen.result import AgentAnswer, RunResult
from massgen.tools.context import ToolContext
from massgen.types import Completion, Turn, Usage

if TYPE_CHECKING:
    from massgen.config import OrchestratorConfig


@dataclass(slots=True)
class RunContext:
    """Shared by the strategy and the orchestrator for one run."""

    result: RunResult
    handles: dict[str, AgentHandle]
    emit: Callable[[ev.Event], None]
    config: OrchestratorConfig  # the team file's ``orchestrator:`` section
    seed: int = 0  # seeds each reviewer's shuffle of the answers, so a run can be replayed
    fallbacks: dict[str, str] = field(default_factory=dict)
    live: list[str] = field(default_factory=list)
    budget: Budget = field(default_factory=Budget)
    stream: bool = True  # token deltas as events; off when no subscriber shows them
    listening: bool = True  # if nobody hears events, per-turn ones are not even built
    observing: bool = False  # someone hears each provider attempt (RequestDone)
    trace: Callable[[str], str] | None = None  # an agent's open turn span, as a traceparent
    _limit: AbstractAsyncContextManager[Any] = field(default_factory=nullcontext)

    def __post_init__(self) -> None:
        if not self.live:
            self.live = list(self.handles)
        if self.config.max_parallel:
            self._limit = asyncio.Semaphore(self.config.max_parallel)

    async def call(self, name: str, turn: Turn) -> tuple[Completion, str] | None:
        """Ask agent ``name`` (then its fallback) for ``turn``: (completion, who answered),
        or ``None`` when it failed and the error strategy lets the run go on without it."""
        backup = self.fallbacks.get(name)
        takers = [name, backup] if backup in self.handles and backup != name else [name]
        for who in takers:
            try:
                return await self._ask(name, who, turn), who
            except (asyncio.CancelledError, BudgetExceeded):
                raise
            except Exception as e:
                error = e
                if who != takers[-1]:
                    failed = ev.AgentFailedEvent(agent=name, error=ev.short_error(e), dropped=False)
                    self.emit(failed)
        self.fail(name, error)
        return None

    async def _ask(self, seat: str, who: str, turn: Turn) -> Completion:
        handle = self.handles[who]
        held = self.budget.reserve_turn(handle, turn)  # refused if the budget cannot cover it
        if self.listening:
            self.emit(
                ev.AgentStarted(agent=seat, phase=turn.phase, round=turn.round, prompt=turn.prompt)
            )
        on_delta = (
            (lambda text: self.emit(ev.TokenDelta(agent=seat, text=text))) if self.stream else None
        )
        on_retry = ev.retries_told(self.emit, seat)
        # only then: a handle written before attempts were observed need not know of them
        observed: dict[str, Any] = {"on_attempt": self.emit} if self.observing else {}
        parent = functools.partial(self.trace, seat) if self.trace else ""
        tools = ToolContext(  # the turns its tools ask for (ask_agent) are observed alike
            who,
            run=self.result.run_id,
            emit=self._tool_event,
            peers=self.handles,
            trace=parent,
            **observed,
        )
        try:
            async with self._limit:
                completion = await handle.ask(turn, on_delta, tools, on_retry=on_retry, **observed)
        except BaseException:
            self.budget.release(held)
            raise
        self.budget.settle(held, completion)  # its actual cost is charged just below
        cost = handle.cost_of(completion)
        self._charge(cost, completion.requests, completion.usage)
        by = "" if who == seat else who  # the fallback that answered
        self.result.answers.append(
            AgentAnswer(
                agent=seat,
                phase=turn.phase,
                round=turn.round,
                text=completion.text,
                usage=completion.usage,
                cost=cost,
                latency=completion.latency,
                model=completion.model,
                answered_by=by,
                cached=completion.cached,
                reasoning=completion.reasoning,
            )
        )
        if self.listening:
            self.emit(ev.AgentAnswered.of(completion, seat, turn.phase, turn.round, cost, by))
        return completion

    def _tool_event(self, event: ev.Event) -> None:
        """Tool events of an agent's turn; a teammate's answer to ``ask_agent`` is counted
        in the run's requests, usage, cost and budget like any other answer."""
        if isinstance(event, ev.AgentStarted):
            self.budget.check()  # refuses the question (an error result) once spent
        elif isinstance(event, ev.AgentAnswered):
            self._charge(event.cost, event.requests, event.usage)
        self.emit(event)

    def _charge(self, cost: float, requests: int, usage: Usage) -> None:
        self.budget.add(cost)
        result = self.result
        result.requests += requests
        result.usage = result.usage + usage
        result.cost += cost

    def fail(self, name: str, error: BaseException) -> None:
        """Record a failed agent; abort unless the error strategy is ``continue``."""
        if self.config.error_strategy != "continue":
            raise AgentFailed(name, error) from error
        self.result.failed_agents[name] = ev.short_error(error)
        if name in self.live:
            self.live.remove(name)
        self.result.status = "degraded"
        self.emit(ev.AgentFailedEvent(agent=name, error=ev.short_error(error), dropped=True))
        if not self.live:
            failures = "; ".join(f"{n}: {e}" for n, e in self.result.failed_agents.items())
            raise RunError("every agent failed (" + failures + ")") from error

    async def gather(self, calls: Sequence[tuple[str, Turn]]) -> dict[str, tuple[Completion, str]]:
        """Run several agent calls at once; return the ones that answered, by agent (with
        ``fail_fast`` the first failure cancels the others)."""
        names = [name for name, _ in calls]
        try:
            async with asyncio.TaskGroup() as group:
                tasks = [group.create_task(self.call(name, turn)) for name, turn in calls]
        except BaseExceptionGroup as group_error:
            first = group_error.exceptions[0]
            raise first from first.__cause__  # keeps its own cause, hides the group
        return {n: r for n, t in zip(names, tasks, strict=True) if (r := t.result()) is not None}
