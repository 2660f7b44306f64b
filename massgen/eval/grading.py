"""Whether a reply is right, what answer it gives, and which answer a majority gives: the
graders of :mod:`massgen.answers` applied to a question, and the LLM judge's prompt and
verdict. A reply without a readable answer is wrong. Majorities group replies as the
consensus strategy does (:mod:`massgen.strategies.agreement`): agreement means one thing."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from massgen.answers import answer_span, extract, grade, normalize_text
from massgen.questions import JUDGE, EvalItem
from massgen.strategies.agreement import NO_ANSWER, Board, support


@dataclass(frozen=True, slots=True)
class Verdict:
    correct: bool
    extracted: str | None
    """The answer read from the reply (canonical, as majorities compare it), or None."""


def read_answer(item: EvalItem, reply: str) -> str | None:
    """The reply's answer as the question's grader reads it (None: no answer); a ``text``
    answer read knowing the question, as :func:`majority` and consensus read it."""
    if item.grader in ("exact", "regex") or item.grader.startswith("regex:"):
        span = answer_span(reply)
        return span.strip() if span else None
    return extract(item.kind, reply, choices=item.choices, question=item.prompt)


def check(item: EvalItem, reply: str) -> Verdict:
    """Grade ``reply`` by the item's grader (not ``judge``: see :func:`judge_prompt`)."""
    g = item.grader
    if g.startswith("regex:"):
        ok = grade("regex", reply, g[6:])
    elif ":" in g:
        ok = grade(g, reply, item.gold, item=dict(item.row))
    elif g == JUDGE:
        raise ValueError("a judged question is graded by its judge")
    elif g == "text":  # the answer read knowing the question (grade() does not know it)
        golds = item.gold if isinstance(item.gold, list | tuple) else [item.gold]
        got = read_answer(item, reply)
        ok = got is not None and got in {normalize_text(str(x)) for x in golds}
    else:
        tolerance = {k: item.row[k] for k in ("rel_tol", "abs_tol") if k in item.row}
        ok = grade(g, reply, item.gold, choices=item.choices, **tolerance)
    return Verdict(bool(ok), read_answer(item, reply))


JUDGE_PROMPT = """\
You are grading an answer against the expected one. Be strict: the answer is correct only \
if it gives the expected answer; extra explanation is fine, a different or hedged answer is not.

Question:
{question}

Expected answer:
{gold}

Answer to grade:
{reply}

Reply with only this JSON and nothing else: {{"correct": true}} or {{"correct": false}}"""


def judge_prompt(item: EvalItem, reply: str) -> str:
    return JUDGE_PROMPT.format(
        question=item.prompt, gold=item.gold, reply=reply.strip() or "(none)"
    )


_FENCE = re.compile(r"^```(?:json)?\s*|\s*```$")


def read_verdict(text: str) -> bool | None:
    """The judge's verdict: ``{"correct": true|false}`` (a code fence around it allowed);
    anything else is None (and the answer counts as wrong)."""
    try:
        data = json.loads(_FENCE.sub("", text.strip()))
    except ValueError:
        return None
    value = data.get("correct") if isinstance(data, dict) else None
    return value if isinstance(value, bool) else None


@dataclass(frozen=True, slots=True)
class Majority:
    """The answer most of several replies give, as the consensus strategy's ``vote`` mode
    picks it (:class:`massgen.strategies.agreement.Board`)."""

    winner: str | None
    """Whose reply carries the winning answer (its first giver), None: no replies."""
    answer: str | None
    """The winning answer's key (None: the winning reply has no checkable answer)."""
    support: float | None
    """The share of the replies giving the winning answer (the agreement score)."""
    distribution: dict[str, int] = field(default_factory=dict)


def majority(item: EvalItem, replies: Mapping[str, str]) -> Majority:
    """The answer most of ``replies`` (label -> text, in order: seats, or draws) give, grouped
    by :func:`~massgen.strategies.agreement.answer_key` of the question's kind, exactly as
    consensus groups its agents: a tie goes to the answer given first, and a reply with no
    checkable answer agrees with nothing (a group of one, which can win only a tie of ones)."""
    board = Board(item.prompt, item.kind, list(replies))
    for label, text in replies.items():
        board.set(label, text)
    top = board.best(board.keys, list(replies))
    if top is None:
        return Majority(None, None, None, {})
    return Majority(
        board.author(top, list(replies)),
        None if top.startswith(NO_ANSWER) else top,
        support(board.keys, top, len(replies)),
        board.distribution(list(replies)),
    )
