"""The orchestrator: a team, a strategy, and the run loop that turns whatever happens (an
answer, a failure, a timeout, Ctrl-C) into a :class:`~massgen.result.RunResult`."""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any

from massgen import events as ev
from massgen.agents.agent import Agent
from massgen.agents.handle import AgentHandle, LocalHandle
from massgen.backends.base import Backend
from massgen.budget import Budget
from massgen.errors import ConfigError, MassGenError, RunError
from massgen.observability import start_tracing, tracing_settings
from massgen.resilience import CacheSettings, Guards, RetryPolicy, wrap
from massgen.result import RunResult
from massgen.strategies import RunContext, get_strategy

if TYPE_CHECKING:
    from massgen.batch import BatchResult, BatchTask
    from massgen.batch.runner import OnRow
    from massgen.config import ObservabilityConfig, OrchestratorConfig, TeamConfig
    from massgen.eval import EvalReport
    from massgen.memory.short_term import Writer
    from massgen.observability.tracing import Tracing
    from massgen.store.base import Store


def settings(options: dict[str, Any], base: OrchestratorConfig | None = None) -> OrchestratorConfig:
    """Keyword options (the YAML ``orchestrator:`` keys; consensus and cache ones flat, as
    the seed spells them, or ``consensus={...}``) over ``base``, validated once."""
    from pydantic import ValidationError

    from massgen.config import ConsensusConfig, OrchestratorConfig
    from massgen.config.translate import translate

    data: dict[str, Any] = base.model_dump() if base is not None else {}
    consensus = {k: options.pop(k) for k in ConsensusConfig.model_fields if k in options}
    flat = ("cache_enabled", "cache_ttl", "cache_path")
    cache = {k[6:]: options.pop(k) for k in flat if k in options}
    if isinstance(cache.get("path"), Path):
        cache["path"] = str(cache["path"])
    nested = options.pop("consensus", None) or {}  # consensus={"mode": "vote"}: merged
    nested = nested.model_dump(exclude_unset=True) if hasattr(nested, "model_dump") else nested
    data.update(options)
    merge = isinstance(nested, dict)  # else not a mapping: validation says so
    data["consensus"] = {**data.get("consensus", {}), **nested, **consensus} if merge else nested
    data["cache"] = {**data.get("cache", {}), **cache}
    try:
        return OrchestratorConfig.model_validate(data)
    except ValidationError as e:
        raise translate(e, raw=data, file=None, lines={}) from None


