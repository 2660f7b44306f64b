"""Orchestration strategies: parallel, sequential, consensus. A strategy decides who is asked
what, in which order, and fills ``ctx.result`` for the task."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from massgen.errors import ConfigError
from massgen.strategies.context import RunContext
from massgen.types import Turn

Strategy = Callable[[str, RunContext], Awaitable[None]]


def get_strategy(name: str) -> Strategy:
    from massgen.strategies import consensus

    found = {"parallel": parallel, "sequential": sequential, "consensus": consensus.run}
    if name not in found:
        hint = "use one of: " + ", ".join(found)
        raise ConfigError(f"unknown strategy {name!r}", key="strategy", hint=hint)
    return found[name]


async def parallel(task: str, ctx: RunContext) -> None:
    """Every agent answers at once, independently; with ``aggregator`` its synthesis is the
    final answer (mixture-of-agents). The aggregator does not answer in the first round."""
    from massgen.strategies.prompts import aggregate_prompt

    aggregator = ctx.config.aggregator
    proposers = [n for n in ctx.live if n != aggregator]
    got = await ctx.gather([(n, Turn("answer", task)) for n in proposers])
    answers = {n: got[n][0].text for n in proposers if n in got}
    ctx.result.history.append(answers)
    ctx.result.rounds = 1
    if aggregator and answers:
        labelled = [(chr(65 + i), text) for i, text in enumerate(answers.values())]
        reply = await ctx.call(
            aggregator, Turn("aggregate", aggregate_prompt(task, labelled), round=1)
        )
        if reply is not None:
            ctx.result.final_answer = reply[0].text
            ctx.result.winner = aggregator
            return
    if len(answers) == 1:
        ctx.result.winner, ctx.result.final_answer = next(iter(answers.items()))
    else:
        joined = (f"## {name}\n\n{text.strip()}" for name, text in answers.items())
        ctx.result.final_answer = "\n\n".join(joined)


async def sequential(task: str, ctx: RunContext) -> None:
    """A pipeline in config order; each agent sees the task and the work so far."""
    from massgen.strategies.prompts import step_prompt

    done: list[tuple[str, str]] = []
    for step, name in enumerate(list(ctx.live), start=1):
        reply = await ctx.call(name, Turn("step", step_prompt(task, done), round=step))
        if reply is not None:
            done.append((name, reply[0].text))
            ctx.result.history.append(dict(done))
        ctx.result.rounds = step
    if done:
        ctx.result.winner, ctx.result.final_answer = done[-1]


__all__ = ["RunContext", "Strategy", "get_strategy"]
