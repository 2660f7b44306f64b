"""Whether a reply is right, what answer it gives, and which answer a majority gives: the
graders of :mod:`massgen.answers` applied to a question, and the LLM judge's prompt and
verdict. A reply without a readable answer is wrong."""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from massgen.answers import answer_span, extract, grade
from massgen.eval.data import JUDGE, EvalItem


@dataclass(frozen=True, slots=True)
class Verdict:
    correct: bool
    extracted: str | None
    """The answer read from the reply (canonical, as majorities compare it), or None."""


def read_answer(item: EvalItem, reply: str) -> str | None:
    """The reply's answer as the question's grader reads it (None: no answer)."""
    if item.grader in ("exact", "regex") or item.grader.startswith("regex:"):
        span = answer_span(reply)
        return span.strip() if span else None
    return extract(item.kind, reply, choices=item.choices)


def check(item: EvalItem, reply: str) -> Verdict:
    """Grade ``reply`` by the item's grader (not ``judge``: see :func:`judge_prompt`)."""
    g = item.grader
    if g.startswith("regex:"):
        ok = grade("regex", reply, g[6:])
    elif ":" in g:
        ok = grade(g, reply, item.gold, item=dict(item.row))
    elif g == JUDGE:
        raise ValueError("a judged question is graded by its judge")
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
    """The most frequent answer of several replies (in seat or draw order)."""

    index: int | None
    """Which reply carries the winning answer (the first that gives it), None: no answer."""
    answer: str | None
    support: float | None
    """Replies giving the winning answer over all replies (those without an answer too)."""
    distribution: dict[str, int] = field(default_factory=dict)


def majority(item: EvalItem, replies: Sequence[str]) -> Majority:
    """The answer most replies give; a tie goes to the answer given first (the earliest
    seat, or draw). Replies without an answer count in the support's denominator only."""
    answers = [read_answer(item, r) for r in replies]
    counts = Counter(a for a in answers if a is not None)
    if not counts:
        return Majority(None, None, 0.0 if replies else None, {})
    top = max(counts.values())
    winner = next(a for a in answers if a is not None and counts[a] == top)
    return Majority(answers.index(winner), winner, round(top / len(replies), 4), dict(counts))
