"""Host a team's LLM agents on the bus: each is a replica bus agent named after the agent,
answering turns with the memory the turn carries (never its own), so concurrent runs never
mix. Delivery is at least once; only the first reply counts. Also what crosses the bus with
a turn: its values, tool events, error (rebuilt as the same class, so fallback behaves as in
one process) and streamed deltas. Malformed payloads: TransportError."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import logging
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import ValidationError

from massgen import errors as E
from massgen import events as ev
from massgen.agents.handle import AgentHandle, LocalHandle
from massgen.backends.base import layers
from massgen.errors import ConfigError, MassGenError, TransportError
from massgen.mas import DEFAULT_PREFIX, BusSettings, MemoryHub, Transport, resolve_transport
from massgen.mas import Agent as BusAgent
from massgen.mas.message import AgentMessage, MessageKind
from massgen.mas.transport import Lifecycle
from massgen.memory.short_term import Folded, MemoryContext
from massgen.resilience import RetryingBackend, RetryPolicy
from massgen.serialize import from_dict, to_dict
from massgen.tools.context import ToolContext
from massgen.types import Completion, Turn, role_excerpt

if TYPE_CHECKING:
    from massgen.observability.tracing import Tracing
    from massgen.orchestrator import Orchestrator

log = logging.getLogger(__name__)
_HOST = socket.gethostname()
T = TypeVar("T")

LLM = "llm"  # the capability of every hosted LLM agent, besides its own
DEFAULT_CONCURRENCY = 8
DRAIN_TIMEOUT = 10.0  # on stop, running turns get this long (the bus default cancels at once)
DEFAULT_BACKEND_TIMEOUT = 60.0  # a provider request's seconds, when the backend does not say
MARGIN = 5.0  # round trips over the bus, encoding, a busy event loop
FEED_PREFIX = "massgen-live-"  # the bus ids of runs' live feeds
INTERVAL = 0.02  # seconds between two delta messages of one turn


def turn_timeout(backend_timeout: float | None, policy: RetryPolicy | None, lease: float) -> float:
    """Seconds a caller waits for a remote turn: the worst case of the worker's whole retry
    budget (every attempt to the timeout, every pause its longest), plus the lease after
    which a dead worker's turn is redelivered, plus a margin. Queueing is not counted."""
    attempt = DEFAULT_BACKEND_TIMEOUT
    if backend_timeout is not None and backend_timeout > 0:
        attempt = backend_timeout
    total = attempt + lease + MARGIN
    if policy is not None:
        for n in range(policy.max_retries):
            pause = min(policy.max_delay, policy.base_delay * policy.factor**n)
            total += attempt + max(pause, policy.retry_after_cap)
    return total


@dataclass(slots=True)
class TurnReport:
    """One turn a worker handled, for its log; ``error`` when it failed."""

    agent: str
    phase: str
    round: int
    run: str
    seconds: float
    attempt: int
    error: str | None = None
    note: str = ""


OnTurn = Callable[[TurnReport], None]


def role_digest(role: str) -> str:
    """A short fingerprint of a role: callers check they talk to the agent they configured."""
    return hashlib.sha256(role.encode()).hexdigest()[:12]


# The events a worker's turn sends back with its answer: the calls of its tools.
TOOL_EVENTS: dict[str, type[ev.Event]] = {c.__name__: c for c in (ev.ToolCalled, ev.ToolResult)}


# The error classes rebuilt on the caller's side: built like ProviderError, like ConfigError,
# or from a message alone.
_KINDS: dict[str, type[E.MassGenError]] = {
    name: cls
    for name, cls in vars(E).items()
    if isinstance(cls, type)
    and issubclass(cls, E.MassGenError)
    and cls.__init__ in {E.ProviderError.__init__, E.ConfigError.__init__, Exception.__init__}
    and cls is not E.Interrupted  # a worker stopping is not the user stopping the run
}


