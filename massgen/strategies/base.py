"""The strategy interface: decide who is asked what, in which order."""

from __future__ import annotations

from typing import Protocol

from massgen.strategies.context import RunContext


class Strategy(Protocol):
    name: str

    async def run(self, task: str, ctx: RunContext) -> None:
        """Fill ``ctx.result`` (final answer, winner, rounds) for ``task``."""
        ...
