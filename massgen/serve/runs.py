"""One run of a shared orchestrator whose events the caller reads as they come: what
``massgen serve`` streams and ``massgen mcp`` reports as progress. The run's subscriber is
its own (``Orchestrator.arun(subscribers=...)``), so concurrent runs never mix events."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from typing import TYPE_CHECKING, Any

from massgen.events import Event, RoundDone

if TYPE_CHECKING:
    from massgen.events import Subscriber
    from massgen.orchestrator import Orchestrator
    from massgen.result import RunResult


class LiveRun:
    """``orchestrator.arun(task, strategy)`` started now; ``async for event in run`` yields
    its events (token deltas only with ``deltas``) until it ends; ``await run.result()``
    returns its result or raises its error. ``cancel()`` stops it."""

    def __init__(
        self,
        orchestrator: Orchestrator,
        task: str,
        strategy: str | None = None,
        *,
        subscribers: Iterable[Subscriber] = (),
        deltas: bool = False,
    ) -> None:
        self._events: asyncio.Queue[Event | None] = asyncio.Queue()

        def heard(event: Event) -> None:
            self._events.put_nowait(event)

        heard.wants_deltas = deltas  # type: ignore[attr-defined]
        mine = [heard, *subscribers]
        self._run = asyncio.ensure_future(orchestrator.arun(task, strategy, subscribers=mine))
        self._run.add_done_callback(lambda _: self._events.put_nowait(None))

    async def __aiter__(self) -> AsyncIterator[Event]:
        while (event := await self._events.get()) is not None:
            yield event

    async def result(self) -> RunResult:
        return await self._run

    def cancel(self) -> None:
        self._run.cancel()

    async def stopped(self) -> None:
        """Cancel the run and wait until it has unwound (its backends saw the cancel)."""
        self._run.cancel()
        await asyncio.gather(self._run, return_exceptions=True)


def round_note(event: RoundDone) -> str:
    """A round in one line: its number, the leader and the votes cast."""
    votes = ", ".join(f"{v}->{f}" for v, f in event.votes.items())
    return f"round {event.round} done; leader {event.leader or '-'}; votes: {votes or 'none'}"


def summarize(result: RunResult, seats: int) -> dict[str, Any]:
    """What a run decided, for clients: who won, how the last round voted, agreement (the
    winner's votes among the agents still running), usage and cost."""
    last = max((v.round for v in result.votes), default=None)
    votes = {v.voter: v.for_agent for v in result.votes if v.round == last}
    return {
        "winner": result.winner,
        "votes": votes,
        "rounds": result.rounds,
        "agreement": result.agreement(seats),
        "requests": result.requests,
        "tokens": result.usage.total_tokens,
        "cost": result.cost,
        "duration": round(result.duration, 3),
        "status": "degraded" if result.degraded else "ok",
        "strategy": result.strategy,
    }