class Orchestrator:
    """Runs a team of agents on tasks. ``config``: the team file's ``orchestrator:`` section,
    or its keys as keyword options (flat, as the seed spells them: ``max_rounds=3``,
    ``cache_enabled=True``). ``subscribers`` receive every event. ``observability``: where
    runs are traced to (else the ``OTEL_EXPORTER_OTLP_*`` variables; docs/observability.md).
    ``seats``: the agents taking part (default: all not on ``standby``; the rest stand by)."""

    def __init__(
        self,
        agents: Sequence[Agent],
        config: OrchestratorConfig | None = None,
        *,
        seed: int = 0,
        session: str | None = None,
        cache_store: Store | None = None,
        memory_store: Store | None = None,
        subscribers: Iterable[ev.Subscriber] = (),
        handles: dict[str, AgentHandle] | None = None,
        observability: ObservabilityConfig | None = None,
        seats: Sequence[str] | None = None,
        **options: Any,
    ) -> None:
        if not agents:
            raise ConfigError("an orchestrator needs at least one agent", key="agents")
        self.config = config if config is not None and not options else settings(options, config)
        self.agents = {a.name: a for a in agents}
        if len(self.agents) != len(agents):
            dup = next(a.name for a in agents if [b.name for b in agents].count(a.name) > 1)
            raise ConfigError(f"two agents are named {dup!r}", key="agents")
        refs = [(a.fallback, f"agent {a.name!r}: unknown fallback") for a in agents]
        refs += [(self.config.aggregator, "unknown aggregator")]
        refs += [(self.config.consensus.presenter, "unknown presenter")]
        refs += [(seat, "unknown seats") for seat in seats or ()]
        for ref, what in refs:
            if ref and ref not in self.agents:
                raise ConfigError(f"{what} agent {ref!r}", key=what.split()[-1])
        self._seats = list(seats or ())
        self.seed = seed
        self.subscribers = list(subscribers)
        self.handles: dict[str, AgentHandle] = handles or {
            name: LocalHandle(agent, self._wrap) for name, agent in self.agents.items()
        }
        missing = [  # as the command line does, before anything is sent (a worker's: there)
            f"agent {name!r} needs {' or '.join(need)}"
            for name, agent in self.agents.items()
            if isinstance(self.handles.get(name), LocalHandle) and (need := agent.missing_key())
        ]
        if missing:
            hint = "export each variable, or pass a Backend built with its api_key"
            raise ConfigError("no API key: " + "; ".join(missing), key="api_key", hint=hint)
        self.guards: dict[str, Guards] = {}  # each agent's breaker and rate limit
        self._wrapped: dict[int, Backend] = {}
        if session is not None:
            from massgen.memory.session import check_name

            check_name(session)
        self.session = session  # continued by every run: agents remember its earlier runs
        given = {"cache": cache_store, "memory": memory_store}
        self._stores: dict[str, Store] = {k: v for k, v in given.items() if v is not None}
        self._owned: set[str] = set()  # the stores opened here, closed with the orchestrator
        self.observability = tracing_settings(observability, os.environ)
        self._tracing: Tracing | None = None

    @property
    def tracing(self) -> Tracing | None:
        """This orchestrator's tracer (started on first use), or ``None`` when traces are off."""
        if self._tracing is None and self.observability is not None:
            self._tracing = start_tracing(self.observability, self.agents)
        return self._tracing

    @property
    def strategy(self) -> str:
        return self.config.strategy

    @property
    def max_cost(self) -> float | None:
        return self.config.max_cost

    @max_cost.setter
    def max_cost(self, value: float | None) -> None:
        self.config = settings({"max_cost": value}, self.config)

    def _wrap(self, agent: Writer) -> Backend:
        """The agent's backend in its resilience stack: one per backend, shared by its agents."""
        backend = agent.backend
        if id(backend) not in self._wrapped:
            c = self.config
            retries = 0 if c.error_strategy == "fail_fast" else c.max_retries
            policy = RetryPolicy(max_retries=retries, base_delay=c.retry_delay)
            cache = CacheSettings(self.cache_store(), c.cache.ttl) if c.cache.enabled else None
            guards = self.guards.get(agent.name)
            self._wrapped[id(backend)] = wrap(backend, guards, retry=policy, cache=cache)
        return self._wrapped[id(backend)]

    def backends(self) -> list[Backend]:
        """Each backend in its resilience stack, as built so far (metrics read breakers)."""
        return list(self._wrapped.values())

    def cache_store(self) -> Store:
        """The response cache's store: the one given, else SQLite at ``cache.path``."""
        from massgen.resilience.cache import DEFAULT_CACHE_PATH

        return self._store("cache", self.config.cache.path or DEFAULT_CACHE_PATH)

    def memory_store(self) -> Store:
        """Where sessions and long-term memory live: the one given, else a SQLite file."""
        return self._store("memory", DEFAULT_MEMORY_PATH)

    def _store(self, kind: str, path: str | Path) -> Store:
        if kind not in self._stores:
            from massgen.store import open_store

            self._stores[kind] = open_store(Path(path))
            self._owned.add(kind)
        return self._stores[kind]

    def _uses_memory(self) -> bool:
        return self.session is not None or any(
            a.long_term is not None for a in self.agents.values()
        )

    def _begin_memory(self) -> None:
        """Point each agent at the session (loaded on its first turn) and the store."""
        if not self._uses_memory():
            return
        from massgen.memory.session import Sessions

        store = self.memory_store()
        sessions = Sessions(store) if self.session else None
        for name, agent in self.agents.items():
            agent.memory.attach(sessions, self.session or "", name)
            if agent.long_term is not None:
                agent.long_term.bind(store)

    async def _end_memory(self, result: RunResult) -> None:
        """Append the run to the session and long-term memory (a failure is only logged)."""
        if not self._uses_memory():
            return
        from massgen.memory.long_term import MemoryItem, own_answer
        from massgen.memory.session import Exchange, Sessions

        now = time.time()
        owns = {name: own_answer(result, name) for name in self.agents}
        try:
            if self.session:
                task, run_id = result.task, result.run_id
                entries = {n: Exchange(task, t, run_id, now) for n, t in owns.items() if t}
                await Sessions(self.memory_store()).record(self.session, run_id, entries)
            for name, agent in self.agents.items():
                if agent.long_term is not None and result.final_answer:
                    item = MemoryItem.from_run(result, name, owns[name], now)
                    await agent.long_term.remember(item)
        except MassGenError as e:
            _log.warning("memory not saved: %s", e)

    @classmethod
    def from_config(cls, config: str | Path | TeamConfig, **overrides: Any) -> Orchestrator:
        """Build from a YAML file (or a loaded TeamConfig); keyword options override it."""
        from massgen.config import TeamConfig, load
        from massgen.team import build_agents, build_guards, uses_memory_store

        cfg = config if isinstance(config, TeamConfig) else load(config)
        run = {k: overrides.pop(k) for k in _RUNTIME if overrides.get(k) is not None}
        options = {k: v for k, v in overrides.items() if v is not None}
        section = settings(options, cfg.orchestrator) if options else cfg.orchestrator
        owned: set[str] = set()
        if cfg.redis:  # sessions, memory and the cache are shared through Redis
            from massgen.store import open_store

            redis_store = functools.partial(open_store, cfg.redis.url, prefix=cfg.redis.prefix)
            if (run.get("session") or uses_memory_store(cfg)) and "memory_store" not in run:
                run["memory_store"] = redis_store()
                owned.add("memory")
            if section.cache.enabled and not section.cache.path and "cache_store" not in run:
                run["cache_store"] = redis_store()
                owned.add("cache")
        run.setdefault("observability", cfg.observability)
        built = cls(build_agents(cfg), section, **run)
        built.guards, built._owned = build_guards(cfg), owned
        return built

    def seats(self) -> list[str]:
        """Agents that take part on their own (``seats``, else all but those on ``standby``)."""
        return list(self._seats or [n for n, a in self.agents.items() if not a.standby])

    async def arun(
        self,
        task: str,
        strategy: str | None = None,
        *,
        budget: Budget | None = None,
        subscribers: Iterable[ev.Subscriber] = (),
    ) -> RunResult:
        """Run ``task`` and return its result; on failure, raise with it as ``error.result``.
        ``budget``: shared with other runs (a batch); by default one of ``max_cost``.
        ``subscribers``: this run's own, after the orchestrator's."""
        name = strategy or self.config.strategy
        impl = get_strategy(name)
        if not task or not task.strip():
            raise ConfigError("the task is empty", key="task", hint="give the task as text")
        run_id = time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(3)
        result = RunResult(run_id=run_id, task=task, strategy=name, started_at=time.time())
        fallbacks = {n: a.fallback for n, a in self.agents.items() if a.fallback}
        tracer = self.tracing.run(fallbacks, self.session) if self.tracing is not None else None
        bus = ev.EventBus([*self.subscribers, *subscribers, *([tracer] if tracer else [])])
        ctx = RunContext(
            result=result,
            handles=self.handles,
            emit=bus.emit,
            config=self.config,
            seed=self.seed,
            fallbacks=fallbacks,
            live=self.seats(),
            budget=budget if budget is not None else Budget(self.config.max_cost),
            stream=bus.wants_deltas,
            listening=bus.listening,
            observing=bus.wants_requests,
            trace=tracer.traceparent if tracer is not None else None,
        )
        if bus.listening:
            bus.emit(ev.RunStarted(run_id=run_id, task=task, strategy=name, agents=tuple(ctx.live)))
        started = time.perf_counter()

        def close(status: Any, error: str | None) -> None:
            result.duration = time.perf_counter() - started
            result.status, result.error = status, error

        self._begin_memory()
        try:
            async with asyncio.timeout(self.config.timeout):
                await impl(task, ctx)
        except asyncio.CancelledError:
            close("interrupted", "interrupted")
            bus.emit(ev.RunEnded(result=result))
            raise
        except (TimeoutError, MassGenError) as e:
            late = f"the run took longer than its timeout ({self.config.timeout or 0:g} s)"
            error = e if isinstance(e, MassGenError) else RunError(late)
            close("failed", str(error))
            bus.emit(ev.RunEnded(result=result))
            error.result = result  # type: ignore[attr-defined]
            if error is e:
                raise
            raise error from e
        close(result.status, None)
        await self._end_memory(result)
        if bus.listening:
            bus.emit(
                ev.FinalAnswer(
                    text=result.final_answer, winner=result.winner, degraded=result.degraded
                )
            )
            bus.emit(ev.RunEnded(result=result))
        return result

    def run(self, task: str, strategy: str | None = None) -> Any:
        """Run ``task``: blocks and returns the RunResult outside an event loop (as in the
        seed's examples); inside one, returns an awaitable (``await orchestrator.run(...)``)."""
        return self._blocking(lambda: self.arun(task, strategy))

    async def abatch_run(
        self,
        tasks: Sequence[str | BatchTask],
        *,
        concurrency: int = 8,
        strategy: str | None = None,
        out: str | Path | None = None,
        resume: bool = True,
        on_row: OnRow | None = None,
    ) -> BatchResult:
        """Run every task; with ``out``, write a JSON line per finished task (``resume``: skip
        those there). ``max_cost`` is one budget; with a session, tasks run in order."""
        from massgen.batch import ResultLog, from_strings, run_batch

        if self.session is not None:
            concurrency = 1
        items = from_strings(tasks)  # checked before the results file is opened
        with ResultLog(out, resume=resume) if out is not None else nullcontext() as log:
            return await run_batch(
                self,
                items,
                log=log,
                concurrency=concurrency,
                strategy=strategy,
                max_cost=self.max_cost,
                on_row=on_row,
            )

    def batch_run(self, tasks: Sequence[str | BatchTask], **options: Any) -> Any:
        """The seed's ``results = orchestrator.batch_run(tasks)``: blocks outside an event
        loop, returns an awaitable inside one (like :meth:`run`)."""
        return self._blocking(lambda: self.abatch_run(tasks, **options))

    async def aevaluate(self, data: str | Path | Sequence[Any], **options: Any) -> EvalReport:
        """Compare methods on ``data`` with this team: accuracy, interval, paired test and
        cost of each (``massgen.eval.assess``'s options; docs/eval.md)."""
        from massgen.eval import assess

        return await assess(self, data, **{"max_cost": self.max_cost, **options})

    def evaluate(self, data: str | Path | Sequence[Any], **options: Any) -> Any:
        """:meth:`aevaluate`, blocking outside an event loop (like :meth:`run`)."""
        return self._blocking(lambda: self.aevaluate(data, **options))

    def _blocking(self, work: Callable[[], Awaitable[Any]]) -> Any:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            box: list[Any] = []
            asyncio.run(self._once(work, box))
            return box[0]
        return work()

    async def _once(self, work: Callable[[], Awaitable[Any]], box: list[Any]) -> None:
        # Clients are bound to the loop asyncio.run is about to close. The result goes in
        # ``box``: asyncio.run formats the main task's repr, result included, when it
        # restores the SIGINT handler, and a batch's results are large.
        try:
            box.append(await work())
        finally:
            await self.aclose()

    async def aclose(self) -> None:
        """Send the spans not sent yet; close every backend's connections and the tools'
        servers (MCP)."""
        if self._tracing is not None:
            tracing, self._tracing = self._tracing, None
            await tracing.aclose()
        if any(a.tools for a in self.agents.values()):
            from massgen.tools.base import Tool

            owned = [t for a in self.agents.values() for t in a.tools if isinstance(t, Tool)]
            for held in {id(t): t for t in owned}.values():  # each once: agents share groups
                await held.aclose()
        built = {id(b): b for a in self.agents.values() if (b := a.built_backend()) is not None}
        for backend in built.values():  # each once: agents may share one backend
            await backend.aclose()
        for lease in {g.redis for g in self.guards.values() if g.redis}:
            await lease.aclose()  # the guards' shared state: one lease for the team
        while self._owned:
            await self._stores.pop(self._owned.pop()).aclose()

    async def __aenter__(self) -> Orchestrator:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


DEFAULT_MEMORY_PATH = ".massgen/memory.sqlite3"  # when no store is given and no Redis
_log = logging.getLogger("massgen.memory")
_RUNTIME: tuple[str, ...] = ("seed", "session", "cache_store", "memory_store", "subscribers")
_RUNTIME += ("handles", "observability", "seats")


__all__ = ["Orchestrator"]