@dataclass(frozen=True, slots=True)
class ErrorInfo:
    """An error as it crosses the bus: its nearest class in :data:`_KINDS` and its fields."""

    message: str
    name: str = "Exception"
    type: str | None = None
    provider: str = ""
    status: int | None = None
    retry_after: float | None = None
    retryable: bool | None = None
    file: str | None = None
    line: int | None = None
    key: str | None = None
    hint: str | None = None


@dataclass(frozen=True, slots=True)
class TurnRequest:
    """A turn as a run sends it; a worker that takes it after ``deadline`` skips it (nobody
    waits), and streams its deltas to ``stream`` (``to``: the run's feed, ``key``) if set;
    ``traceparent``: the run's span of the turn (W3C), parent of the worker's own."""

    turn: Turn
    run: str = ""
    deadline: float | None = None
    memory: MemoryContext = MemoryContext()
    stream: dict[str, str] | None = None
    traceparent: str = ""


@dataclass(slots=True)
class TurnReply:
    """A worker's answer to a turn: its completion and tool events, or its error; and the
    summary it wrote first, if any (kept even when the answer failed)."""

    worker: str = ""
    completion: Completion | None = None
    events: list[dict[str, Any]] = field(default_factory=list)
    error: dict[str, Any] | None = None
    folded: Folded | None = None


def decode(cls: type[T], data: Any, what: str) -> T:
    """``data`` as a ``cls``, or a TransportError naming the first bad field."""
    try:
        return from_dict(cls, data)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or what
        raise E.TransportError(f"malformed {what} on the bus: {where}: {first['msg']}") from None


def completion_from_dict(data: Any) -> Completion:
    return decode(Completion, data, "completion")


def tool_events_to_list(events: list[ev.Event]) -> list[dict[str, Any]]:
    return [{"type": e.kind, **to_dict(e)} for e in events if e.kind in TOOL_EVENTS]


def tool_events_from_list(data: Any) -> list[ev.Event]:
    """The tool events of a reply; anything that is not one is refused."""
    if not isinstance(data, list):
        raise E.TransportError("malformed tool events on the bus: not a list")
    out: list[ev.Event] = []
    for item in data:
        cls = TOOL_EVENTS.get(str(item.get("type"))) if isinstance(item, dict) else None
        if cls is None:
            raise E.TransportError("malformed tool events on the bus: unknown event")
        out.append(decode(cls, {k: v for k, v in item.items() if k != "type"}, "tool event"))
    return out


def error_to_dict(error: BaseException) -> dict[str, Any]:
    """What the caller needs to raise the same error: class, message and its fields."""
    kind = next((c.__name__ for c in type(error).__mro__ if _KINDS.get(c.__name__) is c), None)
    message, fields = str(error), {}
    if isinstance(error, E.ProviderError):
        message = str(error.args[0]) if error.args else ""
        fields = {f: getattr(error, f) for f in ("provider", "status", "retry_after", "retryable")}
    elif isinstance(error, E.ConfigError):
        message = error.message
        fields = {f: getattr(error, f) for f in ("file", "line", "key", "hint")}
    return to_dict(ErrorInfo(message, type(error).__name__, kind, **fields))


def error_from_dict(data: Any, source: str = "?") -> Exception:
    """The error ``data`` describes, ready to raise; ``source`` names the remote agent."""
    try:
        info = from_dict(ErrorInfo, data)
    except ValidationError:
        return E.TransportError(f"agent {source!r} sent a malformed error")
    cls = _KINDS.get(str(info.type))
    if cls is None:
        return E.RemoteError(source, f"{info.name}: {info.message}")
    if issubclass(cls, E.ProviderError):
        error = cls(
            info.message, provider=info.provider, status=info.status, retry_after=info.retry_after
        )
        if info.retryable is not None and info.retryable != cls.retryable:
            error.retryable = info.retryable
        return error
    if issubclass(cls, E.ConfigError):
        return cls(info.message, file=info.file, line=info.line, key=info.key, hint=info.hint)
    return cls(info.message)


