"""Consensus: answer independently (no herding); unless the extracted answers already agree
(``mode``), vote or revise on the anonymised, per-agent-shuffled distinct answers until one
holds enough votes (docs/architecture.md has the rules; agreement.py groups the answers).
The bookkeeping (parsing replies, counting votes) is pure, so each rule is unit-testable.
Prompts are short and exact (tokens are money); peer answers are clipped."""

from __future__ import annotations

import dataclasses
import json
import random
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from massgen import events as ev
from massgen.result import Vote
from massgen.strategies import agreement, answer_block
from massgen.strategies.context import RunContext
from massgen.types import Completion, ToolSpec, Turn

VOTE_TOOL = ToolSpec(
    name="vote",
    description="Vote for the best answer.",
    parameters={
        "type": "object",
        "properties": {
            "label": {"type": "string"},
            "reason": {"type": "string"},
        },
        "required": ["label"],
    },
)
REVISE_TOOL = ToolSpec(
    name="revise",
    description="Replace your answer with a better one.",
    parameters={
        "type": "object",
        "properties": {"answer": {"type": "string"}},
        "required": ["answer"],
    },
)
REVIEW_TOOLS = (VOTE_TOOL, REVISE_TOOL)

JSON_REPLY = (
    'Reply with JSON only: {"vote": "<label>", "reason": "<few words>"} '
    'or {"revise": "<your full new answer>"}.'
)
TOOL_REPLY = "Call one tool."


def clip(text: str, budget_tokens: int) -> str:
    """Cut ``text`` to about ``budget_tokens`` tokens (4 characters each)."""
    limit = max(budget_tokens, 1) * 4
    text = text.strip()
    return text if len(text) <= limit else text[:limit].rstrip() + " …"


_JSON_OBJECT = re.compile(r"\{.*\}", re.DOTALL)


@dataclass(frozen=True, slots=True)
class Review:
    """A parsed review reply: a vote for ``label`` or a revision to ``answer``."""

    vote: str | None = None
    reason: str = ""
    answer: str | None = None


def parse_review(completion: Completion, labels: Sequence[str]) -> Review | None:
    """Read a vote or a revision from a tool call or from JSON text; ``None`` if malformed."""
    for call in completion.tool_calls:
        args = dict(call.arguments)
        if call.name == "vote":
            review = _vote(args.get("label"), args.get("reason"), labels)
            if review:
                return review
        elif call.name == "revise" and str(args.get("answer", "")).strip():
            return Review(answer=str(args["answer"]).strip())
    match = _JSON_OBJECT.search(completion.text or "")
    try:
        data = json.loads(match.group(0)) if match else None
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    if "vote" in data:
        return _vote(data.get("vote"), data.get("reason"), labels)
    revision = data.get("revise")
    if isinstance(revision, str) and revision.strip():
        return Review(answer=revision.strip())
    return None


def _vote(label: object, reason: object, labels: Sequence[str]) -> Review | None:
    key = label.strip().strip("[]\"'").upper() if isinstance(label, str) else None
    return Review(vote=key, reason=str(reason or "")[:300]) if key in labels else None


async def run(task: str, ctx: RunContext) -> None:
    cfg, result = ctx.config.consensus, ctx.result
    got = await ctx.gather([(n, Turn("answer", task)) for n in ctx.live])
    answers = {n: got[n][0].text for n in ctx.live if n in got}
    result.history.append(dict(answers))
    kind = cfg.answer if cfg.answer != "auto" else agreement.detect(task, list(answers.values()))
    board = agreement.Board(task, kind, list(ctx.handles))
    for name, text in answers.items():
        board.set(name, text)
    votes: dict[str, str] = {}  # voter -> the answer (key) it backs
    top = board.settled(ctx.live, votes, cfg.mode, cfg.votes_needed(len(ctx.live)))
    result.converged = top is not None or len(answers) <= 1
    if cfg.mode == "vote" or len(answers) <= 1:
        top = top or board.best(board.keys, ctx.live)  # the most given answer: no review
    for rnd in range(1, cfg.max_rounds + 1):
        if top is not None or cfg.mode == "vote":
            break
        result.rounds = rnd
        await _review_round(task, rnd, ctx, answers, board, votes)
        answers = {n: answers[n] for n in ctx.live if n in answers}
        live = [n for n in ctx.live if n in board.keys]
        held = {board.keys[n] for n in live}
        votes = {v: k for v, k in votes.items() if v in live and k in held}
        result.history.append(dict(answers))
        top = board.settled(ctx.live, votes, cfg.mode, cfg.votes_needed(len(ctx.live)))
        result.converged = done = top is not None
        lead = top or board.best(votes, ctx.live)
        backing = board.positions(ctx.live, votes)
        ctx.emit(
            ev.RoundDone(
                round=rnd,
                votes={v: board.author(k, ctx.live) or v for v, k in votes.items()},
                leader=lead and board.author(lead, ctx.live),
                converged=done,
                agreement=agreement.support(backing, lead, len(ctx.live)),
                distribution=board.distribution(ctx.live),
            )
        )
    top = top or board.best(votes, ctx.live) or board.best(board.keys, ctx.live)
    result.winner = board.author(top, ctx.live) if top else None
    result.final_answer = answers.get(result.winner or "", "")
    backing = board.positions(ctx.live, votes)
    result.support = agreement.support(backing, top, len(ctx.live))
    result.distribution = board.distribution(ctx.live)
    if cfg.final == "synthesize" and len(answers) > 1 and top:
        await _synthesize(task, ctx, board, votes, top)


