"""Typed events: every step of a run emits one (strategies never print). The live view,
the run record and metrics subscribe."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from massgen import errors as E
from massgen.errors import MassGenError
from massgen.result import RunResult
from massgen.types import Completion, OnRetry, Usage


@dataclass(slots=True, kw_only=True, unsafe_hash=True)
class Event:
    """One step of a run, handed to every subscriber: the same object to each, so never
    changed once emitted (``dataclasses.replace`` makes a changed copy), and hashed by its
    fields as a frozen one would be. Not a frozen dataclass: one of those is built three
    times slower (each field set through ``object.__setattr__``), and a streamed run builds
    one per token delta (bench/bench_events.py)."""

    at: float = field(default_factory=time.time)

    @property
    def kind(self) -> str:
        return type(self).__name__


@dataclass(slots=True, kw_only=True, unsafe_hash=True)
class AgentEvent(Event):
    """Of one agent (by name), and of the row a view keeps for it."""

    agent: str


@dataclass(slots=True, kw_only=True, unsafe_hash=True)
class RunStarted(Event):
    run_id: str
    task: str
    strategy: str
    agents: tuple[str, ...]


@dataclass(slots=True, kw_only=True, unsafe_hash=True)
class AgentStarted(AgentEvent):
    """An agent began a turn. ``phase``: answer, review, step, aggregate, present."""

    phase: str
    round: int = 0
    prompt: str = ""


@dataclass(slots=True, kw_only=True, unsafe_hash=True)
class TokenDelta(AgentEvent):
    text: str


@dataclass(slots=True, kw_only=True, unsafe_hash=True)
class AgentAnswered(AgentEvent):
    phase: str
    round: int
    text: str
    usage: Usage
    cost: float
    latency: float
    cached: bool = False
    answered_by: str = ""  # the fallback agent's name when one took over
    requests: int = 1  # provider requests behind the answer (0 from the cache)
    model: str = ""
    finish: str = "stop"  # why the answer ended (``length``: cut at max_tokens)

    @classmethod
    def of(
        cls, c: Completion, agent: str, phase: str, round: int, cost: float, answered_by: str = ""
    ) -> AgentAnswered:
        return cls(
            agent=agent,
            phase=phase,
            round=round,
            text=c.text,
            usage=c.usage,
            cost=cost,
            latency=c.latency,
            cached=c.cached,
            answered_by=answered_by,
            requests=c.requests,
            model=c.model,
            finish=c.finish_reason,
        )


@dataclass(slots=True, kw_only=True, unsafe_hash=True)
class AgentRetrying(AgentEvent):
    """Retry ``attempt`` of ``limit`` (0: not known) of a request, in ``wait`` seconds;
    ``reason`` is one of a few words (:func:`retry_reason`), fit for a metric's label."""

    attempt: int
    wait: float
    error: str
    limit: int = 0
    reason: str = "other"


@dataclass(slots=True, kw_only=True, unsafe_hash=True)
class RequestDone(AgentEvent):
    """One provider attempt by ``agent`` ended: ``status`` is ``ok``, the HTTP status,
    ``cancelled`` or the error's type; ``started`` a wall-clock time; ``model`` the one that
    answered (``gpt-4o-mini-2024-07-18``), else the one asked for, ``asked`` (the team
    file's ``gpt-4o-mini``). Built only when a subscriber sets ``wants_requests`` (metrics,
    traces): the view does not need it."""

    provider: str
    model: str
    attempt: int
    status: str
    started: float
    latency: float
    usage: Usage | None = None
    finish: str = ""
    error: str = ""
    phase: str = ""  # a nested turn's (ask, summary): whose requests these are when the
    # agent's own turn runs at the same time; "" for its own turns
    asked: str = ""


@dataclass(slots=True, kw_only=True, unsafe_hash=True)
class AgentWaiting(AgentEvent):
    """No worker answers a turn sent to one: ``note`` says what the run sees and does."""

    note: str


@dataclass(slots=True, kw_only=True, unsafe_hash=True)
class AgentFailedEvent(AgentEvent):
    error: str
    dropped: bool = True


@dataclass(slots=True, kw_only=True, unsafe_hash=True)
class ToolCalled(AgentEvent):
    """An agent's model called one of its tools. ``args`` is compact JSON, cut short;
    ``traced``: already a span of the worker that ran it."""

    tool: str
    call_id: str
    args: str = ""
    traced: bool = False


@dataclass(slots=True, kw_only=True, unsafe_hash=True)
class ToolResult(AgentEvent):
    """``output``: the start of the result (or the error); ``counted``: already in the
    metrics of the worker that ran it."""

    tool: str
    call_id: str
    ok: bool
    duration: float
    output: str = ""
    counted: bool = False


@dataclass(slots=True, kw_only=True, unsafe_hash=True)
class Ballot(AgentEvent):
    """The answers a reviewer is shown, shuffled for it alone, by label (``{"A": "bob"}``)."""

    round: int
    labels: dict[str, str]


@dataclass(slots=True, kw_only=True, unsafe_hash=True)
class VoteCast(AgentEvent):
    round: int
    for_agent: str
    reason: str = ""


@dataclass(slots=True, kw_only=True, unsafe_hash=True)
class Revised(AgentEvent):
    round: int
    text: str


