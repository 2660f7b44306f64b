"""What building a run's events costs: each event kind built as massgen builds it (a slots
dataclass) against a frozen twin (a frozen slots dataclass of the same fields, as events
were until 2026-12-06), alternating, median of ``--reps`` blocks.

    .venv/bin/python bench/bench_events.py [--reps 9] [--n 20000]

A frozen dataclass sets each field through ``object.__setattr__``; a streamed run builds an
event per token delta, and a run with traces or metrics one per provider attempt. Nothing
here passes or fails."""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from massgen import events as ev
from massgen.types import Usage

USED = Usage(120, 31)
KINDS: dict[type[ev.Event], dict[str, object]] = {
    ev.TokenDelta: {"agent": "ada", "text": " word"},
    ev.AgentStarted: {"agent": "ada", "phase": "answer", "round": 1, "prompt": "What is 2+2?"},
    ev.RequestDone: {
        "agent": "ada",
        "provider": "openai",
        "model": "gpt-4o-mini",
        "attempt": 1,
        "status": "ok",
        "started": 1.0,
        "latency": 0.4,
        "usage": USED,
        "finish": "stop",
    },  # fmt: skip
    ev.AgentAnswered: {
        "agent": "ada",
        "phase": "answer",
        "round": 1,
        "text": "4",
        "usage": USED,
        "cost": 0.0001,
        "latency": 0.4,
        "model": "gpt-4o-mini",
    },  # fmt: skip
}


def frozen_twin(kind: type[ev.Event]) -> type:
    """A frozen slots dataclass with ``kind``'s fields and defaults."""
    fields = [
        (f.name, f.type, dataclasses.field(default=f.default, default_factory=f.default_factory))
        for f in dataclasses.fields(kind)
    ]
    return dataclasses.make_dataclass(
        f"Frozen{kind.__name__}", fields, frozen=True, slots=True, kw_only=True
    )


def per_build(cls: type, kwargs: dict[str, object], n: int) -> float:
    started = time.perf_counter()
    for _ in range(n):
        cls(**kwargs)
    return (time.perf_counter() - started) / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=9)
    parser.add_argument("--n", type=int, default=20000)
    args = parser.parse_args()
    for kind, kwargs in KINDS.items():
        twin = frozen_twin(kind)
        now: list[float] = []
        frozen: list[float] = []
        for rep in range(args.reps):
            pair = ((kind, now), (twin, frozen))
            for cls, times in pair if rep % 2 == 0 else pair[::-1]:
                times.append(per_build(cls, kwargs, args.n))
        a, b = statistics.median(now), statistics.median(frozen)
        print(f"{kind.__name__:14} {a * 1e9:6.0f} ns   frozen: {b * 1e9:6.0f} ns   ({b / a:.1f}x)")


if __name__ == "__main__":
    main()
