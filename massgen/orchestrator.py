"""The orchestrator: a team of agents, a strategy, and the run loop around them.

It builds the run context, emits the run's start and end, applies the timeout, and turns
whatever happens (an answer, a failure, Ctrl-C) into a :class:`~massgen.result.RunResult`.
What the strategy does in between is the strategy's business.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from massgen import events as ev
from massgen.agents.agent import Agent
from massgen.agents.handle import AgentHandle, LocalHandle
from massgen.backends.base import Backend
from massgen.budget import Budget
from massgen.errors import ConfigError, MassGenError, RunError
from massgen.resilience import CacheSettings, Guards, RetryPolicy, wrap
from massgen.result import RunResult
from massgen.strategies import RunContext, Settings, get_strategy

if TYPE_CHECKING:
    from massgen.batch import BatchResult, BatchTask
    from massgen.batch.runner import OnRow
    from massgen.config import TeamConfig
    from massgen.store.base import Store


class Orchestrator:
    """Runs a team of agents on tasks.

    The keyword arguments mirror the YAML ``orchestrator:`` section (including the seed's
    ``cache_enabled``/``cache_ttl`` spellings). ``subscribers`` receive every event.
    """

    def __init__(
        self,
        agents: Sequence[Agent],
        *,
        strategy: str = "consensus",
        error_strategy: str = "continue",
        max_retries: int = 3,
        retry_delay: float = 1.0,
        threshold: float = 0.5,
        max_rounds: int = 2,
        topology: str = "full",
        neighbors: int = 2,
        final: str = "winner",
        presenter: str | None = None,
        answer_budget: int = 400,
        aggregator: str | None = None,
        max_parallel: int | None = None,
        timeout: float | None = None,
        cache_enabled: bool = False,
        cache_ttl: float = 3600,
        cache_path: str | Path | None = None,
        cache_store: Store | None = None,
        max_cost: float | None = None,
        session: str | None = None,
        memory_store: Store | None = None,
        seed: int = 0,
        subscribers: Iterable[ev.Subscriber] = (),
        handles: dict[str, AgentHandle] | None = None,
    ) -> None:
        if not agents:
            raise ConfigError("an orchestrator needs at least one agent", key="agents")
        names = [a.name for a in agents]
        if len(set(names)) != len(names):
            dup = next(n for n in names if names.count(n) > 1)
            raise ConfigError(f"two agents are named {dup!r}", key="agents")
        if error_strategy not in ("continue", "fail_fast", "retry"):
            raise ConfigError(
                f"unknown error_strategy {error_strategy!r}",
                key="error_strategy",
                hint="use one of: continue, fail_fast, retry",
            )
        get_strategy(strategy)  # validate early
        self.agents = {a.name: a for a in agents}
        for a in agents:
            for ref, key in ((a.fallback, "fallback"),):
                if ref and ref not in self.agents:
                    raise ConfigError(f"agent {a.name!r}: unknown {key} agent {ref!r}", key=key)
        for ref, key in ((aggregator, "aggregator"), (presenter, "presenter")):
            if ref and ref not in self.agents:
                raise ConfigError(f"unknown {key} agent {ref!r}", key=key)
        self.strategy = strategy
        self.settings = Settings(
            error_strategy=error_strategy,
            threshold=threshold,
            max_rounds=max_rounds,
            topology=topology,
            neighbors=neighbors,
            final=final,
            presenter=presenter,
            answer_budget=answer_budget,
            aggregator=aggregator,
            max_parallel=max_parallel,
            seed=seed,
        )
        self.max_retries = max_retries
        self.retry_delay = retry_delay
        self.timeout = timeout
        self.cache_enabled = cache_enabled
        self.cache_ttl = cache_ttl
        self.cache_path = cache_path
        self._cache_store = cache_store
        self._owns_store = False
        self.max_cost = max_cost
        self.subscribers = list(subscribers)
        self.handles: dict[str, AgentHandle] = handles or {
            name: LocalHandle(agent, self._wrap) for name, agent in self.agents.items()
        }
        self.guards: dict[str, Guards] = {}
        """Each agent's endpoint guards (circuit breaker, rate limit), from its config."""
        self._wrapped: dict[int, Backend] = {}
        if session is not None:
            from massgen.memory.session import check_name

            check_name(session)
        self.session = session
        """Session continued by every run (``--session``): agents remember its earlier runs."""
        self._memory_store = memory_store
        self._owns_memory = False

    def _wrap(self, agent: Agent) -> Backend:
        """The agent's backend in its resilience stack: one stack per backend object, so
        agents sharing a backend share all of it (breaker, limits, cache)."""
        backend = agent.backend
        if id(backend) not in self._wrapped:
            retries = 0 if self.settings.error_strategy == "fail_fast" else self.max_retries
            policy = RetryPolicy(max_retries=retries, base_delay=self.retry_delay)
            cache = (
                CacheSettings(self.cache_store(), self.cache_ttl) if self.cache_enabled else None
            )
            guards = self.guards.get(agent.name)
            self._wrapped[id(backend)] = wrap(backend, guards, retry=policy, cache=cache)
        return self._wrapped[id(backend)]

    def cache_store(self) -> Store:
        """The response cache's store: the one given, else a SQLite file opened on first use
        (``cache_path``, default ``.massgen/cache.sqlite3``)."""
        if self._cache_store is None:
            from massgen.resilience.cache import DEFAULT_CACHE_PATH
            from massgen.store import open_store

            self._cache_store = open_store(Path(self.cache_path or DEFAULT_CACHE_PATH))
            self._owns_store = True
        return self._cache_store

    def memory_store(self) -> Store:
        """Where sessions and long-term memory live: the one given, else a SQLite file
        opened on first use (``.massgen/memory.sqlite3``)."""
        if self._memory_store is None:
            from massgen.store import open_store

            self._memory_store = open_store(Path(DEFAULT_MEMORY_PATH))
            self._owns_memory = True
        return self._memory_store

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
        """Append the run to the session and to long-term memory. A store that fails is
        logged: the run's answer stands."""
        if not self._uses_memory():
            return
        from massgen.memory.long_term import MemoryItem, own_answer
        from massgen.memory.session import Exchange, Sessions

        now = time.time()
        owns = {name: own_answer(result, name) for name in self.agents}
        try:
            if self.session:
                entries = {
                    n: Exchange(result.task, text, result.run_id, now)
                    for n, text in owns.items()
                    if text
                }
                await Sessions(self.memory_store()).record(self.session, result.run_id, entries)
            for name, agent in self.agents.items():
                if agent.long_term is not None and result.final_answer:
                    item = MemoryItem.from_run(result, name, owns[name], now)
                    await agent.long_term.remember(item)
        except MassGenError as e:
            _log.warning("memory not saved: %s", e)

    # -- construction from YAML ---------------------------------------------------------------
    @classmethod
    def from_config(cls, config: str | Path | TeamConfig, **overrides: Any) -> Orchestrator:
        """Build from a YAML file (or a loaded TeamConfig); keyword args override it."""
        from massgen.config import TeamConfig, load
        from massgen.team import build_agents, build_guards, orchestrator_options

        cfg = config if isinstance(config, TeamConfig) else load(config)
        options = orchestrator_options(cfg)
        options.update({k: v for k, v in overrides.items() if v is not None})
        owns_memory = owns_cache = False
        if cfg.redis:
            from massgen.store import open_store
            from massgen.team import uses_memory_store

            redis_store = functools.partial(open_store, cfg.redis.url, prefix=cfg.redis.prefix)
            wants_memory = options.get("session") or uses_memory_store(cfg)
            if wants_memory and "memory_store" not in options:
                options["memory_store"] = redis_store()  # sessions and memory shared via Redis
                owns_memory = True
            wants_cache = options.get("cache_enabled") and not cfg.orchestrator.cache.path
            if wants_cache and "cache_store" not in options:
                options["cache_store"] = redis_store()  # the cache shared through Redis
                owns_cache = True
        built = cls(build_agents(cfg), **options)
        built.guards = build_guards(cfg)
        built._owns_memory, built._owns_store = owns_memory, owns_cache
        return built

    # -- running --------------------------------------------------------------------------------
    def seats(self) -> list[str]:
        """Agents that take part on their own (all but those on ``standby``)."""
        return [n for n, a in self.agents.items() if not a.standby]

    async def arun(
        self, task: str, strategy: str | None = None, *, budget: Budget | None = None
    ) -> RunResult:
        """Run ``task`` and return its result; raises on failure (the result is attached
        to the error as ``error.result``). ``budget`` is shared with other runs (a batch);
        by default each run gets its own of ``max_cost``."""
        name = strategy or self.strategy
        impl = get_strategy(name)
        if not task or not task.strip():
            raise ConfigError("the task is empty", key="task", hint="give the task as text")
        result = RunResult(run_id=_run_id(), task=task, strategy=name, started_at=time.time())
        bus = ev.EventBus(self.subscribers)
        ctx = RunContext(
            result=result,
            handles=self.handles,
            emit=bus.emit,
            settings=self.settings,
            fallbacks={n: a.fallback for n, a in self.agents.items() if a.fallback},
            live=self.seats(),
            budget=budget if budget is not None else Budget(self.max_cost),
            stream=bus.wants_deltas,
            listening=bus.listening,
        )
        if bus.listening:
            bus.emit(
                ev.RunStarted(
                    run_id=result.run_id, task=task, strategy=name, agents=tuple(ctx.live)
                )
            )
        started = time.perf_counter()
        self._begin_memory()
        try:
            if self.timeout:
                async with asyncio.timeout(self.timeout):
                    await impl.run(task, ctx)
            else:
                await impl.run(task, ctx)
        except asyncio.CancelledError:
            self._close(result, started, "interrupted", "interrupted")
            bus.emit(ev.RunEnded(result=result))
            raise
        except TimeoutError as e:
            error = RunError(f"the run took longer than its timeout ({self.timeout:g} s)")
            self._close(result, started, "failed", str(error))
            bus.emit(ev.RunEnded(result=result))
            error.result = result  # type: ignore[attr-defined]
            raise error from e
        except MassGenError as e:
            self._close(result, started, "failed", str(e))
            bus.emit(ev.RunEnded(result=result))
            e.result = result  # type: ignore[attr-defined]
            raise
        self._close(result, started, result.status, None)
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
        """Run ``task``: blocks and returns the RunResult when called outside an event loop
        (as in the seed's examples); inside one, returns an awaitable (``await
        orchestrator.run(...)``)."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(self._run_once(task, strategy))
        return self.arun(task, strategy)

    async def _run_once(self, task: str, strategy: str | None) -> RunResult:
        # Clients are bound to the event loop that asyncio.run is about to close.
        try:
            return await self.arun(task, strategy)
        finally:
            await self.aclose()

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
        """Run every task; with ``out``, write one JSON line per finished task and (with
        ``resume``) skip the tasks already finished there. ``max_cost`` is one budget for
        the whole batch. With a :attr:`session`, the tasks are turns of one conversation:
        they run one after another, in order, whatever ``concurrency`` says."""
        from massgen.batch import ResultLog, from_strings, run_batch

        if self.session is not None:
            concurrency = 1
        items = from_strings(tasks)
        log = ResultLog(out, resume=resume) if out is not None else None
        try:
            return await run_batch(
                self,
                items,
                log=log,
                concurrency=concurrency,
                strategy=strategy,
                max_cost=self.max_cost,
                on_row=on_row,
            )
        finally:
            if log is not None:
                log.close()

    def batch_run(self, tasks: Sequence[str | BatchTask], **options: Any) -> Any:
        """The seed's ``results = orchestrator.batch_run(tasks)``: blocks outside an event
        loop, returns an awaitable inside one (like :meth:`run`)."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            box: list[BatchResult] = []
            asyncio.run(self._batch_once(tasks, options, box))
            return box[0]
        return self.abatch_run(tasks, **options)

    async def _batch_once(
        self, tasks: Sequence[str | BatchTask], options: dict[str, Any], box: list[BatchResult]
    ) -> None:
        # The result goes in ``box`` rather than being returned: asyncio.run formats the
        # main task's repr, result included, when it restores the SIGINT handler, and a
        # batch's results are large (tens of ms for a thousand tasks).
        try:
            box.append(await self.abatch_run(tasks, **options))
        finally:
            await self.aclose()

    @staticmethod
    def _close(result: RunResult, started: float, status: Any, error: str | None) -> None:
        result.duration = time.perf_counter() - started
        result.status = status
        result.error = error

    async def aclose(self) -> None:
        """Close every backend's connections."""
        seen: set[int] = set()  # agents may share one backend
        for agent in self.agents.values():
            backend = agent.built_backend()
            if backend is not None and id(backend) not in seen:
                seen.add(id(backend))
                await backend.aclose()
        for redis in {id(g.redis): g.redis for g in self.guards.values() if g.redis}.values():
            await redis.aclose()  # the guards' shared state: one client for the team
        if self._owns_store and self._cache_store is not None:
            await self._cache_store.aclose()
            self._cache_store, self._owns_store = None, False
        if self._owns_memory and self._memory_store is not None:
            await self._memory_store.aclose()
            self._memory_store, self._owns_memory = None, False

    async def __aenter__(self) -> Orchestrator:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


DEFAULT_MEMORY_PATH = ".massgen/memory.sqlite3"
"""Sessions and long-term memory, when no store is given and there is no Redis."""

_log = logging.getLogger("massgen.memory")


def _run_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S") + "-" + uuid.uuid4().hex[:6]


__all__ = ["Orchestrator"]
