"""Agreement on final answers, not on prose: which kind of answer a task has, each reply's
answer key (equal keys, same answer), agents grouped by it, and the support of the winner.
Pure functions, shared by the consensus strategy and eval's vote method (issue 15)."""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from massgen import answers

ANSWER_KINDS = ("auto", "number", "choice", "boxed", "text", "prose")
"""``consensus.answer``: ``auto`` picks one of the others from the task and the replies."""
SHORT_WORDS = 20
"""A reply of at most this many words (or one stating "answer is"/"answer:") is a short
answer: ``auto`` judges such replies by their extracted text."""
AUTO_FULL = 6
"""``topology: auto`` shows every distinct answer while there are at most this many."""
NO_ANSWER = "\x00"
"""Starts the group key of a reply with no checkable answer: it agrees with nothing."""

_OPTION = re.compile(r"^[^\S\n]*\(?([A-J])[).:][^\S\n]+(\S.*)$", re.MULTILINE)
_STATES_ANSWER = re.compile(r"\banswer\s*(?:is\b|:)|####|\\boxed", re.IGNORECASE)
_PUNCT = re.compile(r"[^\w\s]")
_NUMBER_STATED = re.compile(r"\banswers?\s*(?:is|:|=)\s*[-−+]?[$€£¥]?\s?[-−]?\.?\d", re.I)


def listed_choices(task: str) -> list[str] | None:
    """The texts of the options ``task`` lists, lettered A, B, C... in order, one a line
    ("A) Paris", "(B) Rome", "C. Lyon", "D: Nice"); None unless it lists at least A and B."""
    found: list[str] = []
    for m in _OPTION.finditer(task):
        if m[1] == answers.LETTERS[len(found)]:
            found.append(m[2].strip())
        elif m[1] == "A":  # a second list starts over
            found = [m[2].strip()]
    return found if len(found) >= 2 else None


def fold(text: str) -> str:
    """Prose as compared: case, accents, punctuation and spacing folded ("Paris." is "paris")."""
    return " ".join(_PUNCT.sub(" ", unicodedata.normalize("NFKC", text).casefold()).split())


def _states_number(reply: str) -> bool:
    """Whether ``reply`` states a final number: after "####", in a box, after "answer is" (or
    "answer:"), or as the last sentence of a short reply ("42 apples."); a number somewhere
    in prose is not one."""
    if (
        "####" in reply
        or (answers.extract_boxed(reply) or "").strip()
        or _NUMBER_STATED.search(reply)
    ):
        return answers.extract_number(reply) is not None
    span = answers.answer_span(reply) if len(reply.split()) <= SHORT_WORDS else None
    return span is not None and answers.parse_number(span) is not None


def detect(task: str, replies: Sequence[str]) -> str:
    """The kind of answer for ``consensus.answer: auto``: ``choice`` when the task lists
    lettered options, ``number`` when most replies state a final number ("#### 42", "The
    answer is 42.", "42 apples"), ``text`` when every reply is short (:data:`SHORT_WORDS`) or
    states its answer, else ``prose``."""
    if listed_choices(task):
        return "choice"
    if replies and sum(map(_states_number, replies)) * 2 > len(replies):
        return "number"
    short = [len(r.split()) <= SHORT_WORDS or _STATES_ANSWER.search(r) for r in replies]
    return "text" if replies and all(short) else "prose"


def answer_key(reply: str, kind: str, task: str) -> str | None:
    """The answer ``reply`` gives to ``task``, as a string equal for equal answers, or None
    when it has no checkable one. ``kind``: one of :data:`ANSWER_KINDS` (``auto``: detected
    from this reply alone); ``prose`` is the folded text (:func:`fold`), the rest are
    :func:`massgen.answers.extract` (``text`` knowing the question, ``choice`` its options)."""
    if kind == "auto":
        kind = detect(task, [reply])
    if kind == "prose":
        return fold(reply) or None
    if kind == "choice":
        return answers.extract("choice", reply, choices=listed_choices(task))
    return answers.extract(kind, reply, question=task)


@dataclass(frozen=True, slots=True)
class Group:
    """Agents giving one answer. ``key``: the answer (:func:`answer_key`; a reply with none
    is alone, its key starting with :data:`NO_ANSWER`); ``agents`` in config order: the first
    one's text represents the group."""

    key: str
    agents: tuple[str, ...]

    @property
    def author(self) -> str:
        return self.agents[0]


