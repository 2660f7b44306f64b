"""Put a run on the bus: agents a live worker hosts are reached through a :class:`RemoteHandle` (a
turn is one request; memory stays with the run, sent with the turn), the rest (and any whose
workers all die) run here. Workers stream a turn's token deltas to the run's feed (a bus agent
from a small pool of ids) as numbered one-way messages; the reply stays the answer."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Mapping
from dataclasses import KW_ONLY, dataclass, field, replace
from typing import TYPE_CHECKING, Any

from massgen import errors as E
from massgen import events as ev
from massgen.agents.handle import LocalHandle
from massgen.agents.loop import OnDelta
from massgen.distributed import worker
from massgen.distributed.worker import FEED_PREFIX, LLM, event_id, role_digest, turn_timeout
from massgen.mas import DEFAULT_PREFIX, AgentIdTaken, BusSettings, MemoryHub, Transport
from massgen.mas import Agent as BusAgent
from massgen.mas.message import AgentMessage, Verdict
from massgen.memory.short_term import Folded, summary_events
from massgen.serialize import to_dict
from massgen.tools.context import ToolContext
from massgen.types import Completion, Turn

if TYPE_CHECKING:
    from massgen.agents.agent import Agent
    from massgen.agents.handle import OnAttempt, OnRetry
    from massgen.mas import AgentRecord
    from massgen.orchestrator import Orchestrator

log = logging.getLogger(__name__)

POOL = 64  # feed ids tried before a run gives up streaming (its turns show whole answers)
DEFAULT_HEARTBEAT_TTL = 15.0  # assumed for workers that do not advertise theirs (bus default)
_SECRET_REASONS = (f"refused: {Verdict.UNSIGNED.value}", f"refused: {Verdict.BAD_MAC.value}")


def refused(agent: str, reason: str) -> E.TurnRefused:
    """The error for a turn that ``agent``'s worker dead-lettered with ``reason``."""
    if reason in _SECRET_REASONS:
        return E.SecretRefused(agent, reason.removeprefix("refused: "))
    return E.TurnRefused(agent, reason)


def label(instance: dict[str, Any]) -> str:
    """A worker instance of the registry, as ``host pid N``."""
    return f"{instance.get('host', '?')} pid {instance.get('pid', '?')}"


class _NoWorker(Exception):
    """The turn's workers went away while it waited."""


class _Watch:
    """Polls the registry for one agent's workers while a turn waits: a worker whose expiry
    stops moving is silent; with none left the agent is gone."""

    def __init__(self, client: BusAgent, agent: str, ttl: float) -> None:
        self.client, self.agent, self.ttl = client, agent, ttl
        self.every = min(3.0, max(0.05, ttl / 5))
        self.seen: dict[str, tuple[str, float, float]] = {}  # iid -> (label, expires, since)

    async def check(self) -> tuple[list[str], list[str]] | None:
        """``None`` when the agent has no live worker; else the silent workers and all of
        them. A registry that cannot be read says nothing."""
        try:
            found = await self.client.discover()
        except E.MassGenError as e:
            log.debug("agent %s: registry not read: %s", self.agent, e)
            return [], [name for name, _, _ in self.seen.values()]
        record = next((a for a in found if a["id"] == self.agent), None)
        if record is None:
            return None
        now = time.monotonic()
        silent: list[str] = []
        seen: dict[str, tuple[str, float, float]] = {}
        for i in record.get("instances", []):
            before = self.seen.get(i["instance_id"])
            since = before[2] if before is not None and before[1] == i["expires"] else now
            seen[i["instance_id"]] = (label(i), i["expires"], since)
            if now - since > self.ttl / 2:  # a heartbeat or more missed
                silent.append(f"{label(i)} silent for {now - since:.0f}s")
        self.seen = seen
        return silent, [name for name, _, _ in seen.values()]


