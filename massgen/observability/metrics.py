"""Prometheus metrics (docs/observability.md, "Metrics"): a :class:`Metrics` owns its own
registry and hears a run's events as a subscriber; :func:`serve` publishes it on
``/metrics``. What lives elsewhere (breakers, caches, a worker's turns and inboxes) is read
when Prometheus scrapes, so a run pays nothing for it.

Labels are names from the config (agent, provider, model, tool, backend, endpoint) and small
fixed sets (status, reason, type): never a task, a run id or an error's text. Importing this
module imports ``prometheus_client``; nothing else in massgen does."""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import itertools
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, Protocol

from massgen import events as ev
from massgen.backends.base import Backend, innermost, layers
from massgen.errors import ConfigError, MassGenError
from massgen.resilience.breaker import BreakerBackend
from massgen.resilience.cache import CachingBackend

try:
    import prometheus_client as prom
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
    from prometheus_client.utils import floatToGoString
except ImportError as missing:
    raise ConfigError(
        "metrics need the prometheus-client package",
        key="--metrics-port",
        hint="pip install 'massgen[observability]'",
    ) from missing

log = logging.getLogger(__name__)

LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 40, 80, 160)
"""Seconds: a cached or tiny answer up to a long reasoning one."""
TOOL_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
RUN_BUCKETS = (0.5, 1, 2.5, 5, 10, 20, 40, 80, 160, 320, 640, 1280)
BREAKER = {"closed": 0, "half_open": 1, "open": 2}
HELD = 512  # events kept at most before they are counted
SCRAPE_TIMEOUT = 5.0  # seconds a scrape waits for Redis before leaving the inbox figures out


class Counter:
    """A counter's values by label values, each with the time it was first counted."""

    def __init__(self, name: str, doc: str, *labels: str) -> None:
        self.name, self.doc, self.labels = name, doc, labels
        self.values: dict[tuple[str, ...], list[float]] = {}  # labels -> [value, created]

    def inc(self, key: tuple[str, ...], amount: float = 1.0) -> None:
        if (value := self.values.get(key)) is None:
            value = self.values[key] = [0.0, time.time()]
        value[0] += amount

    def cell(self, key: tuple[str, ...]) -> list[float]:
        """The ``[value, created]`` of ``key``'s series, made at 0 if new: kept by a caller
        that adds to it often."""
        if (value := self.values.get(key)) is None:
            value = self.values[key] = [0.0, time.time()]
        return value

    def family(self) -> Metric:
        family = CounterMetricFamily(self.name, self.doc, labels=self.labels)
        for key, (value, created) in self.values.items():
            family.add_metric(key, value, created=created)
        return family


class Histogram:
    """A histogram's observations by label values: a count per bucket (made cumulative at
    scrape time), then the sum and the time of the first observation."""

    def __init__(self, name: str, doc: str, buckets: Sequence[float], *labels: str) -> None:
        self.name, self.doc, self.labels, self.bounds = name, doc, labels, tuple(buckets)
        self.les = [*(floatToGoString(b) for b in buckets), "+Inf"]
        self.values: dict[tuple[str, ...], list[float]] = {}

    def observe(self, key: tuple[str, ...], amount: float) -> None:
        value = self.cell(key)
        value[bisect.bisect_left(self.bounds, amount)] += 1  # the first bound >= amount
        value[-2] += amount

    def cell(self, key: tuple[str, ...]) -> list[float]:
        """``key``'s counts by bucket, sum and creation time, made empty if new."""
        if (value := self.values.get(key)) is None:
            value = self.values[key] = [0.0] * (len(self.les) + 2)
            value[-1] = time.time()
        return value

    def family(self) -> Metric:
        family, name = Metric(self.name, self.doc, "histogram"), self.name
        for key, value in self.values.items():
            labels = dict(zip(self.labels, key, strict=True))
            for le, count in zip(self.les, itertools.accumulate(value[:-2]), strict=True):
                family.add_sample(f"{name}_bucket", {**labels, "le": le}, count)
            family.add_sample(f"{name}_count", labels, count)
            family.add_sample(f"{name}_sum", labels, value[-2])
            family.add_sample(f"{name}_created", labels, value[-1])
        return family