class Board:
    """The answers of one run, grouped: who holds which answer, in config ``order``."""

    def __init__(self, task: str, kind: str, order: Sequence[str]) -> None:
        self.task, self.kind, self.order = task, kind, list(order)
        self.keys: dict[str, str] = {}  # agent -> key of its answer

    def set(self, agent: str, text: str) -> str:
        self.keys[agent] = answer_key(text, self.kind, self.task) or NO_ANSWER + agent
        return self.keys[agent]

    def groups(self, live: Sequence[str]) -> list[Group]:
        """The distinct answers of the ``live`` agents, most held first, ties in config order."""
        by_key: dict[str, list[str]] = {}
        for agent in sorted((a for a in live if a in self.keys), key=self.order.index):
            by_key.setdefault(self.keys[agent], []).append(agent)
        found = [Group(k, tuple(agents)) for k, agents in by_key.items()]
        return sorted(found, key=lambda g: (-len(g.agents), self.order.index(g.author)))

    def author(self, key: str, live: Sequence[str]) -> str | None:
        """Whose text stands for answer ``key``: its first holder in config order."""
        return next((a for a in self.order if a in live and self.keys.get(a) == key), None)

    def positions(self, live: Sequence[str], votes: Mapping[str, str]) -> dict[str, str]:
        """Each live agent's answer: the one it voted for, else its own."""
        return {a: votes.get(a, self.keys[a]) for a in live if a in self.keys}

    def best(self, backing: Mapping[str, str], live: Sequence[str]) -> str | None:
        """The answer most of ``backing`` (agent -> key) holds; a tie goes to a checkable
        answer before a reply with none, then to the answer whose author comes first in config
        order."""
        counts = Counter(backing.values())
        rank = {k: self.order.index(a) for k in counts if (a := self.author(k, live))}
        held = [k for k in counts if k in rank]
        return min(held, key=lambda k: (-counts[k], k[:1] == NO_ANSWER, rank[k]), default=None)

    def settled(
        self, live: Sequence[str], votes: Mapping[str, str], mode: str, needed: int
    ) -> str | None:
        """The answer that ends the run now, if one does: ``needed`` votes (and more than any
        other answer has), or the answers themselves agreeing: all of them (``debate``), or
        ``needed`` of the live agents and more than give any other answer (else)."""
        if top := qualified(votes, needed):
            return top
        held = {a: self.keys[a] for a in live if a in self.keys}
        if mode == "debate":
            return next(iter(held.values())) if len(set(held.values())) == 1 < len(held) else None
        return qualified(held, needed)

    def distribution(self, live: Sequence[str]) -> dict[str, int]:
        """Answer -> how many live agents give it (answers with no checkable form left out;
        prose clipped to 60 characters)."""
        out: dict[str, int] = {}
        for g in self.groups(live):
            if not g.key.startswith(NO_ANSWER):
                name = g.key if len(g.key) <= 60 else g.key[:59] + "…"
                out[name] = out.get(name, 0) + len(g.agents)
        return out


def qualified(backing: Mapping[str, str], needed: int) -> str | None:
    """The answer ``needed`` of ``backing`` hold, more than any other holds, if one does."""
    (first, n1), *rest = [*Counter(backing.values()).most_common(2), ("", 0)]
    return first if n1 >= needed and n1 > rest[0][1] else None


def support(backing: Mapping[str, str], key: str | None, live: int) -> float | None:
    """The share of ``live`` agents backing ``key``: the agreement score (0..1)."""
    if key is None or live <= 0:
        return None
    return round(sum(1 for k in backing.values() if k == key) / live, 4)


def shown(
    groups: Sequence[Group], own: str, others: int, backing: Mapping[str, str]
) -> list[Group]:
    """The sparse view of a large team (``topology: auto`` beyond :data:`AUTO_FULL` answers):
    the reviewer's own answer and the ``others`` most backed other answers (``backing``:
    agent -> the answer it votes for or gives), ties in config order. Every reviewer sees the
    same leaders, so their votes can meet in one round."""
    count = Counter(backing.values())
    rest = [(i, g) for i, g in enumerate(groups) if g.key != own]
    rest.sort(key=lambda item: (-count[item[1].key], item[0]))
    return [g for g in groups if g.key == own] + [g for _, g in rest[:others]]