@dataclass(slots=True)
class _Sink:
    agent: str
    on_delta: OnDelta
    on_event: ev.Subscriber | None = None
    last: int = 0
    shown: list[str] = field(default_factory=list)
    heard: set[tuple[str, str]] = field(default_factory=set)


class Feed(BusAgent):
    """Hands the deltas workers stream for this run's turns to each turn's ``on_delta``."""

    def __init__(self, agent_id: str, **bus: Any) -> None:
        super().__init__(agent_id, ["live"], concurrency=1, **bus)
        self._sinks: dict[str, _Sink] = {}

    def open(
        self, key: str, agent: str, on_delta: OnDelta, on_event: ev.Subscriber | None = None
    ) -> None:
        """Pass on the deltas (and tool events) ``agent`` sends for turn ``key``."""
        self._sinks[key] = _Sink(agent, on_delta, on_event)

    def close(self, key: str) -> tuple[str, set[tuple[str, str]]]:
        """Stop turn ``key``; the text shown so far and the tool events passed on."""
        sink = self._sinks.pop(key, None)
        return ("".join(sink.shown), sink.heard) if sink is not None else ("", set())

    async def on_message(self, message: AgentMessage) -> None:
        piece = message.payload.get("delta")
        if not isinstance(piece, dict):
            return
        sink = self._sinks.get(str(piece.get("key")))
        seq, text = piece.get("seq"), piece.get("text")
        if (
            sink is None  # a turn already answered, or a run that held this id before
            or message.sender_id != sink.agent
            or not isinstance(seq, int)
            or not isinstance(text, str)
            or seq <= sink.last  # a duplicate, or overtaken by a newer piece
        ):
            return
        sink.last = seq
        if text:
            sink.shown.append(text)
            sink.on_delta(text)
        if sink.on_event is not None and piece.get("events"):
            try:
                heard = worker.tool_events_from_list(piece["events"])
            except E.MassGenError:
                return  # the reply carries them too
            for event in heard:
                sink.heard.add(event_id(event))
                sink.on_event(event)


class LiveFeeds:
    """The run's feed, started on the first turn that streams and stopped with the run."""

    def __init__(self, transport: Transport, **bus: Any) -> None:
        self._bus = {"transport": transport, **bus}  # secret, settings
        self._feed: Feed | None = None
        self._tried = False
        self._lock = asyncio.Lock()

    async def feed(self) -> Feed | None:
        """The feed, or ``None`` when none could be started (turns then are not streamed)."""
        async with self._lock:
            if self._tried:
                return self._feed
            self._tried = True
            for i in range(POOL):
                feed = Feed(f"{FEED_PREFIX}{i}", **self._bus)
                try:
                    await feed.start()
                except AgentIdTaken:
                    continue  # another run's
                except E.MassGenError as e:
                    log.warning("no live token stream from workers: %s", e)
                    return None
                self._feed = feed
                return feed
            log.warning("no live token stream from workers: %d runs already stream", POOL)
            return None

    async def stop(self) -> None:
        feed, self._feed = self._feed, None
        with contextlib.suppress(E.MassGenError):
            if feed is not None:
                await feed.stop()


