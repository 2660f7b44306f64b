"""Checks across the whole team: names that must exist, be unique, and not loop."""

from __future__ import annotations

from massgen.config.models import (
    CUSTOM_CLASS,
    AgentConfig,
    BackendConfig,
    Path_,
    TeamConfig,
    did_you_mean,
    fail,
    one_of,
)
from massgen.providers import PROVIDERS


def check_references(team: TeamConfig) -> None:
    """Raise (placeably) at the first name in ``team`` that does not resolve."""
    names = unique_names(team.agents)
    for i, agent in enumerate(team.agents):
        if isinstance(agent.backend, str):
            check_backend_ref(agent.backend, team.backends, ("agents", i, "backend"))
        check_agent_ref(agent.fallback, names, ("agents", i, "fallback"))
        if agent.fallback == agent.name:
            message = "an agent cannot be its own fallback"
            raise fail("bad_fallback", message, at=("agents", i, "fallback"))
        check_agent_ref(agent.memory.summarizer, names, ("agents", i, "memory", "summarizer"))
        for j, tool in enumerate(agent.tools):
            check_tool_ref(tool, team.tools, ("agents", i, "tools", j))
    check_fallback_cycles(team.agents)
    backups = {a.fallback for a in team.agents if a.fallback}
    for i, agent in enumerate(team.agents):
        if agent.standby and agent.name not in backups:
            message = f"agent {agent.name!r} is on standby but no agent falls back to it"
            hint = f"set `fallback: {agent.name}` on the agent it backs up, or remove `standby`"
            raise fail("idle_standby", message, at=("agents", i, "standby"), hint=hint)
    if all(a.standby for a in team.agents):
        raise fail("no_seats", "every agent is on standby", at=("agents",))
    orch = team.orchestrator
    check_agent_ref(orch.aggregator, names, ("orchestrator", "aggregator"))
    check_agent_ref(orch.consensus.presenter, names, ("orchestrator", "consensus", "presenter"))


def unique_names(agents: list[AgentConfig]) -> list[str]:
    names = [a.name for a in agents]
    for i, name in enumerate(names):
        if name in names[:i]:
            at, hint = ("agents", i, "name"), "agent names must be unique"
            raise fail("duplicate_agent", "duplicate agent name", at=at, hint=hint)
    return names


def check_backend_ref(ref: str, backends: dict[str, BackendConfig], at: Path_) -> None:
    if ref in backends or ref in PROVIDERS or CUSTOM_CLASS.fullmatch(ref):
        return
    hint = did_you_mean(ref, [*backends, *PROVIDERS]) or (
        "define it under `backends:` or use a provider type: " + one_of(PROVIDERS)
    )
    raise fail("unknown_backend", "unknown backend", at=at, hint=hint)


TOOL_NAMES: tuple[str, ...] = ("calculator", "file_reader", "database_query", "api_call")
TOOL_NAMES += ("web_search", "mcp", "ask_agent", "broadcast")
"""Built-in tool names (``massgen.tools.registry.BUILTINS`` holds the same, and a test
checks they agree: config must not import the tools package)."""

SEED_TOOL_NAMES = {"Calculator": "calculator", "FileReader": "file_reader", "APICall": "api_call"}
SEED_TOOL_NAMES |= {"DatabaseQuery": "database_query", "WebSearch": "web_search"}
_BUILTINS = one_of(TOOL_NAMES)


def _is_tool(ref: str) -> bool:
    return ref in TOOL_NAMES or ref in SEED_TOOL_NAMES or bool(CUSTOM_CLASS.fullmatch(ref))


def check_tool_ref(ref: str, settings: dict[str, dict[str, object]], at: Path_) -> None:
    """A tool an agent lists must be a built-in, a ``tools:`` entry or ``module:attr``."""
    if _is_tool(ref):
        return
    entry = settings.get(ref)
    if entry is None:
        hint = did_you_mean(ref, [*TOOL_NAMES, *settings]) or (
            f"built-in tools are {_BUILTINS}; for your own, `module:Class` or `module:function`"
        )
        raise fail("unknown_tool", "unknown tool", at=at, hint=hint)
    use = entry.get("use")
    if not (isinstance(use, str) and _is_tool(use)):
        hint = (did_you_mean(use, TOOL_NAMES) if isinstance(use, str) else None) or (
            f"say what this tool is with `use:` a built-in ({_BUILTINS}) or `module:Class`"
        )
        raise fail("unknown_tool", "not a built-in tool, and no valid `use:`", at=at, hint=hint)


def check_agent_ref(ref: str | None, names: list[str], at: Path_) -> None:
    if ref is not None and ref not in names:
        hint = did_you_mean(ref, names) or f"agents are: {', '.join(names)}"
        raise fail("unknown_agent", "no agent has this name", at=at, hint=hint)


def check_fallback_cycles(agents: list[AgentConfig]) -> None:
    fallback = {a.name: a.fallback for a in agents if a.fallback}
    for i, agent in enumerate(agents):
        chain = [agent.name]
        while (current := fallback.get(chain[-1])) is not None and current not in chain:
            chain.append(current)
        if current == agent.name:  # a cycle without this agent is reported at its members
            message = f"fallbacks form a cycle: {' -> '.join([*chain, current])}"
            hint = "a fallback chain must end at an agent without a fallback"
            raise fail("fallback_cycle", message, at=("agents", i, "fallback"), hint=hint)
