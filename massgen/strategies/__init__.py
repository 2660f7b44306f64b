"""Orchestration strategies: parallel, sequential, consensus."""

from __future__ import annotations

from massgen.errors import ConfigError
from massgen.strategies.base import Strategy
from massgen.strategies.consensus import Consensus
from massgen.strategies.context import RunContext
from massgen.strategies.parallel import Parallel
from massgen.strategies.sequential import Sequential

STRATEGIES: dict[str, type[Strategy]] = {
    "parallel": Parallel,
    "sequential": Sequential,
    "consensus": Consensus,
}


def get_strategy(name: str) -> Strategy:
    try:
        return STRATEGIES[name]()
    except KeyError:
        raise ConfigError(
            f"unknown strategy {name!r}",
            key="strategy",
            hint="use one of: " + ", ".join(STRATEGIES),
        ) from None


__all__ = ["STRATEGIES", "RunContext", "Strategy", "get_strategy"]