def event_id(event: ev.Event) -> tuple[str, str]:
    """What tells a turn's tool events apart: kind and call id."""
    return (event.kind, str(getattr(event, "call_id", "")))


class DeltaPump:
    """A worker's ``on_delta`` for one turn: forwards deltas and tool events to the run's
    feed, coalesced (one message per ``interval`` at most) and numbered."""

    def __init__(self, agent: BusAgent, to: str, key: str, interval: float = INTERVAL) -> None:
        self._agent, self._to, self._key, self._interval = agent, to, key, interval
        self._buffer: list[str] = []
        self._events: list[ev.Event] = []
        self._seq = self.sent = 0  # pieces numbered; pieces the bus took
        self._task: asyncio.Task[None] | None = None
        self._closing = asyncio.Event()

    def __call__(self, text: str) -> None:
        if text:
            self._add(self._buffer, text)

    def event(self, event: ev.Event) -> None:
        if event.kind in TOOL_EVENTS:
            self._add(self._events, event)

    def _add(self, into: list[Any], item: object) -> None:
        if not self._closing.is_set():
            into.append(item)
            if self._task is None:
                self._task = asyncio.ensure_future(self._run())

    async def close(self) -> None:
        """Send what is left (before the reply is committed, so it usually arrives first)."""
        self._closing.set()
        if self._task is not None:
            await self._task
        await self._flush()

    def cancel(self) -> None:
        self._closing.set()
        if self._task is not None:
            self._task.cancel()

    async def _run(self) -> None:
        """Send what came in, then wait out the interval (or the close); stop when idle."""
        try:
            while self._buffer or self._events:
                await self._flush()
                if self._closing.is_set():
                    return
                with contextlib.suppress(TimeoutError):  # pace: one message per interval
                    async with asyncio.timeout(self._interval):
                        await self._closing.wait()
        finally:
            self._task = None

    async def _flush(self) -> None:
        if not (self._buffer or self._events):
            return
        text, events = "".join(self._buffer), tool_events_to_list(self._events)
        self._buffer, self._events = [], []
        self._seq += 1
        piece: dict[str, Any] = {"key": self._key, "seq": self._seq, "text": text}
        if events:
            piece["events"] = events
        try:
            await self._agent.send(self._to, {"delta": piece})
            self.sent += 1
        except MassGenError as e:  # the live view misses a piece; the reply has the answer
            log.debug("agent %s: a delta was not sent: %s", self._agent.id, e)