@dataclass(eq=False, repr=False)
class RemoteHandle:
    """Reaches ``agent`` through ``client`` (this run's bus agent); ``live`` streams the
    worker's deltas, ``local`` runs the turn here once no live worker hosts the agent."""

    agent: Agent
    client: BusAgent
    _: KW_ONLY
    timeout: float
    supports_tools: bool
    run: str = ""
    live: LiveFeeds | None = None
    local: LocalHandle | None = None
    heartbeat_ttl: float = DEFAULT_HEARTBEAT_TTL
    workers: list[str] = field(default_factory=list)  # last seen, as ``host pid N``
    gone: bool = field(default=False, init=False)  # the last turn found no live worker
    name: str = field(init=False)

    def __post_init__(self) -> None:
        self.name = self.agent.name

    def __repr__(self) -> str:
        return f"RemoteHandle({self.name!r}, timeout={self.timeout:g})"

    async def ask(
        self,
        turn: Turn,
        on_delta: OnDelta | None = None,
        ctx: ToolContext | None = None,
        *,
        on_retry: OnRetry | None = None,
        on_attempt: OnAttempt | None = None,
    ) -> Completion:
        """``turn`` answered by a live worker (which observes its own attempts); a silent one
        is reported (AgentWaiting). With none left the turn runs here (:attr:`local`) or
        raises WorkerLost; dead-lettered: TurnRefused."""
        emit, trace = (ctx.emit, ctx.traceparent()) if ctx else (None, "")
        memory = self.agent.memory
        try:
            if self.gone:  # the workers were gone last turn: are they back?
                if await _Watch(self.client, self.name, self.heartbeat_ttl).check() is None:
                    raise _NoWorker(self._gone())
                self.gone = False
            if memory.needs_load:
                async with memory.lock:  # the run's first turn loads the session (may fold)
                    if await memory.load() and memory.may_fold:
                        return await self._ask(turn, on_delta, emit, fold=True, trace=trace)
            return await self._ask(turn, on_delta, emit, fold=False, trace=trace)
        except _NoWorker as e:  # outside the memory lock: the turn runs here, or fails
            if self.local is None:
                raise E.WorkerLost(self.name, self.workers, "the run cannot build it here") from e
            try:
                self.local.backend  # noqa: B018 (built now: a missing key says so before the turn)
            except E.ConfigError as error:
                message = f"cannot run it here: {error.message}"
                raise E.WorkerLost(self.name, self.workers, message) from error
            self._tell(f"no live worker ({e}); running the turn here", emit)
            return await self.local.ask(
                turn, on_delta, ctx, on_retry=on_retry, on_attempt=on_attempt
            )

    async def _ask(
        self,
        turn: Turn,
        on_delta: OnDelta | None,
        emit: ev.Subscriber | None,
        *,
        fold: bool,
        trace: str,
    ) -> Completion:
        agent = self.agent
        recalled = await agent.long_term.recall_for(self.name, turn) if agent.long_term else []
        feed = await self.live.feed() if self.live is not None and on_delta else None
        key = uuid.uuid4().hex
        if feed is not None and on_delta is not None:
            feed.open(key, self.name, on_delta, emit)
        payload = worker.TurnRequest(
            turn,
            self.run,
            deadline=time.time() + self.timeout,
            memory=agent.memory.context(recalled, fold=fold),
            stream={"to": feed.id, "key": key} if feed is not None else None,
            traceparent=trace,
        )
        shown, heard = "", set[tuple[str, str]]()
        started = time.perf_counter()
        try:
            request_id = self.client.new_message_id()
            request = self.client.request(
                self.name, to_dict(payload), timeout=self.timeout, message_id=request_id
            )
            answer = await self._watched(request, request_id, emit)
            if answer is None:  # no live worker any more
                raise _NoWorker(self._gone())
            reply = worker.decode(worker.TurnReply, answer.payload, "reply")
        finally:
            if feed is not None:
                shown, heard = feed.close(key)
        status, seconds = "ok" if reply.error is None else "error", time.perf_counter() - started
        log.debug(
            f"turn agent={self.name} phase={turn.phase} round={turn.round} run={self.run or '-'} "
            f"worker={reply.worker or '-'} status={status} seconds={seconds:.3f}"
        )
        folded = reply.folded
        if reply.error is not None:
            if folded is not None:  # written before the answer failed: keep it
                await self._store_summary(folded, emit)
            raise worker.error_from_dict(reply.error, source=self.name)
        if reply.completion is None:
            raise E.TransportError(f"agent {self.name!r} sent a reply with no completion")
        completion = reply.completion
        if emit is not None:
            for event in worker.tool_events_from_list(reply.events):  # the worker's tool calls
                if event_id(event) not in heard:  # not already shown live
                    emit(event)
        rest = completion.text[len(shown) :]  # what the stream has not shown yet
        if on_delta is not None and completion.text.startswith(shown) and rest:
            on_delta(rest)
        if folded is not None and not await self._store_summary(folded, emit):
            # nobody heard the summary's events: its usage rides along with the answer
            completion = replace(
                completion,
                usage=completion.usage + folded.completion.usage,
                requests=completion.requests + folded.completion.requests,
            )
        return completion

    async def _watched(
        self, request: Awaitable[Any], request_id: str, emit: ev.Subscriber | None
    ) -> Any:
        """The request's answer, or ``None`` once no live worker hosts the agent. Each look at
        the registry also looks among the dead letters: a turn set aside is never answered."""
        task = asyncio.ensure_future(request)
        watch = _Watch(self.client, self.name, self.heartbeat_ttl)
        told = False  # that the workers are silent
        try:
            while True:
                done, _ = await asyncio.wait({task}, timeout=watch.every)
                if done:
                    return task.result()
                seen = await watch.check()
                try:
                    reason = await self.client.dead_lettered(self.name, request_id)
                except E.MassGenError as e:  # a bus that cannot be read says nothing
                    log.debug("agent %s: dead letters not read: %s", self.name, e)
                    reason = None
                if reason is not None:
                    raise refused(self.name, reason)
                if seen is None:
                    self.gone = True
                    return None
                silent, self.workers = seen[0], seen[1] or self.workers
                if silent and not told:
                    self._tell(f"waiting for a worker: {'; '.join(silent)}", emit)
                told = bool(silent)
        finally:
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, E.MassGenError):
                    await task

    def _gone(self) -> str:
        return f"{', '.join(self.workers) or 'its worker'} gone"

    def _tell(self, note: str, emit: ev.Subscriber | None) -> None:
        log.info("agent %s: %s", self.name, note)
        if emit is not None:
            emit(ev.AgentWaiting(agent=self.name, note=note))

    async def _store_summary(self, folded: Folded, emit: ev.Subscriber | None) -> bool:
        """Keep ``folded`` in the session; emit its events. ``False`` when nobody listens."""
        memory = self.agent.memory
        await memory.keep(folded)
        writer = memory.summarizer or self.agent
        if emit is None:
            return False
        for event in summary_events(folded, writer.cost_of(folded.completion)):
            emit(event)
        return True

    def cost_of(self, completion: Completion) -> float:
        return self.agent.cost_of(completion)


