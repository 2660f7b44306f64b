"""Simulated agents of known accuracy: the replay backend's ``quiz:`` (docs/config.md).

Each question of the answers file is answered right with probability ``p``; a wrong answer is
the question's one wrong answer (``wrong: coincide``) or the agent's own (``distinct``). Every
draw is a hash of (seed, what is drawn, agent, question, sample), so a run is deterministic,
two agents sharing one backend still draw independently, and asking again is a new sample
(as a model at temperature > 0), unless the request sets a ``seed`` (then that seed is the
sample). With ``correlation`` c an agent uses the question's shared draw with probability c
and its own otherwise: each agent is still right with probability ``p``, but agents err
together. Review prompts (``<answer label=...>`` blocks and a request for a ``"vote"``) get
a vote by the ``vote`` rule (``revise``: a revision to the plurality answer); other prompts
with answer blocks (an aggregator's, a presenter's) get the answer that rule picks.
bench/eval_theory.py computes what a team of these scores.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

from massgen import questions
from massgen.answers import (
    LETTERS,
    extract,
    gold_choice,
    gold_number,
)
from massgen.errors import ConfigError
from massgen.types import CompletionRequest

_BLOCK = re.compile(r'<answer label="([^"]*)"([^>]*)>\n?(.*?)\n?</answer>', re.DOTALL)
_SUPPORT = re.compile(r'\bagents="(\d+)"')
_YOURS = re.compile(r"\byours is ([^\s),.;:]+)")
_LABEL = re.compile(r"^[A-Za-z][\w ]{0,30}:\s+")
"""A line's leading label ("Task: ", "Question: ") before the question it holds."""

NUMBER_STYLES = (
    "Working through it step by step. The answer is {answer}.",
    "Let me compute this carefully.\n#### {answer}",
    "Taking each part in turn, the final answer is {answer}.",
)
CHOICE_STYLES = ("The answer is ({answer}).", "Answer: {answer}", "My choice: {answer}")
"""How an agent words its answer: one style per agent, so agreeing agents differ in prose."""
DISTINCT_SPREAD = 10**9
"""A ``distinct`` wrong number is the gold plus 1..10^9: two agents' coincide with chance 1e-9."""


@dataclass(frozen=True, slots=True)
class Item:
    """One question of the answers file: its gold answer canonical (a number or a letter)."""

    question: str
    gold: str
    choices: tuple[str, ...] | None = None
    id: str = ""

    @property
    def kind(self) -> str:
        return "choice" if self.choices else "number"


def normalize(text: str) -> str:
    """A question as looked up: case folded, whitespace collapsed."""
    return " ".join(text.split()).casefold()