class Hosted(Protocol):
    """What the worker collector reads of a hosted agent (distributed.worker.HostedAgent)."""

    id: str
    in_flight: int
    processed: int
    failed: int
    beats: int
    last_beat: float


class Inboxes(Protocol):
    """The bus, as the collectors read it (massgen.mas's transports)."""

    async def inbox_stats(self) -> Any: ...

    async def discover(self) -> Any: ...


class Metrics:
    """The metrics of one process: a subscriber (``orchestrator.subscribers.append(m)``)
    that turns each event into a few dict updates under a lock, folded into Prometheus's
    form when it scrapes; and collectors of what lives elsewhere, read then too."""

    wants_requests = True  # one RequestDone per provider attempt
    wants_deltas = False  # token deltas are not counted: runs need not stream for us
    holds = True  # a run's bus appends events to :attr:`held` (:class:`~massgen.events.EventBus`)
    hears = frozenset(  # the events counted (the keys of ``_on``): the bus hands only these
        (ev.RequestDone, ev.AgentAnswered, ev.AgentRetrying, ev.AgentFailedEvent, ev.ToolResult,
         ev.RoundDone)
    )  # fmt: skip

    def __init__(self, *, process: bool = True) -> None:
        self.registry = r = prom.CollectorRegistry()
        if process:
            prom.ProcessCollector(registry=r)
            prom.PlatformCollector(registry=r)
        model = ("provider", "model", "agent")
        self.requests = Counter(
            "massgen_requests", "Provider requests (attempts) by outcome.", *model, "status"
        )
        self.latency = Histogram(
            "massgen_request_duration_seconds", "Provider request latency.", LATENCY_BUCKETS, *model
        )
        self.tokens = Counter("massgen_tokens", "Tokens providers reported.", *model, "type")
        self.cached = Counter(
            "massgen_cached_input_tokens", "Input tokens read from the provider's cache.", *model
        )
        self.cache_write = Counter(
            "massgen_cache_write_input_tokens",
            "Input tokens written to the provider's cache.",
            *model,
        )
        self.reasoning = Counter(
            "massgen_reasoning_output_tokens", "Output tokens spent reasoning.", *model
        )
        self.cost = Counter(
            "massgen_cost_usd", "Cost of the answers, in US dollars.", "agent", "model"
        )
        self.answers = Counter(
            "massgen_answers", "Agent answers (cached: from the response cache).", "agent", "cached"
        )
        self.retries = Counter("massgen_retries", "Request retries by reason.", "agent", "reason")
        self.failures = Counter(
            "massgen_agent_failures", "Agents that failed a turn after retries.", "agent"
        )
        self.tool_calls = Counter("massgen_tool_calls", "Tool calls.", "agent", "tool", "ok")
        self.tool_time = Histogram(
            "massgen_tool_duration_seconds", "Tool call duration.", TOOL_BUCKETS, "tool"
        )
        self.runs = Counter(
            "massgen_runs", "Runs ended, by strategy and status.", "strategy", "status"
        )
        self.run_time = Histogram(
            "massgen_run_duration_seconds", "Run duration.", RUN_BUCKETS, "strategy"
        )
        self.rounds = Counter("massgen_rounds", "Consensus rounds completed.")
        self.rounds.inc((), 0.0)  # shown at 0 before the first round
        self.running = 0  # massgen_runs_in_progress
        self._lock = threading.Lock()  # events come on the loop, scrapes on a server thread
        # a provider attempt's series, by (provider, model, agent, status): its count, its
        # latency's buckets and its tokens' (made at the first usage), found with one lookup
        self._attempts: dict[tuple[str, ...], list[Any]] = {}
        self._answers: dict[tuple[str, bool], list[float]] = {}
        self._on: dict[type[ev.Event], Callable[[Any], None]] = {
            ev.RequestDone: self._request,
            ev.AgentAnswered: self._answered,
            ev.AgentRetrying: lambda e: self.retries.inc((e.agent, e.reason)),
            ev.AgentFailedEvent: lambda e: self.failures.inc((e.agent,)),
            ev.ToolResult: self._tool,
            ev.RoundDone: lambda e: self.rounds.inc(()),
        }
        self.held: list[ev.Event] = []  # heard, not counted yet (:meth:`_count`)
        self.watched: list[_Backends] = []  # the backends of :meth:`watch_backends`
        r.register(_Collector(self._collect))

    def __call__(self, event: ev.Event) -> None:
        """Keep ``event`` to count: events are counted when a run ends, at every scrape
        (first thing: a scrape sees every event heard) or every :data:`HELD` events, in one
        pass; runs in progress are counted at once. (A run's bus appends the events between
        its start and end to :attr:`held` itself.)"""
        kind = type(event)
        if kind is ev.RunStarted:
            with self._lock:
                self.running += 1
        elif kind is ev.RunEnded:
            with self._lock:
                self._count()
                self._run_ended(event)  # type: ignore[arg-type]
        elif kind in self._on:
            held = self.held
            held.append(event)  # atomic: no lock to keep one
            if len(held) >= HELD:
                with self._lock:
                    self._count()

    def _count(self) -> None:
        """Count the events kept (under the lock: the loop and a scrape may both count;
        the loop may append more meanwhile)."""
        held, on = self.held, self._on
        count = len(held)
        chunk = held[:count]
        del held[:count]
        for event in chunk:
            if (counts := on.get(type(event))) is not None:
                counts(event)

    def _request(self, e: ev.RequestDone) -> None:
        key = (e.provider, e.asked or e.model, e.agent, e.status)  # the team file's model
        if (cells := self._attempts.get(key)) is None:
            model = key[:3]
            cells = [self.requests.cell(key), self.latency.cell(model), None, None]
            self._attempts[key] = cells
        count, latency, tokens_in, tokens_out = cells
        count[0] += 1
        latency[bisect.bisect_left(LATENCY_BUCKETS, e.latency)] += 1  # the first bound >= it
        latency[-2] += e.latency
        if (usage := e.usage) is not None:
            if tokens_in is None or tokens_out is None:
                model = key[:3]
                cells[2] = tokens_in = self.tokens.cell((*model, "input"))
                cells[3] = tokens_out = self.tokens.cell((*model, "output"))
            tokens_in[0] += usage.input_tokens
            tokens_out[0] += usage.output_tokens
            if usage.cached_tokens:
                self.cached.inc(key[:3], usage.cached_tokens)
            if usage.cache_write_tokens:
                self.cache_write.inc(key[:3], usage.cache_write_tokens)
            if usage.reasoning_tokens:
                self.reasoning.inc(key[:3], usage.reasoning_tokens)

    def _answered(self, e: ev.AgentAnswered) -> None:
        if (count := self._answers.get(key := (e.agent, e.cached))) is None:
            cached = "true" if e.cached else "false"
            count = self._answers[key] = self.answers.cell((e.agent, cached))
        count[0] += 1
        if e.cost:
            self.cost.inc((e.agent, e.model), e.cost)

    def _tool(self, e: ev.ToolResult) -> None:
        if e.counted:  # by the worker that ran it
            return
        self.tool_calls.inc((e.agent, e.tool, "true" if e.ok else "false"))
        self.tool_time.observe((e.tool,), e.duration)

    def _run_ended(self, e: ev.RunEnded) -> None:
        result = e.result
        self.running -= 1
        self.runs.inc((result.strategy, str(result.status)))
        self.run_time.observe((result.strategy,), result.duration)

    def _collect(self) -> Iterator[Metric]:
        with self._lock:  # built under it: a scrape sees whole events
            self._count()
            kept = [m for m in vars(self).values() if isinstance(m, Counter | Histogram)]
            families = [m.family() for m in kept]
            running = self.running
        yield from families
        yield GaugeMetricFamily("massgen_runs_in_progress", "Runs started, not ended.", running)

    def watch_backends(self, stacks: Callable[[], Iterable[Backend]]) -> None:
        """Read breaker states and cache hits from ``stacks()`` (each backend in its
        resilience stack, e.g. ``Orchestrator.backends``) at every scrape."""
        watched = _Backends(stacks)
        self.watched.append(watched)
        self.registry.register(_Collector(watched.collect))

    def retire(self, stacks: Iterable[Backend]) -> None:
        """Count what the caches of ``stacks`` (backends watched, about to close) counted
        for good: the counters never go down, and their last lookups are not lost."""
        for watched in self.watched:
            watched.retire(stacks)

    def watch_worker(
        self, hosted: Sequence[Hosted], bus: Inboxes, loop: asyncio.AbstractEventLoop
    ) -> None:
        """A worker's turns and heartbeats, and its agents' inboxes read from the bus on
        ``loop`` at every scrape."""
        names = {h.id for h in hosted}
        self.registry.register(_Collector(lambda: _worker_metrics(hosted)))
        self.watch_inboxes(bus, loop, only=names)

    def watch_inboxes(
        self, bus: Inboxes, loop: asyncio.AbstractEventLoop, *, only: set[str] | None = None
    ) -> None:
        """Every inbox's pending and unread messages and dead letters (``only``: these
        agents'), read from the bus on ``loop`` at every scrape."""
        self.registry.register(_Collector(lambda: _inbox_metrics(bus, loop, only)))

    def watch_fleet(self, bus: Inboxes, loop: asyncio.AbstractEventLoop) -> None:
        """What the registry says of every agent's live instances (``massgen service``):
        how many, their turns in flight, the oldest heartbeat; read on ``loop`` per scrape."""
        self.registry.register(_Collector(lambda: _fleet_metrics(bus, loop)))


