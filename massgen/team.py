"""Turn a loaded TeamConfig into agents and orchestrator options.

Named backends are built once and shared by the agents that use them, so one SDK client
(and its connection pool) serves them all.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from massgen.agents.agent import Agent
from massgen.backends.base import Backend
from massgen.errors import ConfigError

if TYPE_CHECKING:
    from massgen.config import BackendConfig, TeamConfig


def build_backend(cfg: BackendConfig, team: TeamConfig, name: str = "") -> Backend:
    """The backend of ``cfg`` behind its endpoint guards (rate limit, circuit breaker)."""
    return guard(_raw_backend(cfg, team, name), cfg, team)


def guard(backend: Backend, cfg: BackendConfig, team: TeamConfig) -> Backend:
    """Layer the per-endpoint wrappers: rate limit → circuit breaker → the backend.

    They hold the endpoint's state, so they sit here (one per configured backend) rather
    than in the orchestrator, which adds retry and cache outside them. With Redis configured
    their state is shared by every process using the same endpoint.
    """
    from massgen.resilience.breaker import endpoint_key

    key = endpoint_key(backend)
    redis = team.redis
    if cfg.breaker is not False:
        from massgen.resilience.breaker import (
            BreakerBackend,
            BreakerPolicy,
            CircuitBreaker,
            RedisBreakerState,
        )

        b = cfg.breaker if not isinstance(cfg.breaker, bool) else None
        policy = BreakerPolicy(b.failures, b.cooldown, b.probe_timeout) if b else BreakerPolicy()
        state = RedisBreakerState(redis.url, redis.prefix, key) if redis else None
        backend = BreakerBackend(backend, CircuitBreaker(key, policy, state=state))
    if cfg.rate_limit is not None:
        from massgen.resilience.ratelimit import (
            MemoryLimiter,
            RateLimit,
            RateLimitedBackend,
            RedisLimiter,
        )

        r = cfg.rate_limit
        limit = RateLimit(r.rpm, r.tpm, r.max_in_flight, r.output_tokens)
        # Providers limit per model: processes share one log per endpoint and model.
        shared = f"{key}:{backend.model}" if backend.model else key
        limiter = (
            RedisLimiter(redis.url, redis.prefix, shared, limit) if redis else MemoryLimiter(limit)
        )
        backend = RateLimitedBackend(backend, limiter)
    return backend


def _raw_backend(cfg: BackendConfig, team: TeamConfig, name: str) -> Backend:
    from massgen.backends.registry import OPENAI_COMPATIBLE, create_backend

    api_key = cfg.api_key.get_secret_value() if cfg.api_key is not None else None
    return create_backend(
        cfg.type,
        model=cfg.model,
        name=name or cfg.type,
        api_key=api_key,
        base_url=cfg.base_url,
        temperature=cfg.temperature,
        max_tokens=cfg.max_tokens,
        timeout=cfg.timeout,
        params=dict(cfg.params),
        base_dir=team.base_dir,
        client=cfg.client if cfg.type in OPENAI_COMPATIBLE else None,
    )


def price_overrides(team: TeamConfig) -> dict[str, dict[str, float]]:
    prices = {model: {"input": p.input, "output": p.output} for model, p in team.prices.items()}
    for cfg in [*team.backends.values(), *(a.backend for a in team.agents)]:
        if not isinstance(cfg, str) and cfg.prices is not None and cfg.model:
            prices[cfg.model] = {"input": cfg.prices.input, "output": cfg.prices.output}
    return prices


def build_agents(team: TeamConfig) -> list[Agent]:
    """One Agent per config entry; named backends shared, inline ones per agent."""
    shared: dict[str, Backend] = {}
    prices = price_overrides(team)
    agents: list[Agent] = []
    for i, a in enumerate(team.agents):
        if isinstance(a.backend, str):
            if a.backend not in shared:
                with _located(team, "backends", a.backend):
                    shared[a.backend] = build_backend(team.backends[a.backend], team, a.backend)
            backend = shared[a.backend]
        else:
            with _located(team, "agents", i, "backend"):
                backend = build_backend(a.backend, team, f"{a.name}.backend")
        tools = build_agent_tools(team, i, backend)
        agents.append(
            Agent(
                a.name,
                backend,
                a.role,
                model=a.model,
                capabilities=a.capabilities,
                tools=tools,
                max_tool_iterations=a.max_tool_iterations or team.orchestrator.max_tool_iterations,
                memory_strategy=a.memory.strategy,
                memory_size=a.memory.size,
                fallback=a.fallback,
                standby=a.standby,
                temperature=a.temperature,
                max_tokens=a.max_tokens,
                prices=prices,
            )
        )
    configure_memory(team, agents)
    if any(a.tools for a in team.agents):
        from massgen.tools.agents import connect

        connect(agents)
    return agents


def configure_memory(team: TeamConfig, agents: list[Agent]) -> None:
    """Each agent's context window override, summarizer and long-term memory from its
    ``memory:`` settings (the store is bound by the orchestrator)."""
    by_name = {a.name: a for a in agents}
    for cfg, agent in zip(team.agents, agents, strict=True):
        m = cfg.memory
        agent.memory.context_window = m.context_window
        if m.summarizer and m.summarizer != agent.name:
            agent.memory.summarizer = by_name[m.summarizer]
        if m.long_term:
            from massgen.memory.long_term import LongTermMemory

            agent.long_term = LongTermMemory(
                agent=agent.name if m.long_term_scope == "agent" else None,
                recall=m.recall,
                recall_budget=m.recall_budget,
                max_items=m.max_items,
                max_age_days=m.max_age_days,
            )


def uses_memory_store(team: TeamConfig) -> bool:
    return any(a.memory.long_term for a in team.agents)


def build_agent_tools(team: TeamConfig, index: int, backend: Backend) -> list[Any]:
    """The tools agent ``index`` lists, built with their ``tools:`` settings.

    A backend that cannot call tools, given tools, is a configuration error (at the agent's
    ``tools`` key) rather than a surprise mid-run.
    """
    names = team.agents[index].tools
    if not names:
        return []
    if not backend.supports_tools:
        with _located(team, "agents", index, "tools"):
            raise ConfigError(
                f"backend {backend.describe()!r} cannot call tools",
                hint="remove `tools:` from this agent or give it a backend with tool calling",
            )
    from massgen.tools.registry import build_tool, check_backend

    built = []
    model = team.agents[index].model or backend.model or None
    for j, name in enumerate(names):
        where: tuple[str | int, ...] = (
            ("tools", name) if name in team.tools else ("agents", index, "tools", j)
        )
        with _located(team, *where):
            built.append(build_tool(name, team.tools.get(name), team.base_dir))
            check_backend(built[-1], backend, model=model, with_functions=len(names) > 1)
    return built


@contextmanager
def _located(team: TeamConfig, *path: str | int) -> Iterator[None]:
    """Point a ConfigError raised while building at the config entry that caused it."""
    try:
        yield
    except ConfigError as e:
        if e.file is None:
            file, line = team.locate(*path)
            key = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path)[1:]
            key += f".{e.key}" if e.key else ""
            raise ConfigError(e.message, file=file, line=line, key=key, hint=e.hint) from e
        raise


def orchestrator_options(team: TeamConfig) -> dict[str, Any]:
    o = team.orchestrator
    c = o.consensus
    return {
        "strategy": o.strategy,
        "error_strategy": o.error_strategy,
        "max_retries": o.max_retries,
        "retry_delay": o.retry_delay,
        "threshold": c.threshold,
        "max_rounds": c.max_rounds,
        "topology": c.topology,
        "neighbors": c.neighbors,
        "final": c.final,
        "presenter": c.presenter,
        "answer_budget": c.answer_budget,
        "aggregator": o.aggregator,
        "max_parallel": o.max_parallel,
        "timeout": o.timeout,
        "cache_enabled": o.cache.enabled,
        "cache_ttl": o.cache.ttl,
        "cache_path": o.cache.path,
        "max_cost": o.max_cost,
    }
