"""Turn a loaded TeamConfig into agents and orchestrator options. Named backends are built
once and shared by their agents: one client (and connection pool) serves them all."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from massgen.agents.agent import Agent
from massgen.backends.base import Backend
from massgen.errors import ConfigError
from massgen.tokens import CACHE_PRICES

if TYPE_CHECKING:
    from massgen.config import BackendConfig, Price, TeamConfig
    from massgen.resilience import Guards


def build_guards(team: TeamConfig) -> dict[str, Guards]:
    """Each agent's circuit breaker and rate limit from its backend's config; with Redis, their
    state is shared by every process using the endpoint (through one lease the caller closes)."""
    from massgen.resilience import BreakerPolicy, Guards, RateLimit

    redis = None
    if team.redis is not None:
        from massgen.store.redis_client import RedisLease

        redis = RedisLease(team.redis.url)
    guards: dict[str, Guards] = {}
    for agent in team.agents:
        cfg, b, r = team.backend_for(agent), None, None
        if isinstance(c := cfg.breaker, bool):
            b = BreakerPolicy() if c else None
        else:
            b = BreakerPolicy(c.failures, c.cooldown, c.probe_timeout)
        if (limit := cfg.rate_limit) is not None:
            r = RateLimit(limit.rpm, limit.tpm, limit.max_in_flight, limit.output_tokens)
        prefix = team.redis.prefix if team.redis else ""
        guards[agent.name] = Guards(b, r, redis if b or r else None, prefix)
    return guards


def build_backend(cfg: BackendConfig, team: TeamConfig, name: str = "") -> Backend:
    """The backend of ``cfg``, bare: the orchestrator wraps it (:func:`build_guards`)."""
    from massgen.backends.registry import create_backend
    from massgen.providers import OPENAI_COMPATIBLE

    return create_backend(
        cfg.type,
        model=cfg.model,
        name=name or cfg.type,
        api_key=_secret(cfg),
        base_url=cfg.base_url,
        temperature=cfg.temperature,
        max_tokens=cfg.max_tokens,
        timeout=cfg.timeout,
        params=dict(cfg.params),
        base_dir=team.base_dir,
        client=cfg.client if cfg.type in OPENAI_COMPATIBLE else None,
    )


def price_overrides(team: TeamConfig) -> dict[str, dict[str, float]]:
    """Prices per model: the team's table, then each backend's own for its agents' models."""
    prices = {model: _price(p) for model, p in team.prices.items()}
    for cfg in [*team.backends.values(), *map(team.backend_for, team.agents)]:
        if cfg.prices is not None and cfg.model:
            prices[cfg.model] = _price(cfg.prices)
    return prices


def _price(p: Price) -> dict[str, float]:
    price = {"input": p.input, "output": p.output}
    for kind in CACHE_PRICES:
        if (usd := getattr(p, kind)) is not None:
            price[kind] = usd
    return price