class TeamsMetrics:
    """The metrics of several teams in one process (``massgen serve``): a :class:`Metrics`
    each (:meth:`team`), served as one registry in which every series has a ``team`` label
    (the team's name, from its config): teams' agents may share names."""

    def __init__(self) -> None:
        self.registry = r = prom.CollectorRegistry()
        prom.ProcessCollector(registry=r)
        prom.PlatformCollector(registry=r)
        self.teams: dict[str, Metrics] = {}
        r.register(_Collector(self._collect))

    def team(self, name: str) -> Metrics:
        """The metrics of the team ``name``: a subscriber of its orchestrators."""
        got = self.teams[name] = Metrics(process=False)
        return got

    def _collect(self) -> Iterator[Metric]:
        merged: dict[str, Metric] = {}  # one family a name, whatever team its samples are of
        for team, metrics in list(self.teams.items()):
            for family in metrics.registry.collect():
                if (into := merged.get(family.name)) is None:
                    kind, doc = family.type, family.documentation
                    into = merged[family.name] = Metric(family.name, doc, kind, family.unit)
                for s in family.samples:
                    into.add_sample(s.name, {"team": team, **s.labels}, s.value, s.timestamp)
        return iter(merged.values())


class _Collector:
    """A collector made of a function (prometheus_client calls it from its server thread)."""

    def __init__(self, collect: Callable[[], Iterable[Metric]]) -> None:
        self.collect = collect

    def describe(self) -> list[Metric]:
        return []  # nothing is read at registration; names are checked by tests instead


