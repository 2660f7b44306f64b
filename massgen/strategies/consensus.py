"""Consensus: answer independently (no herding), then vote or revise on anonymised,
per-agent-shuffled answers until one holds enough votes (docs/architecture.md has the rules).
The bookkeeping (parsing replies, counting votes) is pure, so each rule is unit-testable.
Prompts are short and exact (tokens are money); peer answers are clipped."""

from __future__ import annotations

import dataclasses
import json
import random
import re
import unicodedata
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from massgen import events as ev
from massgen.result import Vote
from massgen.strategies import answer_block
from massgen.strategies.context import RunContext
from massgen.types import Completion, ToolSpec, Turn

VOTE_TOOL = ToolSpec(
    name="vote",
    description="Vote for the best answer.",
    parameters={
        "type": "object",
        "properties": {
            "label": {"type": "string", "description": "label of the best answer"},
            "reason": {"type": "string", "description": "a few words"},
        },
        "required": ["label"],
    },
)
REVISE_TOOL = ToolSpec(
    name="revise",
    description="Replace your answer with a better one.",
    parameters={
        "type": "object",
        "properties": {"answer": {"type": "string", "description": "your full new answer"}},
        "required": ["answer"],
    },
)
REVIEW_TOOLS = (VOTE_TOOL, REVISE_TOOL)

JSON_REPLY = (
    'Reply with JSON only: {"vote": "<label>", "reason": "<few words>"} '
    'or {"revise": "<your full new answer>"}.'
)
TOOL_REPLY = "Call exactly one tool: vote or revise."


def clip(text: str, budget_tokens: int) -> str:
    """Cut ``text`` to about ``budget_tokens`` tokens (4 characters each)."""
    limit = max(budget_tokens, 1) * 4
    text = text.strip()
    return text if len(text) <= limit else text[:limit].rstrip() + " …"


_PUNCT = re.compile(r"[^\w\s]")
_JSON_OBJECT = re.compile(r"\{.*\}", re.DOTALL)


def all_agree(answers: Mapping[str, str]) -> bool:
    """Whether the answers are one, case, accents, punctuation and spacing folded (so
    "Paris." equals "paris")."""
    folded = {
        _PUNCT.sub(" ", unicodedata.normalize("NFKC", t).casefold()) for t in answers.values()
    }
    return len(answers) > 1 and len({" ".join(t.split()) for t in folded}) == 1


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


def tally(votes: Mapping[str, str]) -> dict[str, int]:
    """voter -> candidate  ==>  candidate -> count."""
    return dict(Counter(votes.values()))


def leader(votes: Mapping[str, str], order: Sequence[str]) -> str | None:
    """The candidate with most votes; ties go to the earliest in ``order`` (config order)."""
    counts = tally(votes)
    rank = {name: i for i, name in enumerate(order)}
    return min(counts, key=lambda c: (-counts[c], rank.get(c, len(rank))), default=None)


def winner(votes: Mapping[str, str], live: Sequence[str], needed: int) -> str | None:
    """The candidate holding ``needed`` votes and strictly more than any other."""
    first, second, *_ = [*sorted(tally(votes).values(), reverse=True), 0, 0]
    return leader(votes, live) if first > second and first >= needed else None


async def run(task: str, ctx: RunContext) -> None:
    result = ctx.result
    got = await ctx.gather([(n, Turn("answer", task)) for n in ctx.live])
    answers = {n: got[n][0].text for n in ctx.live if n in got}
    result.history.append(dict(answers))
    votes: dict[str, str] = {}  # voter -> agent whose answer it backs
    top: str | None = None
    if len(answers) <= 1 or all_agree(answers):
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
        top = winner(votes, ctx.live, ctx.config.consensus.votes_needed(len(ctx.live)))
        if top is None and all_agree(answers):
            top = leader(votes, ctx.live) or ctx.live[0]
        result.converged = done = top is not None
        lead = top or leader(votes, ctx.live)
        ctx.emit(ev.RoundDone(round=rnd, votes=dict(votes), leader=lead, converged=done))
    if top is None:
        top = leader(votes, ctx.live) or ctx.live[0]
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
        blocks = "\n".join(answer_block(k, clip(answers[a], budget)) for k, a in view.items())
        prompt = (
            f"Task: {task}\n\nAnswers (yours is {own}):\n{blocks}\n\n"
            "Vote for the best answer (yours included), or revise yours if it is wrong or "
            f"incomplete. {TOOL_REPLY if tools else JSON_REPLY}"
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
    random.Random(f"{ctx.seed}:{voter}:{rnd}").shuffle(seen)
    return {chr(65 + i): agent for i, agent in enumerate(seen)}


async def _synthesize(
    task: str, ctx: RunContext, answers: dict[str, str], votes: dict[str, str], top: str
) -> None:
    wanted = ctx.config.consensus.presenter
    presenter = wanted if wanted in ctx.handles else top
    names = list(answers)
    label_of = {name: chr(65 + i) for i, name in enumerate(names)}
    blocks = "\n".join(answer_block(label_of[n], answers[n]) for n in names)
    counts = ", ".join(f"{label_of[c]}: {n}" for c, n in tally(votes).items() if c in label_of)
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
