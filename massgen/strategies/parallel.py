"""Parallel: every agent answers at once; an aggregator, if set, synthesizes them."""

from __future__ import annotations

from massgen.strategies import prompts
from massgen.strategies.context import RunContext
from massgen.types import Turn


async def run(task: str, ctx: RunContext) -> None:
    """All answer independently; with ``aggregator`` its synthesis is the final answer
    (mixture-of-agents). The aggregator does not answer in the first round."""
    aggregator = ctx.config.aggregator
    proposers = [n for n in ctx.live if n != aggregator]
    got = await ctx.gather([(n, Turn("answer", task)) for n in proposers])
    answers = {n: got[n][0].text for n in proposers if n in got}
    ctx.result.history.append(answers)
    ctx.result.rounds = 1
    if aggregator and answers:
        labelled = [(chr(65 + i), text) for i, text in enumerate(answers.values())]
        reply = await ctx.call(
            aggregator, Turn("aggregate", prompts.aggregate_prompt(task, labelled), round=1)
        )
        if reply is not None:
            ctx.result.final_answer = reply[0].text
            ctx.result.winner = aggregator
            return
    ctx.result.final_answer = join_answers(answers)
    ctx.result.winner = next(iter(answers)) if len(answers) == 1 else None


def join_answers(answers: dict[str, str]) -> str:
    if len(answers) == 1:
        return next(iter(answers.values()))
    return "\n\n".join(f"## {name}\n\n{text.strip()}" for name, text in answers.items())
