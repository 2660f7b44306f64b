"""Long-term memory: one item per past run in a store log, recalled (BM25 through the store's
full-text index, or cosine similarity with ``embed``) before a turn on a related task."""

from __future__ import annotations

import inspect
import json
import math
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import KW_ONLY, dataclass, field
from typing import TYPE_CHECKING, Any

from massgen.serialize import from_json, to_json
from massgen.store.base import Store
from massgen.tokens import estimate_text

if TYPE_CHECKING:
    from massgen.result import RunResult
    from massgen.types import Turn

Embed = Callable[[list[str]], "list[list[float]] | Awaitable[list[list[float]]]"]

RECALL_PHASES = frozenset({"answer", "step", "aggregate"})  # turns on the task itself
CANDIDATES_PER_RECALL = 8  # recall picks among the recall x this best matches
TEAM_LOG = "memory:team"
AGENT_INDEX = "memory:agents"  # agents with a memory of their own (a store cannot list logs)

_WORD = re.compile(r"\w+", re.UNICODE)
_STOP = frozenset(
    _WORD.findall(
        "a an and are as at be by for from has have in is it its of on or that the this to was "
        "were what when where which who why will with how do does did you your i me my we our"
    )
)


def log_name(agent: str | None) -> str:
    """The log of ``agent``'s own memory, or the team's (``None``)."""
    return f"memory:agent:{agent}" if agent else TEAM_LOG


def words(text: str) -> list[str]:
    return [w for w in _WORD.findall(text.lower()) if w not in _STOP]


@dataclass(slots=True)
class MemoryItem:
    """One run as remembered."""

    task: str
    final: str
    own: str = ""
    agent: str = ""
    winner: str | None = None
    votes: list[tuple[str, str]] = field(default_factory=list)  # (voter, for) of the last round
    run_id: str = ""
    at: float = 0.0
    id: str = ""
    vector: list[float] | None = None

    def text(self) -> str:
        """How the item reads when recalled."""
        parts = [f"Task: {self.task}", f"Final answer: {self.final}"]
        if self.own and self.own.strip() != self.final.strip():
            parts.append(f"Your answer then: {self.own}")
        if self.winner:
            tally = ", ".join(f"{v} → {f}" for v, f in self.votes)
            parts.append(f"Decision: {self.winner} won" + (f" (votes: {tally})" if tally else ""))
        return "\n".join(parts)

    def to_json(self) -> bytes:
        return to_json(self)

    @classmethod
    def from_run(cls, result: RunResult, agent: str, own: str, clock: float) -> MemoryItem:
        last = max((v.round for v in result.votes), default=0)
        votes = [(v.voter, v.for_agent) for v in result.votes if v.round == last]
        return cls(
            task=result.task,
            final=result.final_answer,
            own=own,
            agent=agent,
            winner=result.winner,
            votes=votes,
            run_id=result.run_id,
            at=clock,
            id=uuid.uuid4().hex[:12],
        )


def item_words(record: bytes) -> str:
    """The words a stored item is found by: those of its task and answers."""
    try:
        item = json.loads(record)
        return " ".join(words(f"{item['task']}\n{item['final']}\n{item.get('own', '')}"))
    except (ValueError, KeyError, TypeError):
        return ""  # not an item: never found


def _cosine(a: Sequence[float], b: Sequence[float]) -> float:
    na, nb = math.hypot(*a), math.hypot(*b)
    return sum(x * y for x, y in zip(a, b, strict=False)) / (na * nb) if na and nb else 0.0


