"""Checks across the whole team: names that must exist, be unique, and not loop."""

from __future__ import annotations

from typing import TYPE_CHECKING

from massgen.config._base import CUSTOM_CLASS, PROVIDERS, Path_, fail
from massgen.config.suggest import did_you_mean, one_of

if TYPE_CHECKING:
    from massgen.config.models import AgentConfig, BackendConfig, TeamConfig


def check_references(team: TeamConfig) -> None:
    """Raise (placeably) at the first name in ``team`` that does not resolve."""
    names = unique_names(team.agents)
    for i, agent in enumerate(team.agents):
        if isinstance(agent.backend, str):
            check_backend_ref(agent.backend, team.backends, ("agents", i, "backend"))
        check_agent_ref(agent.fallback, names, ("agents", i, "fallback"))
        if agent.fallback == agent.name:
            raise fail(
                "bad_fallback", "an agent cannot be its own fallback", at=("agents", i, "fallback")
            )
        check_agent_ref(agent.memory.summarizer, names, ("agents", i, "memory", "summarizer"))
    check_fallback_cycles(team.agents)
    orch = team.orchestrator
    check_agent_ref(orch.aggregator, names, ("orchestrator", "aggregator"))
    check_agent_ref(orch.consensus.presenter, names, ("orchestrator", "consensus", "presenter"))


def unique_names(agents: list[AgentConfig]) -> list[str]:
    seen: set[str] = set()
    for i, agent in enumerate(agents):
        if agent.name in seen:
            raise fail(
                "duplicate_agent",
                "duplicate agent name",
                at=("agents", i, "name"),
                hint="agent names must be unique",
            )
        seen.add(agent.name)
    return [a.name for a in agents]


def check_backend_ref(ref: str, backends: dict[str, BackendConfig], at: Path_) -> None:
    if ref in backends or ref in PROVIDERS or CUSTOM_CLASS.fullmatch(ref):
        return
    hint = did_you_mean(ref, [*backends, *PROVIDERS]) or (
        "define it under `backends:` or use a provider type: " + one_of(PROVIDERS)
    )
    raise fail("unknown_backend", "unknown backend", at=at, hint=hint)


def check_agent_ref(ref: str | None, names: list[str], at: Path_) -> None:
    if ref is not None and ref not in names:
        hint = did_you_mean(ref, names) or f"agents are: {', '.join(names)}"
        raise fail("unknown_agent", "no agent has this name", at=at, hint=hint)


def check_fallback_cycles(agents: list[AgentConfig]) -> None:
    fallback = {a.name: a.fallback for a in agents if a.fallback}
    for i, agent in enumerate(agents):
        chain = [agent.name]
        current = fallback.get(agent.name)
        while current is not None:
            if current == agent.name:
                loop = " -> ".join([*chain, current])
                raise fail(
                    "fallback_cycle",
                    f"fallbacks form a cycle: {loop}",
                    at=("agents", i, "fallback"),
                    hint="a fallback chain must end at an agent without a fallback",
                )
            if current in chain:
                break  # a cycle that does not include this agent; reported at its own members
            chain.append(current)
            current = fallback.get(current)