class _Backends:
    """Breaker states and cache counts of the backends ``stacks()`` gives, read at each
    scrape. A cache layer that goes (a served session closed, its backends with it) keeps
    its counts, so that the counters never go down: :meth:`retire` counts it as it goes; one
    a scrape saw is held to the next, which counts it if it went unretired (and keeps it
    until it is retired: once is enough)."""

    def __init__(self, stacks: Callable[[], Iterable[Backend]]) -> None:
        self.stacks = stacks
        self.held: dict[int, tuple[str, CachingBackend]] = {}  # by id (held: not reused)
        self.folded: dict[int, tuple[str, CachingBackend]] = {}  # gone, counted, unretired
        self.gone: dict[str, tuple[int, int]] = {}  # hits and misses of layers gone, by name
        self.lock = threading.Lock()  # scrapes come on server threads, retire on the loop

    def _fold(self, name: str, layer: CachingBackend) -> None:
        hit, missed = self.gone.get(name, (0, 0))
        self.gone[name] = (hit + layer.hits, missed + layer.misses)

    def retire(self, stacks: Iterable[Backend]) -> None:
        """Count the cache lookups of ``stacks``, gone from :attr:`stacks` and closing."""
        with self.lock:
            for key, (name, layer) in _caches(stacks).items():
                if self.folded.pop(key, None) is None:  # else a scrape found it gone
                    self.held.pop(key, None)
                    self._fold(name, layer)

    def collect(self) -> Iterator[Metric]:
        state = GaugeMetricFamily(
            "massgen_circuit_breaker_state",
            "Circuit state as this process last saw it: 0 closed, 1 half-open, 2 open.",
            labels=["endpoint"],
        )
        hits = CounterMetricFamily(
            "massgen_cache_hits", "Requests answered from the response cache.", labels=["backend"]
        )
        misses = CounterMetricFamily(
            "massgen_cache_misses",
            "Requests the response cache could not answer.",
            labels=["backend"],
        )
        circuits: dict[str, int] = {}
        with self.lock:  # the stacks read under it too: a layer retired is counted once
            stacks = list(self.stacks())
            caches = _caches(stacks)
            gone = {key: self.held[key] for key in self.held.keys() - caches.keys()}
            for name, closed in gone.values():
                self._fold(name, closed)
            self.held = caches
            self.folded.update(gone)
            cached = dict(self.gone)  # backends of one name add up
            for name, cache in caches.values():
                hit, missed = cached.get(name, (0, 0))
                cached[name] = (hit + cache.hits, missed + cache.misses)
        for stack in stacks:
            for layer in layers(stack):
                if isinstance(layer, BreakerBackend):
                    key, level = layer.breaker.key, BREAKER[str(layer.breaker.state)]
                    circuits[key] = max(level, circuits.get(key, 0))  # an endpoint's worst
        for key, level in circuits.items():
            state.add_metric([key], level)
        for name, (hit, missed) in cached.items():
            hits.add_metric([name], hit)
            misses.add_metric([name], missed)
        yield from (state, hits, misses)