class HostedAgent(BusAgent):
    """One LLM agent on the bus, answering turns with its backend; its turn counters are in
    its registry record (``massgen agents list``)."""

    def __init__(
        self,
        handle: LocalHandle,
        *,
        peers: dict[str, AgentHandle],
        settings: BusSettings,
        concurrency: int,
        team: str | None = None,
        on_turn: OnTurn | None = None,
        observer: ev.Subscriber | None = None,
        tracing: Tracing | None = None,
        **bus: Any,
    ) -> None:
        agent = handle.agent
        backend = handle.backend  # built now: a bad backend stops the worker before Redis
        policy = next((b.policy for b in layers(backend) if isinstance(b, RetryingBackend)), None)
        raw = agent.backend
        static = {
            "backend": raw.provider,
            "model": agent.model or raw.model,
            "role": role_excerpt(agent.role),
            "role_digest": role_digest(agent.role),
            "tools": backend.supports_tools,
            "fallback": agent.fallback,
            "team": team,
            "turn_timeout": turn_timeout(getattr(raw, "timeout", None), policy, settings.lease),
            "heartbeat_ttl": settings.heartbeat_ttl,
            "concurrency": concurrency,
        }
        super().__init__(
            agent.name,
            [*agent.capabilities, LLM],
            metadata=static,
            replica=True,
            concurrency=concurrency,
            settings=settings,
            **bus,
        )
        self.handle, self.peers = handle, peers  # the worker's handles: ask_agent reaches these
        self.in_flight = self.processed = self.failed = 0
        self._on_turn, self._observer = on_turn, observer  # observer: metrics
        self.tracing = tracing  # spans of each turn run here
        self.address = f"{_HOST}/{self.instance_id}"  # as the run's log names this instance

    def get_metadata(self) -> dict[str, Any]:
        counts = {"in_flight": self.in_flight, "processed": self.processed, "failed": self.failed}
        return {**super().get_metadata(), **counts}

    async def on_message(self, message: AgentMessage) -> None:
        if message.kind is not MessageKind.REQUEST:
            log.warning("agent %s ignored a %s from %s", self.id, message.kind, message.sender_id)
            return
        started = time.perf_counter()
        run = str(message.payload.get("run") or message.sender_id)
        report = TurnReport(self.id, "?", 0, run, 0.0, message.attempt)
        try:
            request = decode(TurnRequest, message.payload, "turn")
        except TransportError as e:
            return await self._finish(message, report, e)
        turn = request.turn
        report.phase, report.round = turn.phase, turn.round
        if request.deadline is not None and time.time() > request.deadline:  # nobody waits
            expired = TransportError(f"agent {self.id!r}: the turn expired before a worker took it")
            return await self._finish(message, report, expired)
        self.in_flight += 1
        await self._publish()
        retries: list[str] = []
        heard: list[ev.Event] = []  # the turn's tool calls, sent back with the answer
        written: list[Folded] = []  # a summary written before the answer failed still counts
        to, key = (request.stream or {}).get("to", ""), (request.stream or {}).get("key", "")
        pump = DeltaPump(self, to, key) if to.startswith(FEED_PREFIX) else None  # streamed
        tracing, parent = self.tracing, request.traceparent  # the run's span of the turn
        traced = tracing.remote_turn(parent, self.address, self.id, turn) if tracing else None

        seen = self._observer
        told = ev.retries_told(seen, self.id) if seen is not None else None

        def on_event(event: ev.Event) -> None:
            if seen is not None:
                seen(event)
                if isinstance(event, ev.ToolResult):  # the run need not count it again
                    event = replace(event, counted=True)
            if traced is not None:
                traced(event)
                if isinstance(event, ev.ToolCalled):  # the run need not trace it again
                    event = replace(event, traced=True)
            heard.append(event)
            if pump is not None:
                pump.event(event)  # and live, when the run streams

        def on_retry(attempt: int, limit: int, wait: float, error: BaseException) -> None:
            retries.append(f"retry {attempt}/{limit} after {wait:.1f}s ({error})")
            if told is not None:
                told(attempt, limit, wait, error)

        def on_attempt(event: ev.Event) -> None:  # each provider attempt: traces, metrics
            for hears in (traced, seen):
                if hears is not None:
                    hears(event)

        observed = on_attempt if traced or getattr(seen, "wants_requests", None) else None
        outcome: Completion | Exception
        try:
            outcome = await self.handle.ask(
                turn,
                pump,
                ToolContext(
                    run=request.run,
                    emit=on_event,
                    on_attempt=observed,
                    peers=self.peers,
                    trace=functools.partial(traced.traceparent, self.id) if traced else "",
                ),
                on_retry=on_retry,
                on_attempt=observed,
                memory=request.memory,
                on_folded=written.append,
            )
        except asyncio.CancelledError:
            if pump is not None:
                pump.cancel()
            if traced is not None:
                traced.ended(self.id, turn, asyncio.CancelledError("the worker stops"))
            raise  # stopping: the turn goes back to the inbox for another replica
        except Exception as e:
            outcome = e
        finally:
            self.in_flight -= 1
        if traced is not None:
            traced.ended(self.id, turn, outcome, self.handle.cost_of)
        if pump is not None:
            await pump.close()
        report.seconds, report.note = time.perf_counter() - started, "; ".join(retries)
        await self._finish(message, report, outcome, written[0] if written else None, heard)

    async def _finish(
        self,
        message: AgentMessage,
        report: TurnReport,
        outcome: Completion | Exception,
        folded: Folded | None = None,
        heard: list[ev.Event] | None = None,
    ) -> None:
        reply = TurnReply(self.address, folded=folded)
        if isinstance(outcome, Completion):
            self.processed += 1
            reply.completion, reply.events = outcome, tool_events_to_list(heard or [])
        else:
            self.failed += 1
            reply.error = error_to_dict(outcome)
            name = type(outcome).__name__
            text = str(outcome) if isinstance(outcome, MassGenError) else f"{name}: {outcome}"
            report.error = (text or name).splitlines()[0][:300]
        await self._publish()
        if not await message.reply(to_dict(reply)):
            note = "reply discarded (answered elsewhere)"
            report.note = f"{report.note}; {note}" if report.note else note
        if self._on_turn is not None:
            self._on_turn(report)

    async def _publish(self) -> None:
        try:
            await self.publish_record()
        except MassGenError as e:
            log.warning("agent %s: could not publish its counters: %s", self.id, e)