@dataclass(eq=False)
class LongTermMemory:
    """One memory log in a store (bound later for agents built from a config) and its settings."""

    store: Store | None = None
    _: KW_ONLY
    agent: str | None = None
    recall: int = 3
    recall_budget: int = 600
    max_items: int | None = 1000
    max_age_days: float | None = None
    embed: Embed | None = None
    clock: Callable[[], float] = time.time

    @property
    def log(self) -> str:
        return log_name(self.agent)

    def _cutoff(self) -> float:  # the oldest ``at`` still kept
        return -math.inf if self.max_age_days is None else self.clock() - self.max_age_days * 86400

    def bind(self, store: Store) -> None:
        if self.store is None:
            self.store = store

    def _store(self) -> Store:
        if self.store is None:
            raise RuntimeError("this long-term memory has no store; bind() one first")
        return self.store

    async def remember(self, item: MemoryItem) -> None:
        if self.embed is not None and item.vector is None:
            item.vector = (await self._embed([item.text()]))[0]
        store = self._store()
        if self.agent and await store.length(self.log) == 0:
            known = {r.decode() for r in await store.read(AGENT_INDEX)}
            if self.agent not in known:
                await store.append(AGENT_INDEX, self.agent.encode())
        await store.append(self.log, item.to_json())
        await self.apply_retention()

    async def apply_retention(self) -> int:
        """Drop items beyond ``max_items`` and older than ``max_age_days``; how many went."""
        store = self._store()
        before = await store.length(self.log)
        if self.max_age_days is not None:
            raw, cutoff = await store.read(self.log), self._cutoff()
            # The expired items lead the log: drop that many from its front (no rewrite).
            expired = next(
                (n for n, r in enumerate(raw) if from_json(MemoryItem, r).at >= cutoff), len(raw)
            )
            if expired:
                await store.trim(self.log, await store.length(self.log) - expired)
        if self.max_items is not None and await store.length(self.log) > self.max_items:
            await store.trim(self.log, self.max_items)
        return before - await store.length(self.log)

    async def items(self) -> list[MemoryItem]:
        """Every live item, oldest first."""
        cutoff = self._cutoff()
        raw = await self._store().read(self.log)
        return [i for r in raw if (i := from_json(MemoryItem, r)).at >= cutoff]

    async def search(self, query: str, k: int | None = None) -> list[tuple[float, MemoryItem]]:
        """The items most relevant to ``query``, best first (only those with a score > 0): by
        meaning with ``embed``, else by BM25 through the store's index."""
        if self.embed is not None:
            items = await self.items()
            if not items:
                return []
            if missing := [i for i in items if i.vector is None]:
                vectors = await self._embed([i.text() for i in missing])
                for item, vector in zip(missing, vectors, strict=True):
                    item.vector = vector
            (qv,) = await self._embed([query])
            scored = [(_cosine(qv, i.vector or []), i) for i in items]
            # Newer first among equals: the latest decision on a question wins a tie.
            return sorted((p for p in scored if p[0] > 0), key=lambda p: (-p[0], -p[1].at))[:k]
        store = self._store()
        terms = " ".join(words(query))
        limit = k if k is not None else max(await store.length(self.log), 1)
        while True:  # asks for more when expired items took places
            hits = await store.search(self.log, terms, item_words, limit)
            cutoff = self._cutoff()
            ranked = [(s, i) for s, r in hits if (i := from_json(MemoryItem, r)).at >= cutoff]
            if k is None or len(ranked) >= k or len(hits) < limit:
                return ranked[:k]
            limit *= 4

    async def recall_for(self, agent: str, turn: Turn) -> list[str]:
        """What to show ``agent`` before ``turn``: the best ``recall`` items that fit
        ``recall_budget`` tokens, one per run."""
        if turn.phase not in RECALL_PHASES or self.recall == 0:
            return []
        ranked = await self.search(turn.prompt, CANDIDATES_PER_RECALL * self.recall)
        out: list[str] = []
        runs: set[str] = set()
        used = 0
        for _, item in ranked:
            text = item.text()
            cost = estimate_text(text) + 4
            if item.run_id in runs or used + cost > self.recall_budget:
                continue
            out.append(text)
            runs.add(item.run_id)
            used += cost
            if len(out) >= self.recall:
                break
        return out

    async def clear(self) -> int:
        store = self._store()
        n = await store.length(self.log)
        await store.trim(self.log, 0)
        return n

    async def _embed(self, texts: list[str]) -> list[list[float]]:
        assert self.embed is not None
        got: Any = self.embed(texts)
        if inspect.isawaitable(got):
            got = await got
        return [list(map(float, v)) for v in got]


def own_answer(result: RunResult, agent: str) -> str:
    """``agent``'s latest answer, step, synthesis or presentation in ``result`` ("" if none)."""
    latest = result.latest_answers().get(agent)
    if latest:
        return latest
    for a in reversed(result.answers):
        if a.agent == agent and a.phase in ("answer", "step", "aggregate", "present"):
            return a.text
    return ""


__all__ = ["RECALL_PHASES", "LongTermMemory", "MemoryItem", "item_words", "own_answer"]