# Every run's client is a replica of this bus id: no per-run inbox is left behind, and
# replies still go to the run's own instance.
CLIENT_ID = "massgen-run"
Registry = Mapping[str, dict[str, Any]]  # a live agent's name -> its registry record


@dataclass(frozen=True, slots=True)
class Placement:
    """Where each agent of the run runs; ``remote``: agent name to live replicas."""

    where: str
    remote: Mapping[str, int] = field(default_factory=dict)
    local: tuple[str, ...] = ()
    mismatched: tuple[str, ...] = ()  # hosted under the same name with another role: local

    def describe(self) -> str:
        """One line for stderr, e.g. ``ada (2 workers), bob on redis://h:6379/0; local: cy``."""
        remote = ", ".join(
            f"{n} ({r} workers)" if r > 1 else n for n, r in sorted(self.remote.items())
        )
        parts = [f"{remote or 'no agent'} on workers at {self.where}"]
        if self.local:
            parts.append("local: " + ", ".join(self.local))
        if others := ", ".join(repr(n) for n in self.mismatched):
            parts.append(
                f"a worker hosts another {others} (role differs; use one redis prefix per team)"
            )
        return "; ".join(parts)


@contextlib.asynccontextmanager
async def distributed(
    orchestrator: Orchestrator,
    redis_url: str | None = None,
    *,
    prefix: str = DEFAULT_PREFIX,
    secret: str | None = None,
    settings: BusSettings | None = None,
    transport: Transport | None = None,
    hub: MemoryHub | None = None,
) -> AsyncIterator[Placement]:
    """Within the block, ``orchestrator`` sends each hosted agent's turns to its workers (bus:
    ``redis_url``, else ``$MASSGEN_REDIS_URL``, a ``transport`` or a ``hub``). ConfigError
    before anything is sent when Redis refuses, or every worker of an agent signs otherwise."""
    run = f"run-{uuid.uuid4().hex[:12]}"
    client = BusAgent(
        CLIENT_ID,
        ["client"],
        redis_url,
        transport=transport,
        hub=hub,
        prefix=prefix,
        secret=secret,
        replica=True,
        concurrency=1,
        settings=settings,
        metadata={"run": run},
        check_secret=False,  # the workers this run uses are checked below, by name
    )
    await client.start()
    saved = dict(orchestrator.handles)
    feeds = LiveFeeds(client.transport, secret=secret, settings=settings)
    try:
        live = {a["id"]: a for a in await client.discover([LLM])}
        mismatched = {r.instance_id: r for r in await client.secret_mismatches()}
        placement = _place(orchestrator, live, client, run, feeds)
        _check_secrets(placement, live, mismatched, signed=client.signs)
        yield placement
    finally:
        orchestrator.handles.clear()
        orchestrator.handles.update(saved)
        try:
            await feeds.stop()
        finally:
            await client.stop()


