"""Pure consensus bookkeeping: normalising answers, parsing review replies, counting votes
(no I/O, so every rule of convergence is unit-testable on its own)."""

from __future__ import annotations

import json
import re
import unicodedata
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from massgen.types import Completion

_PUNCT = re.compile(r"[^\w\s]")
_SPACE = re.compile(r"\s+")
_JSON_OBJECT = re.compile(r"\{.*\}", re.DOTALL)


def normalise(text: str) -> str:
    """Case, accents, punctuation and spacing folded, so "Paris." equals "paris"."""
    text = unicodedata.normalize("NFKC", text).casefold()
    return _SPACE.sub(" ", _PUNCT.sub(" ", text)).strip()


def all_agree(answers: Mapping[str, str]) -> bool:
    return len(answers) > 1 and len({normalise(t) for t in answers.values()}) == 1


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
    if not match:
        return None
    try:
        data = json.loads(match.group(0))
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
    if not isinstance(label, str):
        return None
    label = label.strip().strip("[]\"'").upper()
    if label not in labels:
        return None
    return Review(vote=label, reason=str(reason or "")[:300])


def tally(votes: Mapping[str, str]) -> dict[str, int]:
    """voter -> candidate  ==>  candidate -> count."""
    return dict(Counter(votes.values()))


def leader(votes: Mapping[str, str], order: Sequence[str]) -> str | None:
    """The candidate with most votes; ties go to the earliest in ``order`` (config order)."""
    counts = tally(votes)
    if not counts:
        return None
    rank = {name: i for i, name in enumerate(order)}
    return min(counts, key=lambda c: (-counts[c], rank.get(c, len(rank))))


def winner(votes: Mapping[str, str], live: Sequence[str], needed: int) -> str | None:
    """The candidate holding ``needed`` votes and strictly more than any other."""
    counts = tally(votes)
    if not counts:
        return None
    ranked = sorted(counts.values(), reverse=True)
    top = leader(votes, live)
    assert top is not None
    clear = len(ranked) == 1 or ranked[0] > ranked[1]
    return top if clear and counts[top] >= needed else None