class Worker(Lifecycle):
    """Hosts some (default: all) agents of a team on the bus (``redis_url``, a ``transport``
    or an in-process ``hub``). Each runs ``concurrency`` turns at once and fetches no more,
    so the rest stays in the inbox for other replicas. ``observer`` hears the turns' tool
    events, retries and provider attempts (metrics)."""

    def __init__(
        self,
        orchestrator: Orchestrator,
        agents: Sequence[str] | None = None,
        *,
        redis_url: str | None = None,
        prefix: str = DEFAULT_PREFIX,
        secret: str | None = None,
        concurrency: int = DEFAULT_CONCURRENCY,
        settings: BusSettings | None = None,
        transport: Transport | None = None,
        hub: MemoryHub | None = None,
        team: str | None = None,
        on_turn: OnTurn | None = None,
        observer: ev.Subscriber | None = None,
    ) -> None:
        if concurrency < 1:
            raise ConfigError("concurrency must be at least 1", key="concurrency")
        names = list(dict.fromkeys(agents or orchestrator.agents))
        if unknown := [n for n in names if n not in orchestrator.agents]:
            from massgen.config.models import did_you_mean

            team_has = "the team has: " + ", ".join(orchestrator.agents)
            hint = did_you_mean(unknown[0], orchestrator.agents) or team_has
            raise ConfigError(f"no agent named {unknown[0]!r} in this team", key="agent", hint=hint)
        base = settings or BusSettings(drain_timeout=DRAIN_TIMEOUT)
        bus_settings = replace(base, batch=min(base.batch, concurrency))
        self.transport, self._owns = resolve_transport(
            redis_url, transport=transport, hub=hub, prefix=prefix
        )
        self.where = self.transport.where
        self.hosted: list[HostedAgent] = []
        for name in names:
            handle = orchestrator.handles.get(name)
            if not isinstance(handle, LocalHandle):
                raise ConfigError(
                    f"agent {name!r} does not run in this process, so it cannot be hosted here",
                    key="agent",
                )
            self.hosted.append(
                HostedAgent(
                    handle,
                    peers=orchestrator.handles,
                    transport=self.transport,
                    settings=bus_settings,
                    secret=secret,
                    concurrency=concurrency,
                    team=team,
                    on_turn=on_turn,
                    observer=observer,
                    tracing=orchestrator.tracing,
                )
            )
        self._started: list[HostedAgent] = []
        self.tracing = orchestrator.tracing

    async def start(self) -> None:
        """Connect (bad URL or credentials: a ConfigError), then register every agent."""
        if self._owns:
            await self.transport.connect()
        try:
            for agent in self.hosted:
                await agent.start()
                self._started.append(agent)
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        """Finish turns in progress (within the drain timeout), give back the rest, leave."""
        started, self._started = self._started, []
        try:
            await asyncio.gather(*(a.stop() for a in started))
            if self.tracing is not None:  # the turns' spans; the orchestrator's close stops it
                await self.tracing.flush()
        finally:
            if self._owns:
                with contextlib.suppress(MassGenError):
                    await self.transport.close()
