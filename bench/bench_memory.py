"""Long-term memory recall latency at 1,000 and 10,000 items, before and after full-text search.

Before: every recall read every item of the memory and scored it with a BM25 written in
Python (``old_bm25`` below, as it was in massgen/memory/long_term.py), all on the event loop.
After: each store's word index (:meth:`massgen.store.base.Store.search`): SQLite FTS5 in the
SQLite file (the memory store is the same in an in-memory database); for Redis an
in-process FTS5 copy of the log, brought up to date before each search; the indexing and
ranking run on a worker thread.

Items are made-up runs (a task of about 15 words, two answers of about 120 words, from a
5,000-word Zipf-like vocabulary of content words, fixed seed); each recall is an ``answer``
turn with one of 20 task-like prompts of 20 words, in turn. Per store and size it prints the
median and P95 of a recall, the CPU time each recall spent on the event loop's thread (what
blocks other agents), and (after) the first recall of a fresh store object, which indexes the
whole log.

    .venv/bin/python bench/bench_memory.py [--sizes 1000 10000] [--runs 50] [--redis URL]
"""

from __future__ import annotations

import argparse
import asyncio
import math
import random
import re
import statistics
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

from massgen.memory.long_term import LongTermMemory, MemoryItem, log_name, words
from massgen.store import MemoryStore, SQLiteStore, Store
from massgen.types import Turn

VOCAB = 5000
SEED = 7


def old_bm25(query: str, docs: Sequence[str], k1: float = 1.5, b: float = 0.75) -> list[float]:
    """The ranking long-term memory used before (Okapi BM25, 0 for no shared word)."""
    terms = words(query)
    tokenized = [words(d) for d in docs]
    n = len(docs)
    if not n or not terms:
        return [0.0] * n
    avg = sum(len(t) for t in tokenized) / n or 1.0
    df = Counter(w for t in tokenized for w in set(t))
    scores = []
    for tokens in tokenized:
        tf = Counter(tokens)
        score = 0.0
        for term in set(terms):
            if term not in tf:
                continue
            idf = math.log(1 + (n - df[term] + 0.5) / (df[term] + 0.5))
            f = tf[term]
            score += idf * f * (k1 + 1) / (f + k1 * (1 - b + b * len(tokens) / avg))
        scores.append(score)
    return scores


async def old_recall(memory: LongTermMemory, prompt: str) -> list[MemoryItem]:
    """The recall before: read every item, score them all, keep the best three."""
    items = await memory.items()
    scores = old_bm25(prompt, [f"{i.task}\n{i.final}\n{i.own}" for i in items])
    ranked = sorted(
        ((s, i) for s, i in zip(scores, items, strict=True) if s > 0),
        key=lambda p: (-p[0], -p[1].at),
    )
    return [i for _, i in ranked[:3]]


class Corpus:
    def __init__(self) -> None:
        rng = random.Random(SEED)
        self.rng = rng
        self.vocab = [
            "".join(rng.choices("abcdefghijklmnopqrstuvwxyz", k=rng.randint(3, 9)))
            for _ in range(VOCAB)
        ]
        # Zipf over content words: ranks start at 100, as if the commonest (stop) words were gone
        self.weights = [1 / (r + 100) for r in range(VOCAB)]

    def sentence(self, n: int) -> str:
        return " ".join(self.rng.choices(self.vocab, self.weights, k=n))

    def item(self, i: int) -> MemoryItem:
        return MemoryItem(
            task=self.sentence(15) + "?",
            final=self.sentence(120),
            own=self.sentence(120),
            agent="ada",
            run_id=f"r{i}",
            at=1_700_000_000.0 + i,
            id=uuid.uuid4().hex[:12],
        )


async def fill(store: Store, corpus: Corpus, n: int) -> None:
    log = log_name("ada")
    for i in range(n):
        await store.append(log, corpus.item(i).to_json())


async def timed(
    recall: Callable[[str], Awaitable[object]], prompts: list[str], runs: int
) -> tuple[list[float], list[float]]:
    """Seconds per recall, wall and CPU of the event loop's thread (work done on the loop;
    a worker thread's is not counted). CPU time does not grow when the machine is busy."""
    took, on_loop = [], []
    for r in range(runs):
        started, cpu = time.perf_counter(), time.thread_time()
        await recall(prompts[r % len(prompts)])
        on_loop.append(time.thread_time() - cpu)
        took.append(time.perf_counter() - started)
    return took, on_loop


def p95(xs: list[float]) -> float:
    return sorted(xs)[min(len(xs) - 1, math.ceil(0.95 * len(xs)) - 1)]


def row(what: str, size: int, took: list[float], on_loop: list[float], extra: str = "") -> None:
    print(
        f"{what:<18} {size:>6,} items  median {statistics.median(took) * 1000:8.2f} ms"
        f"  P95 {p95(took) * 1000:8.2f} ms  on the loop: median"
        f" {statistics.median(on_loop) * 1000:7.2f} ms, max {max(on_loop) * 1000:7.2f} ms{extra}",
        flush=True,
    )


async def bench(sizes: list[int], runs: int, redis_url: str | None, tmp: Path) -> None:
    corpus = Corpus()
    prompts = [corpus.sentence(20) for _ in range(20)]
    for size in sizes:
        stores: dict[str, Callable[[], Store]] = {
            "memory": MemoryStore,
            "sqlite": lambda size=size: SQLiteStore(tmp / f"m{size}.sqlite3"),
        }
        if redis_url:
            from massgen.store import RedisStore

            prefix = f"bench:{uuid.uuid4().hex[:8]}:"
            stores["redis"] = lambda prefix=prefix: RedisStore(redis_url, prefix=prefix)
        for kind, make in stores.items():
            store = make()
            await fill(store, corpus, size)
            memory = LongTermMemory(store, agent="ada", max_items=None)
            before_runs = max(5, runs // 10) if size > 2000 else runs
            took, on_loop = await timed(lambda p, m=memory: old_recall(m, p), prompts, before_runs)
            row(f"before ({kind})", size, took, on_loop)
            if kind != "memory":  # a fresh store object: its first recall indexes the log
                await store.aclose()
                store = make()
                memory = LongTermMemory(store, agent="ada", max_items=None)
            first, first_on_loop = await timed(
                lambda p, m=memory: m.recall_for("ada", Turn("answer", p)), prompts[-1:], 1
            )
            took, on_loop = await timed(
                lambda p, m=memory: m.recall_for("ada", Turn("answer", p)), prompts, runs
            )
            row(
                f"after ({kind})",
                size,
                took,
                on_loop,
                f"; first {first[0] * 1000:.0f} ms ({first_on_loop[0] * 1000:.1f} ms on the loop)",
            )
            if kind == "redis":
                await store.trim(log_name("ada"), 0)
                await store._r.delete(f"{store.prefix}logn:{log_name('ada')}")  # type: ignore[attr-defined]
            await store.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0", help="'' to skip")
    args = parser.parse_args()
    assert re.match(r"^(redis|rediss|unix)://|^$", args.redis)
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(bench(args.sizes, args.runs, args.redis or None, Path(tmp)))


if __name__ == "__main__":
    main()