@dataclass(slots=True, kw_only=True, unsafe_hash=True)
class RoundDone(Event):
    round: int
    votes: dict[str, str]  # voter -> agent voted for (the author standing for the answer)
    leader: str | None = None
    converged: bool = False
    agreement: float | None = None  # the leader's support among live agents (0..1)
    distribution: dict[str, int] = field(default_factory=dict)  # answer -> agents giving it


@dataclass(slots=True, kw_only=True, unsafe_hash=True)
class FinalAnswer(Event):
    text: str
    winner: str | None
    degraded: bool = False


@dataclass(slots=True, kw_only=True, unsafe_hash=True)
class RunEnded(Event):
    """The last event of every run, whatever happened (done, failed, interrupted)."""

    result: RunResult


Subscriber = Callable[[Event], None]


def short_error(error: BaseException) -> str:
    """An error in one line for events and results: our own message, or the type and text."""
    text = str(error) if isinstance(error, MassGenError) else f"{type(error).__name__}: {error}"
    return text.splitlines()[0][:300] if text else type(error).__name__


def retry_reason(error: BaseException) -> str:
    """Why a request is retried: rate_limit, timeout, connection, server_error or other."""
    kind = next((word for k, word in _REASONS if isinstance(error, k)), None)
    status = (error.status or 0) if isinstance(error, E.ProviderError) else 0
    return kind or ("server_error" if status >= 500 else "other")


_REASONS: tuple[tuple[type[Exception], str], ...] = ((E.RateLimited, "rate_limit"),)
_REASONS += ((E.ProviderTimeout, "timeout"), (E.ProviderConnectionError, "connection"))


def retries_told(emit: Subscriber, agent: str) -> OnRetry:
    """An ``on_retry`` callback that tells ``emit`` of each retry of ``agent``'s requests."""

    def on_retry(attempt: int, limit: int, wait: float, error: BaseException) -> None:
        why, reason = short_error(error), retry_reason(error)
        told = AgentRetrying(
            agent=agent, attempt=attempt, wait=wait, error=why, limit=limit, reason=reason
        )
        emit(told)

    return on_retry


class EventBus:
    """Fan events out to subscribers, in order (token deltas only to those whose class does
    not say ``wants_deltas = False``). One that raises is removed, its error kept in
    ``errors``: a display bug must never lose an answer.

    A subscriber whose class sets ``holds = True`` (traces, metrics) handles events later,
    many in one pass: the bus appends each to its ``held`` list instead of calling it, and
    calls it for a run's start and end only (and never with token deltas). One whose class
    sets ``hears`` (a set of event types) is handed only those, and every run's start and end.
    """

    def __init__(self, subscribers: list[Subscriber] | None = None) -> None:
        self._subscribers: tuple[Subscriber, ...] = tuple(subscribers or ())
        # by event type, whom the bus hands it to (made at its first emit, anew when one is
        # dropped): tuples, replaced and never changed, so emit walks them as they were
        self._routes: dict[type[Event], tuple[Subscriber, ...]] = {}
        self.errors: list[BaseException] = []

    @property
    def listening(self) -> bool:  # if not, an event need not even be built
        return bool(self._subscribers)

    @property
    def wants_deltas(self) -> bool:
        """Whether any subscriber shows token deltas (a false ``wants_deltas`` says no)."""
        return any(getattr(fn, "wants_deltas", True) for fn in self._subscribers)

    @property
    def wants_requests(self) -> bool:
        """Whether any subscriber hears each provider attempt (``wants_requests`` set true)."""
        return any(getattr(fn, "wants_requests", False) for fn in self._subscribers)

    def emit(self, event: Event) -> None:
        kind = type(event)
        targets = self._routes.get(kind)
        if targets is None:
            targets = self._routes[kind] = self._route(kind)
        for fn in targets:
            try:
                fn(event)
            except Exception as e:
                self._drop(fn, e)

    def _route(self, kind: type[Event]) -> tuple[Subscriber, ...]:
        """Whom events of ``kind`` go to: see the class's docstring."""
        if kind is RunStarted or kind is RunEnded:
            return self._subscribers
        if kind is TokenDelta:
            return tuple(f for f in self._subscribers if getattr(type(f), "wants_deltas", 1) != 0)
        return tuple(
            _keeper(f) for f in self._subscribers if kind in getattr(type(f), "hears", (kind,))
        )

    def _drop(self, fn: Subscriber, error: Exception) -> None:
        """Leave out ``fn``, which raised ``error`` (a subscriber, or its ``held.append``)."""
        held = getattr(fn, "__self__", None)  # a held list, if fn is its append

        def gone(f: Subscriber) -> bool:
            return f is fn or (held is not None and getattr(f, "held", None) is held)

        self._subscribers = tuple(f for f in self._subscribers if not gone(f))
        self._routes = {}
        self.errors.append(error)


def _keeper(fn: Subscriber) -> Subscriber:
    """What the bus calls with ``fn``'s events between a run's start and end: its
    ``held.append`` when its class sets ``holds``, else ``fn``."""
    held: list[Event] | None = getattr(fn, "held", None) if getattr(type(fn), "holds", 0) else None
    return held.append if held is not None else fn
