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


def answer_block(label: str, text: str, agents: int = 1) -> str:
    """A peer's answer as every prompt shows it (models and the replay backend read it);
    ``agents``: how many gave it, shown when more than one."""
    support = f' agents="{agents}"' if agents > 1 else ""
    return f'<answer label="{label}"{support}>\n{text}\n</answer>'


async def parallel(task: str, ctx: RunContext) -> None:
    """Every agent answers at once, independently; with ``aggregator`` its synthesis is the
    final answer (mixture-of-agents). The aggregator does not answer in the first round."""
    aggregator = ctx.config.aggregator
    proposers = [n for n in ctx.live if n != aggregator]
    got = await ctx.gather([(n, Turn("answer", task)) for n in proposers])
    answers = {n: got[n][0].text for n in proposers if n in got}
    ctx.result.history.append(answers)
    ctx.result.rounds = 1
    if aggregator and answers:
        blocks = "\n".join(answer_block(chr(65 + i), a) for i, a in enumerate(answers.values()))
        prompt = (
            f"Task: {task}\n\nIndependent answers:\n{blocks}\n\n"
            "Synthesize them into one best answer: keep what is correct, fix what is wrong. "
            "Give only the answer."
        )
        reply = await ctx.call(aggregator, Turn("aggregate", prompt, round=1))
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
    done: list[tuple[str, str]] = []
    for step, name in enumerate(list(ctx.live), start=1):
        blocks = "\n".join(f'<step agent="{who}">\n{text}\n</step>' for who, text in done)
        prompt = f"Task: {task}\n\nWork so far:\n{blocks}\n\nDo your part." if done else task
        reply = await ctx.call(name, Turn("step", prompt, round=step))
        if reply is not None:
            done.append((name, reply[0].text))
            ctx.result.history.append(dict(done))
        ctx.result.rounds = step
    if done:
        ctx.result.winner, ctx.result.final_answer = done[-1]


__all__ = ["RunContext", "Strategy", "get_strategy"]