def build_agents(team: TeamConfig) -> list[Agent]:
    """One Agent per config entry; named backends shared, inline ones per agent. Models and
    keys are checked before any backend (or SDK) is built, missing keys named in one error."""
    check_models(team)
    check_keys(team)
    shared: dict[str, Backend] = {}
    groups: dict[str, Any] = {}  # an MCP server's entry: one server for all its agents
    prices = price_overrides(team)
    agents: list[Agent] = []
    for i, a in enumerate(team.agents):
        if isinstance(a.backend, str):
            if a.backend not in shared:
                with _located(team, *_backend_path(team, a.backend)):
                    cfg = _shared_config(team, a.backend)
                    shared[a.backend] = build_backend(cfg, team, a.backend)
            backend = shared[a.backend]
        else:
            with _located(team, "agents", i, "backend"):
                cfg = team.backend_for(a)  # an agent's own backend takes its overrides
                backend = build_backend(cfg, team, f"{a.name}.backend")
        agents.append(
            Agent(
                a.name,
                backend,
                a.role,
                model=a.model,
                capabilities=a.capabilities,
                tools=build_agent_tools(team, i, backend, groups),
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
        from massgen.teamtools import connect

        connect(agents)
    return agents


def check_models(team: TeamConfig) -> None:
    """Each agent has a model (its own, else its backend's) where the backend's type needs one."""
    from massgen.backends.registry import model_hint, needs_model

    for i, agent in enumerate(team.agents):
        cfg = team.backend_for(agent)
        if not cfg.model and needs_model(cfg.type):
            bare = not isinstance(agent.backend, str) or agent.backend == cfg.type
            named = "" if bare else f" `{agent.backend}`"
            why = f"agent {agent.name!r} has no model, and its {cfg.type} backend{named} sets none"
            with _located(team, "agents", i):
                raise ConfigError(why, key="model", hint=model_hint(cfg.type))


def check_keys(team: TeamConfig) -> None:
    """Every backend the agents use has its API key; one error names all missing ones."""
    from massgen.backends.registry import key_variables, missing_key

    users: dict[tuple[str | int, ...], tuple[BackendConfig, list[str]]] = {}  # by place
    for i, agent in enumerate(team.agents):
        ref = agent.backend
        path = _backend_path(team, ref) if isinstance(ref, str) else ("agents", i, "backend")
        cfg = team.backends[ref] if isinstance(ref, str) else ref
        users.setdefault(path, (cfg, []))[1].append(agent.name)
    missing = [
        (path, names, cfg.type, need)
        for path, (cfg, names) in users.items()
        if (need := key_variables(cfg.type, _secret(cfg)))
    ]
    if not missing:
        return
    if len(missing) == 1:
        with _located(team, *missing[0][0]):
            raise missing_key(missing[0][2])
    file, _ = team.locate()
    rows = []
    for path, names, kind, need in missing:
        _, line = team.locate(*path)
        where = (file or "") + (f":{line}" if line else "")
        who = ("agent " if len(names) == 1 else "agents ") + ", ".join(names)
        rows.append(f"  {where}: `{_dotted(path)}` ({who}): {kind} needs {' or '.join(need)}")
    message = f"no API key for {len(missing)} backends:\n" + "\n".join(rows)
    hint = "export each variable, or set `api_key: ${VAR}` on the backend"
    raise ConfigError(message, file=file, hint=hint)


def _backend_path(team: TeamConfig, name: str) -> tuple[str | int, ...]:
    """Where the backend ``name`` was written: its ``backends:`` entry, or, for a provider
    named bare (``backend: openai``), the first agent naming it."""
    if team.locate("backends", name)[1] is not None:
        return ("backends", name)
    for i, agent in enumerate(team.agents):
        if agent.backend == name:
            return ("agents", i, "backend")
    return ("backends", name)


def _shared_config(team: TeamConfig, name: str) -> BackendConfig:
    """The named backend ``name``; without a model of its own, it defaults to the first of
    its agents' (each agent sends its own ``model:`` with every request anyway)."""
    cfg = team.backends[name]
    if cfg.model:
        return cfg
    model = next((a.model for a in team.agents if a.backend == name and a.model), None)
    return cfg.model_copy(update={"model": model}) if model else cfg


def _dotted(path: tuple[str | int, ...]) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path)[1:]


def configure_memory(team: TeamConfig, agents: list[Agent]) -> None:
    """Each agent's context window, summarizer and long-term memory from its ``memory:``."""
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


def build_agent_tools(
    team: TeamConfig, index: int, backend: Backend, groups: dict[str, Any]
) -> list[Any]:
    """The tools agent ``index`` lists, built with their ``tools:`` settings (a config error
    if its backend cannot call tools, rather than a surprise mid-run); ``groups``: the group
    tools built so far (MCP servers), shared by name."""
    names = team.agents[index].tools
    if not names:
        return []
    if not backend.supports_tools:
        hint = "remove `tools:` from this agent or give it a backend with tool calling"
        with _located(team, "agents", index, "tools"):
            raise ConfigError(f"backend {backend.describe()!r} cannot call tools", hint=hint)
    from massgen.tools.registry import build_tool

    built = []
    model = team.agents[index].model or backend.model or None
    for j, name in enumerate(names):
        where: tuple[str | int, ...] = (
            ("tools", name) if name in team.tools else ("agents", index, "tools", j)
        )
        with _located(team, *where):
            made = groups.get(name) or build_tool(name, team.tools.get(name), team.base_dir)
            if made.group:
                groups[name], made.source = made, team.locate(*where)
            built.append(made)
            built[-1].check_backend(backend, model=model, with_functions=len(names) > 1)
    return built


def _secret(cfg: BackendConfig) -> str | None:
    return cfg.api_key.get_secret_value() if cfg.api_key is not None else None


@contextmanager
def _located(team: TeamConfig, *path: str | int) -> Iterator[None]:
    """Point a ConfigError raised while building at the config entry that caused it."""
    try:
        yield
    except ConfigError as e:
        if e.file is None:
            file, line = team.locate(*path)
            key = _dotted(path) + (f".{e.key}" if e.key else "")
            raise ConfigError(e.message, file=file, line=line, key=key, hint=e.hint) from e
        raise
