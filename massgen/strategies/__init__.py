"""Orchestration strategies: parallel, sequential, consensus."""

from __future__ import annotations

from typing import Protocol

from massgen.errors import ConfigError
from massgen.strategies.context import RunContext


class Strategy(Protocol):
    """Decides who is asked what, in which order; fills ``ctx.result`` for ``task``."""

    name: str

    async def run(self, task: str, ctx: RunContext) -> None: ...


def get_strategy(name: str) -> Strategy:
    from massgen.strategies.consensus import Consensus
    from massgen.strategies.parallel import Parallel
    from massgen.strategies.sequential import Sequential

    found: dict[str, type[Strategy]] = {
        "parallel": Parallel,
        "sequential": Sequential,
        "consensus": Consensus,
    }
    if name not in found:
        hint = "use one of: " + ", ".join(found)
        raise ConfigError(f"unknown strategy {name!r}", key="strategy", hint=hint)
    return found[name]()


__all__ = ["RunContext", "Strategy", "get_strategy"]