async def _review_round(
    task: str,
    rnd: int,
    ctx: RunContext,
    answers: dict[str, str],
    board: agreement.Board,
    votes: dict[str, str],
) -> None:
    groups, backing = board.groups(ctx.live), board.positions(ctx.live, votes)
    views: dict[str, dict[str, agreement.Group]] = {}  # voter -> label -> answer
    turns: dict[str, Turn] = {}
    budget = ctx.config.consensus.answer_budget
    for voter in ctx.live:
        views[voter] = view = _view(voter, ctx, rnd, groups, board.keys[voter], backing)
        if ctx.listening:
            labels = {label: g.author for label, g in view.items()}
            ctx.emit(ev.Ballot(agent=voter, round=rnd, labels=labels))
        own = next(label for label, g in view.items() if voter in g.agents)
        tools = ctx.handles[voter].supports_tools
        blocks = "\n".join(
            answer_block(k, clip(answers[g.author], budget), len(g.agents)) for k, g in view.items()
        )
        prompt = (
            f"Task: {task}\n\nAnswers (yours is {own}):\n{blocks}\n\n"
            "Vote for the best answer, or revise yours if it is wrong. "
            f"{TOOL_REPLY if tools else JSON_REPLY}"
        )
        turns[voter] = Turn(
            "review",
            prompt,
            round=rnd,
            tools=REVIEW_TOOLS if tools else (),
            tool_choice="required" if tools else None,
        )
    replies = await ctx.gather(list(turns.items()))
    reviews = {v: parse_review(c, list(views[v])) for v, (c, _) in replies.items()}
    malformed = [v for v, r in reviews.items() if r is None]
    if malformed:  # one re-prompt each, all at once
        again = await ctx.gather([(v, _retry_turn(turns[v])) for v in malformed])
        for v, (c, _) in again.items():
            reviews[v] = parse_review(c, list(views[v]))
    for voter, rev in reviews.items():
        if rev is not None and rev.answer is not None:
            answers[voter] = rev.answer
            board.set(voter, rev.answer)
            votes.pop(voter, None)  # a revision takes back its author's vote
            ctx.emit(ev.Revised(agent=voter, round=rnd, text=rev.answer))
    held = {board.keys[n] for n in ctx.live if n in board.keys}
    for voter in [v for v, k in votes.items() if k not in held]:
        del votes[voter]  # the answer it backed is no longer given
    for voter, rev in reviews.items():
        if rev is None or rev.vote is None:
            continue
        key = views[voter][rev.vote].key
        if key not in held:
            continue  # every author of that answer revised it
        votes[voter] = key
        author = board.author(key, ctx.live) or voter
        ctx.result.votes.append(Vote(voter, rnd, author, rev.reason))
        ctx.emit(ev.VoteCast(agent=voter, round=rnd, for_agent=author, reason=rev.reason))


def _view(
    voter: str,
    ctx: RunContext,
    rnd: int,
    groups: list[agreement.Group],
    own: str,
    backing: dict[str, str],
) -> dict[str, agreement.Group]:
    """The distinct answers ``voter`` sees, shuffled for it alone and labelled A, B, C..."""
    cfg, live = ctx.config.consensus, ctx.live
    if cfg.topology == "ring" and len(live) > cfg.neighbors + 1:
        i = live.index(voter)
        near = {live[(i + k) % len(live)] for k in range(cfg.neighbors + 1)}
        seen = [g for g in groups if near.intersection(g.agents)]
    elif cfg.topology == "auto" and len(groups) > agreement.AUTO_FULL:
        seen = agreement.shown(groups, own, cfg.neighbors, backing)
    else:
        seen = list(groups)
    random.Random(f"{ctx.seed}:{voter}:{rnd}").shuffle(seen)
    return {chr(65 + i): g for i, g in enumerate(seen)}


async def _synthesize(
    task: str, ctx: RunContext, board: agreement.Board, votes: dict[str, str], top: str
) -> None:
    wanted = ctx.config.consensus.presenter
    presenter = wanted if wanted in ctx.handles else board.author(top, ctx.live) or ctx.live[0]
    history = ctx.result.history[-1]
    groups = board.groups(ctx.live)
    label_of = {g.key: chr(65 + i) for i, g in enumerate(groups)}
    blocks = "\n".join(
        answer_block(label_of[g.key], history[g.author], len(g.agents)) for g in groups
    )
    tallied = Counter(votes.values())
    counts = ", ".join(f"{label_of[k]}: {n}" for k, n in tallied.items() if k in label_of)
    prompt = (
        f"Task: {task}\n\nThe team's answers:\n{blocks}\n\nVotes: {counts or 'none'}\n\n"
        "Write the single best final answer, merging what is right in them. "
        "Give only the answer."
    )
    reply = await ctx.call(presenter, Turn("present", prompt, round=ctx.result.rounds))
    if reply is not None:
        ctx.result.final_answer = reply[0].text
        ctx.result.winner = presenter


def _retry_turn(turn: Turn) -> Turn:
    """The review turn again (sent once), told that its reply was not valid."""
    how = TOOL_REPLY if turn.tools else JSON_REPLY
    return dataclasses.replace(turn, prompt=f"{turn.prompt}\n\nYour reply was not valid. {how}")