def uniform(*parts: object) -> float:
    """A number in [0, 1) fixed by ``parts`` (the same on every machine and run)."""
    digest = hashlib.blake2b("\x1f".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def load_items(path: Path) -> dict[str, Item]:
    """The answers file, read as `massgen eval` reads its data (:mod:`massgen.questions`),
    by normalised question; its answers are numbers or choices."""
    if not path.is_file():
        hint = "the path is relative to the config file's folder"
        message = "cannot read quiz answers: no such file"
        raise ConfigError(message, file=str(path), key="quiz.answers", hint=hint)
    items: dict[str, Item] = {}
    for q in questions.load_items(path):
        if q.grader not in ("number", "choice"):
            hint = "a quiz answer is a number, or a letter of `choices`"
            message = f"{q.gold!r} is not a number"
            raise ConfigError(message, file=str(path), line=q.line, key="answer", hint=hint)
        gold = gold_choice(q.gold, q.choices) if q.choices else show(gold_number(q.gold))
        items[normalize(q.question)] = Item(q.question, gold, q.choices, q.id)
    return items


def show(value: Fraction) -> str:
    """A number as replies and ``massgen.answers`` write it (42, -3.5, 1/3)."""
    return extract("number", str(value)) or str(value)


@dataclass(frozen=True, slots=True)
class Block:
    """One answer block of a review prompt: its label, what it answers, how many agents."""

    label: str
    answer: str | None
    support: int


class Quiz:
    """The quiz one replay backend answers from: ``reply`` gives ``None`` for a prompt that
    holds none of its questions (the replay rules answer that)."""

    def __init__(
        self,
        options: Mapping[str, Any],
        *,
        base_dir: Path | None = None,
        backend: str = "",
    ) -> None:
        from pydantic import ValidationError

        from massgen.config.quiz import QuizOptions
        from massgen.config.translate import translate

        try:
            self.options = QuizOptions.model_validate(dict(options))
        except ValidationError as e:
            raise translate(e, raw={"quiz": dict(options)}, file=None, lines={}) from None
        path = Path(self.options.answers).expanduser()
        if not path.is_absolute() and base_dir is not None:
            path = Path(base_dir) / path
        self.items = load_items(path)
        self.backend = backend
        self._by_first_line: dict[str, list[Item]] = {}
        for item in self.items.values():
            first = normalize(item.question.strip().splitlines()[0])
            self._by_first_line.setdefault(first, []).append(item)
        self._samples: dict[tuple[str, str, str], int] = {}
        self._given: dict[tuple[str, str], str] = {}  # (agent, question) -> its last answer

    def find(self, request: CompletionRequest) -> Item | None:
        """The quiz question ``request`` is about: the last user message holding one."""
        for message in reversed(request.messages):
            if message.role != "user":
                continue
            whole = normalize(message.content)
            for line in message.content.splitlines():
                for candidate in (line, _LABEL.sub("", line.strip())):
                    for item in self._by_first_line.get(normalize(candidate), ()):
                        if normalize(item.question) in whole:
                            return item
        return None

    def reply(self, request: CompletionRequest) -> str | None:
        """This backend's reply to ``request`` if it asks a quiz question, else ``None``."""
        item = self.find(request)
        if item is None:
            return None
        agent = _agent(request)
        who = f"{self.backend}\x1f{agent}"
        prompt = request.messages[-1].content if request.messages else ""
        blocks = [
            Block(label, extract(item.kind, text, choices=item.choices), _support(attrs))
            for label, attrs, text in _BLOCK.findall(prompt)
        ]
        wants_vote = '"vote"' in prompt or any(t.name == "vote" for t in request.tools)
        if blocks and wants_vote:
            label, reason = self._vote(item, request, agent, who, blocks, prompt)
            backed = next(b.answer for b in blocks if b.label == label)
            own = _own(blocks, prompt, self._given.get((who, item.question)))
            if self.options.vote == "revise" and backed is not None and own and own.label != label:
                self._given[(who, item.question)] = backed
                return json.dumps({"revise": _style(item, who).format(answer=backed)})
            return json.dumps({"vote": label, "reason": reason})
        if blocks:  # an aggregator or a presenter: the answer the vote rule would pick
            label, _ = self._vote(item, request, agent, who, blocks, prompt)
            picked = next((b.answer for b in blocks if b.label == label), None)
            if picked is not None:
                return _style(item, who).format(answer=picked)
        sample = self._sample(request, who, item, "answer")
        answer = self.answer(item, agent, who, sample)
        self._given[(who, item.question)] = answer
        return _style(item, who).format(answer=answer)

    def chance(self, agent: str) -> float:
        """``p`` for ``agent`` (by name, when ``p`` is given per agent)."""
        p = self.options.p
        if not isinstance(p, dict):
            return p
        if agent not in p:
            hint = f"add `{agent}: <chance>` to `quiz.p` (it names {', '.join(p) or 'nobody'})"
            message = f"quiz `p` has no chance for agent {agent!r}"
            raise ConfigError(message, key="quiz.p", hint=hint)
        return p[agent]

    def answer(self, item: Item, agent: str, who: str, sample: str) -> str:
        """The answer ``who`` gives to ``item`` in ``sample``: gold with chance ``p``."""
        o, q = self.options, normalize(item.question)
        linked = uniform(o.seed, "link", who, q, sample) < o.correlation
        u = uniform(o.seed, "shared", q) if linked else uniform(o.seed, "own", who, q, sample)
        if u < self.chance(agent):
            return item.gold
        whose = () if o.wrong == "coincide" else (who, sample)
        w = uniform(o.seed, "wrong", q, *whose)
        if item.choices:
            gold = LETTERS.index(item.gold)
            return LETTERS[(gold + 1 + int(w * (len(item.choices) - 1))) % len(item.choices)]
        if o.wrong == "coincide":
            step = 1 + int(w * 18)  # one of -9..-1, 1..9
            delta = step - 10 if step <= 9 else step - 9
        else:
            delta = 1 + int(w * DISTINCT_SPREAD)
        return show(Fraction(item.gold) + delta)

    def _sample(self, request: CompletionRequest, who: str, item: Item, turn: str) -> str:
        if (seed := request.extra.get("seed")) is not None:
            return f"seed={seed}"
        key = (who, item.question, turn)
        count = self._samples[key] = self._samples.get(key, -1) + 1
        return str(count)

    def _vote(
        self,
        item: Item,
        request: CompletionRequest,
        agent: str,
        who: str,
        blocks: list[Block],
        prompt: str,
    ) -> tuple[str, str]:
        """(label, reason) of the block this agent backs, by the ``vote`` rule."""
        own = _own(blocks, prompt, self._given.get((who, item.question)))
        rule = self.options.vote
        if rule == "correct":
            sample = self._sample(request, who, item, "vote")
            right = [b for b in blocks if b.answer == item.gold]
            lucky = uniform(self.options.seed, "vote", who, normalize(item.question), sample)
            if right and lucky < self.chance(agent):
                pick = own if own in right else right[0]
                return pick.label, "the right answer"
        if rule in ("plurality", "revise"):
            support: dict[str, int] = {}
            for b in blocks:
                if b.answer is not None:
                    support[b.answer] = support.get(b.answer, 0) + b.support
            if support:
                most = max(support.values())
                if own is not None and support.get(own.answer or "") == most:
                    return own.label, "the answer most agents give"
                top = next(b for b in blocks if b.answer is not None and support[b.answer] == most)
                return top.label, "the answer most agents give"
        return (own or blocks[0]).label, "my own answer"


def _agent(request: CompletionRequest) -> str:
    """Who asks: the agent's name, else its system prompt (a role is distinct per agent)."""
    if request.call is not None and request.call.agent:
        return request.call.agent
    return "\n".join(m.content for m in request.messages if m.role == "system")


def _support(attrs: str) -> int:
    m = _SUPPORT.search(attrs)
    return max(1, int(m[1])) if m else 1


def _own(blocks: list[Block], prompt: str, given: str | None) -> Block | None:
    """The agent's own block: the label the prompt calls "yours", else the block holding the
    answer it gave last, else none."""
    m = _YOURS.search(prompt)
    if m and (found := next((b for b in blocks if b.label == m[1]), None)):
        return found
    return next((b for b in blocks if given is not None and b.answer == given), None)


def _style(item: Item, who: str) -> str:
    styles = CHOICE_STYLES if item.choices else NUMBER_STYLES
    return styles[int(uniform("style", who) * len(styles))]