def _caches(stacks: Iterable[Backend]) -> dict[int, tuple[str, CachingBackend]]:
    """The cache layers of ``stacks`` by id, each with its backend's name."""
    return {
        id(layer): (innermost(stack).name, layer)
        for stack in stacks
        for layer in layers(stack)
        if isinstance(layer, CachingBackend)
    }


def _worker_metrics(hosted: Sequence[Hosted]) -> Iterator[Metric]:
    def family(kind: type[Any], name: str, doc: str, value: Callable[[Hosted], float]) -> Metric:
        metric = kind(name, doc, labels=["agent"])
        for h in hosted:
            metric.add_metric([h.id], value(h))
        return metric

    now, G, C = time.time(), GaugeMetricFamily, CounterMetricFamily
    yield family(G, "massgen_worker_turns_in_flight", "Turns running.", lambda h: h.in_flight)
    yield family(C, "massgen_worker_turns_processed", "Turns answered.", lambda h: h.processed)
    yield family(C, "massgen_worker_turns_failed", "Turns that failed.", lambda h: h.failed)
    yield family(C, "massgen_worker_heartbeats", "Heartbeats sent.", lambda h: h.beats)
    yield family(
        G,
        "massgen_worker_heartbeat_age_seconds",
        "Seconds since the last heartbeat (or registration).",
        lambda h: max(0.0, now - h.last_beat) if h.last_beat else 0.0,
    )


