"""CPU that traces and metrics add to runs (target To: at most 5 % more). The same consensus
team runs with both off, metrics only (a Prometheus registry hearing every event), traces
only (exported over OTLP/HTTP to a receiver on loopback) and both; the provider simulator
and the receiver are processes of their own, so only the runs' CPU is measured.

    .venv/bin/python bench/bench_observability.py [--agents 3] [--runs 40] [--reps 5]
        [--whole 12]

Then ``--whole`` pairs of whole ``massgen run`` processes (start-up included, as a user runs
one), alternating: both off, and both on (the team's ``observability.otlp`` and
``--metrics-port 0``).

Each repetition runs every mode once, in turn (the modes alternate), in a child process of
its own: it builds the orchestrator, runs a warm-up task (imports, connections, the first
span), then times ``--runs`` tasks and the close that sends the last spans with the
process's CPU clock (the exporter's thread counts). Every mode has the same null subscriber,
so events are built in all of them, as under the CLI's view. Figures are medians of
``--reps``. Nothing here passes or fails.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

RECEIVER = """
import http.server, sys
from tests.otlp import Receiver
http.server.BaseHTTPRequestHandler.protocol_version = "HTTP/1.1"  # keep-alive, as collectors
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


async def cpu_of(text: str, runs: int, metrics: bool) -> float:
    from massgen.config import loads
    from massgen.orchestrator import Orchestrator

    heard: list[object] = [Null()]
    if metrics:
        from massgen.observability.metrics import Metrics

        heard.append(Metrics())
    orchestrator = Orchestrator.from_config(loads(text), subscribers=heard)
    await orchestrator.arun("warm up")  # clients, imports, the tracer's first span
    started = time.process_time()
    for i in range(runs):
        await orchestrator.arun(f"task {i}")
    await orchestrator.aclose()
    return time.process_time() - started


def child(text: str, runs: int, metrics: bool) -> float:
    """One mode's CPU for ``runs`` runs, measured in a fresh process."""
    code = (
        "import asyncio, sys; sys.path.insert(0, sys.argv[1]); "
        "from bench.bench_observability import cpu_of; "
        "print(asyncio.run(cpu_of(sys.stdin.read(), int(sys.argv[2]), sys.argv[3] == '1')))"
    )
    argv = [sys.executable, "-c", code, str(ROOT), str(runs), "1" if metrics else "0"]
    done = subprocess.run(argv, input=text, capture_output=True, text=True, check=True)
    return float(done.stdout.split()[-1])


def whole_runs(off: str, on: str, pairs: int) -> dict[str, list[float]]:
    """CPU (user + sys) of whole ``massgen run`` processes, without and with both on."""
    import os
    import resource
    import tempfile

    cpu: dict[str, list[float]] = {"off": [], "both": []}
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    with tempfile.TemporaryDirectory() as folder:
        for mode, text in (("off", off), ("both", on)):
            Path(folder, f"{mode}.yaml").write_text(text)
        for _ in range(pairs):
            for mode, times in cpu.items():
                argv = [sys.executable, "-m", "massgen", "run", f"{mode}.yaml", "What is 2+2?"]
                argv += ["--no-cache", "--quiet"]
                argv += ["--metrics-port", "0"] if mode == "both" else []
                before = resource.getrusage(resource.RUSAGE_CHILDREN)
                subprocess.run(argv, cwd=folder, env=env, capture_output=True, check=True)
                after = resource.getrusage(resource.RUSAGE_CHILDREN)
                used = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
                times.append(used)
    return cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=3)
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--whole", type=int, default=12, help="pairs of whole `massgen run`s")
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
        modes = {"off": (off, False), "metrics": (off, True), "traces": (on, False)}
        modes["both"] = (on, True)
        cpu: dict[str, list[float]] = {mode: [] for mode in modes}
        for _ in range(args.reps):
            for mode, (text, metrics) in modes.items():
                cpu[mode].append(child(text, args.runs, metrics) / args.runs)
        whole = whole_runs(off, on, args.whole)
        out, _ = receiver.communicate("", timeout=60)
        spans = int(out.split()[-1]) / (2 * args.reps * (args.runs + 1) + args.whole)
        median = {mode: statistics.median(times) for mode, times in cpu.items()}
        base = median["off"]
        print(f"{args.agents} agents, consensus, CPU per run (median of {args.reps}):")
        for mode, value in median.items():
            print(f"  {mode:8} {value * 1e3:6.2f} ms  ({value / base - 1:+.1%})")
        added = median["traces"] - base
        print(f"  {spans:.0f} spans per run, {added / spans * 1e6:.0f} us CPU per span")
        cold, warm = (statistics.median(whole[mode]) for mode in ("off", "both"))
        print(
            f"whole `massgen run` processes (median of {args.whole}, alternating): off "
            f"{cold:.3f} s CPU, both on (and --metrics-port 0) {warm:.3f} s "
            f"({warm / cold - 1:+.1%})"
        )
    finally:
        for proc in (sim, receiver):
            if proc.poll() is None:
                proc.kill()
            proc.wait()


if __name__ == "__main__":
    main()
