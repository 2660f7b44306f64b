"""Simulated agents of known accuracy, measured by ``massgen eval`` against theory: does the
team machinery score what bench/eval_theory.py says it should?

    python bench/bench_quiz_theory.py [--questions 2000] [--seed 1]

Generates the questions (examples/make_arith.py), writes a team of three replay agents with a
``quiz:`` per case, and runs ``massgen eval TEAM DATA --methods
single,vote,consensus,self-consistency --json`` on them (the real command, the real
strategies: vote is consensus's ``vote`` mode, consensus its default ``adaptive`` mode with
reviews voting for the ``plurality`` answer). Prints, per case and method, the measured
accuracy, the report's own Wilson interval (99 %: of 24 intervals at 95 %, one or two would
miss by chance), the exact expected figure and whether the
interval holds it, and the command's wall time. A tie goes to the earliest agent in config
order (or the earliest sample), as in every majority of massgen.
"""

from __future__ import annotations

import argparse
import json
import subprocess
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

NAMES = ("ada", "bob", "cy")
METHODS = "single,vote,consensus,self-consistency"
CASES: dict[str, tuple[list[float], dict[str, Any]]] = {
    "p 0.7 x3, wrong answers coincide": ([0.7] * 3, {}),
    "p 0.7 x3, wrong answers never coincide": ([0.7] * 3, {"wrong": "distinct"}),
    "p 0.7 x3, correlation 0.5": ([0.7] * 3, {"correlation": 0.5}),
    "p 0.8/0.7/0.6, correlation 0.3": ([0.8, 0.7, 0.6], {"correlation": 0.3}),
}


def team(answers: Path, ps: Sequence[float], options: dict[str, Any]) -> str:
    backends = {
        f"sim_{n}": {
            "type": "replay",
            "quiz": {"answers": str(answers), "p": p, "vote": "plurality", **options},
        }
        for n, p in zip(NAMES, ps, strict=True)
    }
    agents = [{"name": n, "backend": f"sim_{n}", "role": f"You are {n}."} for n in NAMES]
    return yaml.safe_dump({"backends": backends, "agents": agents})


def expected(method: str, ps: Sequence[float], options: dict[str, Any]) -> float:
    """Theory: an agent alone is right with its p; vote and consensus are the majority of
    the three; self-consistency the majority of 3 samples of ada (samples draw as agents do)."""
    corr, wrong = options.get("correlation", 0.0), options.get("wrong", "coincide")
    if method.startswith("single:"):
        return ps[NAMES.index(method.split(":", 1)[1])]
    team_ps = [ps[0]] * 3 if method.startswith("self-consistency") else list(ps)
    return majority(team_ps, correlation=corr, wrong=wrong)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--questions", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=1, help="seed of the generated questions")
    args = parser.parse_args()
    print("| case | method | measured | 99 % Wilson (the report's) | theory | inside |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as folder:
        here = Path(folder)
        answers = here / "arith.jsonl"
        write(answers, generate(args.questions, seed=args.seed))
        for n, (case, (ps, options)) in enumerate(CASES.items()):
            (here / f"team{n}.yaml").write_text(team(answers, ps, options))
            command = [sys.executable, "-m", "massgen", "eval", f"team{n}.yaml", "arith.jsonl"]
            command += ["-m", METHODS, "-j", "1", "-o", f"out{n}", "--json", "-q"]
            command += ["--confidence", "0.99"]
            started = time.perf_counter()
            done = subprocess.run(command, cwd=here, capture_output=True, text=True, check=False)
            took = time.perf_counter() - started
            if done.returncode != 0:
                sys.exit(f"massgen eval failed ({done.returncode}):\n{done.stderr}")
            for m in json.loads(done.stdout)["methods"]:
                low, high = m["interval"]
                want = expected(m["method"], ps, options)
                inside = "yes" if low <= want <= high else "NO"
                print(
                    f"| {case} | {m['method']} | {m['accuracy']:.3f} | [{low:.3f}, {high:.3f}] "
                    f"| {want:.3f} | {inside} |"
                )
            print(f"<!-- {case}: massgen eval took {took:.1f} s -->", file=sys.stderr)


if __name__ == "__main__":
    main()
