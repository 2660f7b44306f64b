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
        agents.append(
            Agent(
                a.name,
                backend,
                a.role,
                model=a.model,
                capabilities=a.capabilities,
                tools=a.tools,
                memory_strategy=a.memory.strategy,
                memory_size=a.memory.size,
                fallback=a.fallback,
                temperature=a.temperature,
                max_tokens=a.max_tokens,
                prices=prices,
            )
        )
    return agents


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
