"""CPU that traces add to runs: the same consensus team run with traces off and with traces
exported over OTLP/HTTP to a receiver on loopback, each in its own process (the provider
simulator too), so only the run's process is measured.

    .venv/bin/python bench/bench_tracing.py [--agents 5] [--runs 40] [--reps 3]

Each repetition builds one orchestrator per mode, runs ``--runs`` tasks and closes it (which
sends the last spans), timing the process's CPU (``time.process_time``: the exporter's thread
counts). Both modes have the same null subscriber, so events are built in both, as under the
CLI's view; the figures are the best of ``--reps``. Nothing here passes or fails.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

RECEIVER = """
import sys
from tests.otlp import Receiver
with Receiver() as r:
    print(r.url, flush=True)
    sys.stdin.read()
    print(len(r.spans), flush=True)
"""


class Null:
    """A subscriber that hears every event and shows no deltas (like a quiet view)."""

    wants_deltas = False

    def __call__(self, event: object) -> None:
        pass


def team(sim_url: str, agents: int) -> str:
    rows = "\n".join(
        f"  - {{name: a{i}, role: You are agent {i}., backend: {{type: openai, "
        f"model: gpt-4o-mini, base_url: '{sim_url}/v1', api_key: x}}}}"
        for i in range(agents)
    )
    return f"agents:\n{rows}\norchestrator: {{strategy: consensus, max_retries: 0}}\n"


async def cpu_of(text: str, runs: int) -> float:
    from massgen.config import loads
    from massgen.orchestrator import Orchestrator

    orchestrator = Orchestrator.from_config(loads(text), subscribers=[Null()])
    await orchestrator.arun("warm up")  # clients, imports, the tracer's first span
    started = time.process_time()
    for i in range(runs):
        await orchestrator.arun(f"task {i}")
    await orchestrator.aclose()
    return time.process_time() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=5)
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    sim = subprocess.Popen(
        [sys.executable, "-m", "tests.sim.simulator", "--port", "0"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    receiver = subprocess.Popen(
        [sys.executable, "-c", RECEIVER],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert sim.stdout is not None and receiver.stdout is not None
        off = team(sim.stdout.readline().strip(), args.agents)
        on = off + f"observability: {{otlp: '{receiver.stdout.readline().strip()}'}}\n"
        cpu: dict[str, list[float]] = {"off": [], "on": []}
        for _ in range(args.reps):
            cpu["off"].append(asyncio.run(cpu_of(off, args.runs)))
            cpu["on"].append(asyncio.run(cpu_of(on, args.runs)))
        out, _ = receiver.communicate("", timeout=60)
        spans = int(out.split()[-1]) / (args.reps * (args.runs + 1))
        best = {mode: min(times) / args.runs for mode, times in cpu.items()}
        added = best["on"] - best["off"]
        print(
            f"{args.agents} agents, consensus: {best['off'] * 1e3:.2f} ms CPU per run off, "
            f"{best['on'] * 1e3:.2f} ms on (+{added / best['off']:.0%}); "
            f"{spans:.0f} spans per run, {added / spans * 1e6:.0f} us CPU per span"
        )
    finally:
        for proc in (sim, receiver):
            if proc.poll() is None:
                proc.kill()
            proc.wait()


if __name__ == "__main__":
    main()
