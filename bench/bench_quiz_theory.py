"""Simulated agents of known accuracy, measured against theory: does the team machinery score
what bench/eval_theory.py says it should?

    python bench/bench_quiz_theory.py [--questions 2000] [--seed 1]

Generates the questions (examples/make_arith.py), runs three replay agents with a ``quiz:``
through the real Orchestrator (parallel strategy: every agent answers once; consensus: one
review round, votes by the ``plurality`` rule), and prints, per case and method, the measured
accuracy, its 99 % Wilson interval and the expected figure. Majority vote is the majority of
the extracted answers, a tie going to the earliest agent in config order.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/ and examples/
from bench.eval_theory import majority
from examples.make_arith import generate, write
from massgen.answers import extract
from massgen.config import loads
from massgen.evalstats import wilson, z_for
from massgen.orchestrator import Orchestrator

NAMES = ("ada", "bob", "cy")
CASES: dict[str, tuple[list[float], dict[str, Any]]] = {
    "p 0.7 x3, wrong answers coincide": ([0.7] * 3, {}),
    "p 0.7 x3, wrong answers never coincide": ([0.7] * 3, {"wrong": "distinct"}),
    "p 0.7 x3, correlation 0.5": ([0.7] * 3, {"correlation": 0.5}),
    "p 0.8/0.7/0.6, correlation 0.3": ([0.8, 0.7, 0.6], {"correlation": 0.3}),
}


def team(answers: Path, ps: Sequence[float], strategy: str, options: dict[str, Any]) -> str:
    backends = {
        f"sim_{n}": {"type": "replay", "quiz": {"answers": str(answers), "p": p, **options}}
        for n, p in zip(NAMES, ps, strict=True)
    }
    agents = [{"name": n, "backend": f"sim_{n}", "role": f"You are {n}."} for n in NAMES]
    orchestrator = {"strategy": strategy, "consensus": {"threshold": 0.5, "max_rounds": 1}}
    return yaml.safe_dump({"backends": backends, "agents": agents, "orchestrator": orchestrator})


def vote_of(texts: Sequence[str]) -> str | None:
    """Majority of the extracted answers; a tie goes to the group of the earliest agent."""
    count: dict[str, int] = {}
    first: dict[str, int] = {}
    for i, text in enumerate(texts):
        if (answer := extract("number", text)) is not None:
            count[answer] = count.get(answer, 0) + 1
            first.setdefault(answer, i)
    return min(count, key=lambda a: (-count[a], first[a]), default=None)


async def run_all(text: str, questions: list[str]) -> list[Any]:
    orchestrator = Orchestrator.from_config(loads(text))
    try:
        return await asyncio.gather(*(orchestrator.arun(q) for q in questions))
    finally:
        await orchestrator.aclose()


def row(case: str, method: str, right: int, n: int, expected: float) -> str:
    low, high = wilson(right, n, z_for(0.99))
    inside = "yes" if low <= expected <= high else "NO"
    return (
        f"| {case} | {method} | {right / n:.3f} | [{low:.3f}, {high:.3f}] | {expected:.3f} "
        f"| {inside} |"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--questions", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=1, help="seed of the generated questions")
    args = parser.parse_args()
    rows = generate(args.questions, seed=args.seed)
    gold = [str(r["answer"]) for r in rows]
    questions = [str(r["question"]) for r in rows]
    n = len(rows)
    print("| case | method | measured | 99 % Wilson | theory | inside |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as folder:
        answers = Path(folder) / "arith.jsonl"
        write(answers, rows)
        for case, (ps, options) in CASES.items():
            started = time.perf_counter()
            results = await run_all(team(answers, ps, "parallel", options), questions)
            got = [r.history[0] for r in results]
            for i, name in enumerate(NAMES):
                right = sum(extract("number", g[name]) == w for g, w in zip(got, gold, strict=True))
                print(row(case, f"single:{name}", right, n, ps[i]))
            right = sum(vote_of([g[a] for a in NAMES]) == w for g, w in zip(got, gold, strict=True))
            corr, wrong = options.get("correlation", 0.0), options.get("wrong", "coincide")
            print(row(case, "vote", right, n, majority(ps, correlation=corr, wrong=wrong)))
            consensus_team = team(answers, ps, "consensus", {**options, "vote": "plurality"})
            results = await run_all(consensus_team, questions)
            right = sum(
                extract("number", r.final_answer) == w for r, w in zip(results, gold, strict=True)
            )
            expected = majority(ps, correlation=corr, wrong=wrong)
            print(row(case, "consensus (plurality)", right, n, expected))
            print(f"<!-- {case}: {time.perf_counter() - started:.1f} s -->", file=sys.stderr)


if __name__ == "__main__":
    asyncio.run(main())
