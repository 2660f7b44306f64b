"""Consensus: answer independently (no herding), then vote or revise on anonymised,
per-agent-shuffled answers until one holds enough votes (docs/architecture.md has the rules)."""

from __future__ import annotations

import dataclasses
import random

from massgen import events as ev
from massgen.result import Vote
from massgen.strategies import ballot, prompts
from massgen.strategies.context import RunContext
from massgen.types import Turn


async def run(task: str, ctx: RunContext) -> None:
    result = ctx.result
    got = await ctx.gather([(n, Turn("answer", task)) for n in ctx.live])
    answers = {n: got[n][0].text for n in ctx.live if n in got}
    result.history.append(dict(answers))
    votes: dict[str, str] = {}  # voter -> agent whose answer it backs
    top: str | None = None
    if len(answers) <= 1 or ballot.all_agree(answers):
        result.converged = True
        top = next(iter(answers), None)
    for rnd in range(1, ctx.config.consensus.max_rounds + 1):
        if top is not None:
            break
        result.rounds = rnd
        await _review_round(task, rnd, ctx, answers, votes)
        answers = {n: answers[n] for n in ctx.live if n in answers}
        votes = {v: c for v, c in votes.items() if v in answers and c in answers}
        result.history.append(dict(answers))
        top = ballot.winner(votes, ctx.live, ctx.config.consensus.votes_needed(len(ctx.live)))
        if top is None and ballot.all_agree(answers):
            top = ballot.leader(votes, ctx.live) or ctx.live[0]
        result.converged = top is not None
        ctx.emit(
            ev.RoundDone(
                round=rnd,
                votes=dict(votes),
                leader=top or ballot.leader(votes, ctx.live),
                converged=result.converged,
            )
        )
    if top is None:
        top = ballot.leader(votes, ctx.live) or ctx.live[0]
    result.winner = top
    result.final_answer = answers.get(top, "")
    if ctx.config.consensus.final == "synthesize" and len(answers) > 1:
        await _synthesize(task, ctx, answers, votes, top)


async def _review_round(
    task: str, rnd: int, ctx: RunContext, answers: dict[str, str], votes: dict[str, str]
) -> None:
    views: dict[str, dict[str, str]] = {}  # voter -> label -> agent
    turns: dict[str, Turn] = {}
    for voter in ctx.live:
        views[voter] = view = _view(voter, ctx, rnd)
        if ctx.listening:
            ctx.emit(ev.Ballot(agent=voter, round=rnd, labels=dict(view)))
        own = next(label for label, agent in view.items() if agent == voter)
        tools = ctx.handles[voter].supports_tools
        budget = ctx.config.consensus.answer_budget
        shown = [(label, prompts.clip(answers[a], budget)) for label, a in view.items()]
        prompt = prompts.review_prompt(task, own, shown, tools=tools)
        turns[voter] = Turn(
            "review",
            prompt,
            round=rnd,
            tools=prompts.REVIEW_TOOLS if tools else (),
            tool_choice="required" if tools else None,
        )
    replies = await ctx.gather(list(turns.items()))
    reviews = {v: ballot.parse_review(c, list(views[v])) for v, (c, _) in replies.items()}
    malformed = [v for v, r in reviews.items() if r is None]
    if malformed:  # one re-prompt each, all at once
        again = await ctx.gather([(v, _retry_turn(turns[v])) for v in malformed])
        for v, (c, _) in again.items():
            reviews[v] = ballot.parse_review(c, list(views[v]))
    revised: set[str] = set()
    for voter, rev in reviews.items():
        if rev is not None and rev.answer is not None:
            answers[voter] = rev.answer
            revised.add(voter)
            ctx.emit(ev.Revised(agent=voter, round=rnd, text=rev.answer))
    for voter in [v for v, c in votes.items() if c in revised or v in revised]:
        del votes[voter]  # a revision voids votes for the old text
    for voter, rev in reviews.items():
        if rev is None or rev.vote is None:
            continue
        candidate = views[voter][rev.vote]
        if candidate in revised:
            continue  # it backed a text that no longer exists
        votes[voter] = candidate
        ctx.result.votes.append(Vote(voter, rnd, candidate, rev.reason))
        ctx.emit(ev.VoteCast(agent=voter, round=rnd, for_agent=candidate, reason=rev.reason))


def _view(voter: str, ctx: RunContext, rnd: int) -> dict[str, str]:
    """The answers ``voter`` sees, shuffled for it alone and labelled A, B, C..."""
    live = ctx.live
    if ctx.config.consensus.topology == "ring" and len(live) > ctx.config.consensus.neighbors + 1:
        i = live.index(voter)
        seen = [live[(i + k) % len(live)] for k in range(ctx.config.consensus.neighbors + 1)]
    else:
        seen = list(live)
    rng = random.Random(f"{ctx.seed}:{voter}:{rnd}")
    rng.shuffle(seen)
    return {chr(65 + i): agent for i, agent in enumerate(seen)}


async def _synthesize(
    task: str, ctx: RunContext, answers: dict[str, str], votes: dict[str, str], top: str
) -> None:
    presenter = ctx.config.consensus.presenter or top
    if presenter not in ctx.handles:
        presenter = top
    names = list(answers)
    label_of = {name: chr(65 + i) for i, name in enumerate(names)}
    labelled = [(label_of[n], answers[n]) for n in names]
    counts = {label_of[c]: n for c, n in ballot.tally(votes).items() if c in label_of}
    reply = await ctx.call(
        presenter,
        Turn("present", prompts.synthesis_prompt(task, labelled, counts), round=ctx.result.rounds),
    )
    if reply is not None:
        ctx.result.final_answer = reply[0].text
        ctx.result.winner = presenter


def _retry_turn(turn: Turn) -> Turn:
    """The review turn again, told that its reply was not valid."""
    return dataclasses.replace(
        turn, prompt=f"{turn.prompt}\n\n{prompts.reprompt(bool(turn.tools))}"
    )