def _place(
    orchestrator: Orchestrator, live: Registry, client: BusAgent, run: str, feeds: LiveFeeds
) -> Placement:
    remote: dict[str, int] = {}
    local: list[str] = []
    mismatched: list[str] = []
    handles = orchestrator.handles
    fallback = turn_timeout(None, None, client.settings.lease)  # with the run's own lease
    for name, agent in orchestrator.agents.items():
        found = live.get(name)
        meta = found["metadata"] if found is not None else {}
        if found is None or meta.get("role_digest") not in (None, role_digest(agent.role)):
            local.append(name)
            if found is not None:  # hosted under this name with another role
                mismatched.append(name)
            continue
        here = handles.get(name)
        handles[name] = RemoteHandle(
            agent,
            client,
            timeout=_positive(meta.get("turn_timeout"), fallback),
            supports_tools=bool(meta.get("tools", False)),
            run=run,
            live=feeds,
            local=here if isinstance(here, LocalHandle) else None,
            heartbeat_ttl=_positive(meta.get("heartbeat_ttl"), DEFAULT_HEARTBEAT_TTL),
            workers=[label(i) for i in found.get("instances", [])],
        )
        remote[name] = int(found.get("replicas", 1))
    return Placement(client.where, remote, tuple(local), tuple(mismatched))


def _positive(value: Any, default: float) -> float:  # a number a worker advertised
    return float(value) if isinstance(value, int | float) and value > 0 else default


def _check_secrets(
    placement: Placement, live: Registry, mismatched: Mapping[str, AgentRecord], *, signed: bool
) -> None:
    """Refuse the run when every worker of a remote agent signs otherwise than the run (they
    would refuse its turns, or it their answers); a partial mismatch is left to the bus."""
    bad: dict[tuple[str, str], list[str]] = {}  # (workers, how) -> agents
    for name in sorted(placement.remote):
        instances = live[name].get("instances", [])
        if not instances or not all(i["instance_id"] in mismatched for i in instances):
            continue
        workers = ", ".join(sorted({label(i) for i in instances}))
        if not signed:
            how = "sign with a secret and this run has none"
        elif not any(mismatched[i["instance_id"]].proof for i in instances):
            how = "have no secret and this run has one"
        else:
            how = "sign with another secret than this run"
        bad.setdefault((workers, how), []).append(name)
    if bad:
        said = "; ".join(
            f"the workers of {', '.join(names)} ({workers}) {how}"
            for (workers, how), names in bad.items()
        )
        raise E.ConfigError(
            said + ": check that redis.secret / MASSGEN_SECRET is the same for the run and "
            "its workers (`massgen agents list` shows who differs)"
        )