def _on_loop(read: Callable[[], Any], loop: asyncio.AbstractEventLoop) -> Any:
    """``await read()`` on ``loop`` from the scraping thread; ``None`` if it cannot be."""
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is loop or loop.is_closed():
        return None  # a scrape from the loop's own thread would wait for itself
    try:
        return asyncio.run_coroutine_threadsafe(read(), loop).result(SCRAPE_TIMEOUT)
    except (MassGenError, OSError, TimeoutError, RuntimeError) as e:
        log.warning("metrics: the bus was not read: %s", e)
        return None


def _fleet_metrics(bus: Inboxes, loop: asyncio.AbstractEventLoop) -> Iterator[Metric]:
    if (records := _on_loop(bus.discover, loop)) is None:
        return
    now, by_agent = time.time(), dict[str, list[Any]]()
    for r in records:
        by_agent.setdefault(r.id, []).append(r)
    live = GaugeMetricFamily("massgen_agent_instances", "Live instances.", labels=["agent"])
    busy = GaugeMetricFamily(
        "massgen_agent_turns_in_flight", "Turns its instances run.", labels=["agent"]
    )
    age = GaugeMetricFamily(
        "massgen_agent_heartbeat_age_seconds", "Its oldest heartbeat's age.", labels=["agent"]
    )
    for agent, rs in sorted(by_agent.items()):
        live.add_metric([agent], len(rs))
        busy.add_metric([agent], sum(int(r.metadata.get("in_flight") or 0) for r in rs))
        ttl = [float(r.metadata.get("heartbeat_ttl") or 0) for r in rs]
        ages = [max(0.0, now - (r.expires - t)) for r, t in zip(rs, ttl, strict=True) if t]
        if ages:
            age.add_metric([agent], max(ages))
    yield from (live, busy, age)


def _inbox_metrics(
    bus: Inboxes, loop: asyncio.AbstractEventLoop, only: set[str] | None
) -> Iterator[Metric]:
    if (stats := _on_loop(bus.inbox_stats, loop)) is None:
        return
    pending = GaugeMetricFamily(
        "massgen_stream_pending_messages",
        "Inbox messages delivered and not acknowledged yet.",
        labels=["agent"],
    )
    lag = GaugeMetricFamily(
        "massgen_stream_lag_messages", "Inbox messages no worker has read yet.", labels=["agent"]
    )
    dead = GaugeMetricFamily(
        "massgen_dead_letters", "Messages in the agent's dead-letter stream.", labels=["agent"]
    )
    for s in stats:
        if only is None or s.agent_id in only:
            pending.add_metric([s.agent_id], s.pending)
            lag.add_metric([s.agent_id], s.unread)
            dead.add_metric([s.agent_id], s.dead_letters)
    yield from (pending, lag, dead)


@contextlib.contextmanager
def serve(metrics: Metrics | TeamsMetrics, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Serve ``metrics`` over HTTP (``port`` 0: a free one) until the block ends; yields
    the URL of ``/metrics`` with the port bound."""
    try:
        server, thread = prom.start_http_server(port, host, registry=metrics.registry)
    except OSError as e:
        where = f"{host}:{port}"
        raise ConfigError(
            f"cannot serve metrics on {where}: {e.strerror or e}", key="--metrics-port"
        ) from None
    bound = server.server_address[1]
    shown = f"[{host}]" if ":" in host else host
    try:
        yield f"http://{shown}:{bound}/metrics"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


__all__ = ["Metrics", "TeamsMetrics", "serve"]
