"""Sequential: a pipeline in config order; each agent sees the task and the work so far."""

from __future__ import annotations

from massgen.strategies import prompts
from massgen.strategies.context import RunContext
from massgen.types import Turn


async def run(task: str, ctx: RunContext) -> None:
    done: list[tuple[str, str]] = []
    for step, name in enumerate(list(ctx.live), start=1):
        reply = await ctx.call(name, Turn("step", prompts.step_prompt(task, done), round=step))
        if reply is not None:
            done.append((name, reply[0].text))
            ctx.result.history.append(dict(done))
        ctx.result.rounds = step
    if done:
        ctx.result.winner, ctx.result.final_answer = done[-1]
