"""Orchestration strategies: parallel, sequential, consensus. A strategy decides who is asked
what, in which order, and fills ``ctx.result`` for the task."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from massgen.errors import ConfigError
from massgen.strategies.context import RunContext

Strategy = Callable[[str, RunContext], Awaitable[None]]


def get_strategy(name: str) -> Strategy:
    from massgen.strategies import consensus, parallel, sequential

    found = {"parallel": parallel.run, "sequential": sequential.run, "consensus": consensus.run}
    if name not in found:
        hint = "use one of: " + ", ".join(found)
        raise ConfigError(f"unknown strategy {name!r}", key="strategy", hint=hint)
    return found[name]


__all__ = ["RunContext", "Strategy", "get_strategy"]
