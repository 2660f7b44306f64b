"""T5 and T8 of ../shared/targets.md: `massgen batch` as a whole process against the provider
simulator in its own process.

T5: 1,000 tasks x 3 agents, strategy parallel, 100 ms latency, concurrency 64, no cache. The
three agents of a task answer at once, so the ideal wall time is one latency per wave of 64
tasks: ceil(1000 / 64) x 0.1 s = 1.6 s. Prints wall against that ideal (target <= 1.2x), CPU
of the massgen process per LLM request (target <= 1 ms), peak RSS, and the requests the
simulator counted (must be tasks x agents).

T8: the same batch with the cache on (a fresh cache file per repetition): a first run fills
it (out file A); then the re-run of a finished batch, read two ways, each with its provider
requests (target 0) and its speed-up over the first run (target >= 50x), as whole process
and in-batch (from the "batch summary" line, which leaves out process start-up):

  (a) the same command again: resume skips every task already in A, nothing runs;
  (b) the same command with ``--no-resume`` (A is moved aside): every task runs again and
      the response cache answers every request.

Children run with bytecode caching on (under a temporary ``PYTHONPYCACHEPREFIX``), as an
installed package has its .pyc files; ``--no-bytecode`` keeps the environment as it is (a
``PYTHONDONTWRITEBYTECODE`` there makes every start compile massgen from source).

Figures are medians of ``--runs`` repetitions; nothing here passes or fails.

    .venv/bin/python bench/bench_batch.py [--runs 3] [--tasks 1000] [--latency 0.1]
        [--concurrency 64] [--agents 3] [--budget 100] [--profile FILE] [--no-bytecode]

``--budget`` caps the repetitions: after each, another is started only if the time so far
plus one more repetition fits (a slow build gets fewer runs rather than a long wait).

``--profile FILE`` runs one extra T5 batch under cProfile (written to FILE) and prints its
top functions by own time: where the massgen process spends its CPU.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the simulator lives in tests/
from tests.sim.sim_process import SimulatorProcess

MASSGEN = [sys.executable, "-m", "massgen"]
AGENT_NAMES = ["ada", "bo", "cy", "dee", "eli", "fay", "gus", "hal"]
SUMMARY = re.compile(r"^batch summary: .*, ([0-9.]+)s$", re.MULTILINE)
IN_BATCH_FLOOR = 0.001  # seconds: an in-batch time below this is shown as this in ratios


@dataclass(slots=True)
class Run:
    wall: float
    cpu: float
    rss: float
    requests: int
    lines: int
    batch: float  # seconds inside the batch, from its summary line (no process start-up)


def team_yaml(url: str, agents: int, cache: Path | None) -> str:
    lines = [
        "backends:",
        f'  sim: {{type: openai, model: gpt-4o-mini, base_url: "{url}/v1", api_key: x}}',
        "agents:",
        *[f"  - {{name: {name}, backend: sim}}" for name in AGENT_NAMES[:agents]],
        "orchestrator:",
        "  strategy: parallel",
    ]
    if cache is not None:
        lines.append(f'  cache: {{enabled: true, path: "{cache}"}}')
    return "\n".join(lines) + "\n"


def batch_cmd(tasks: Path, team: Path, out: Path, concurrency: int, *extra: str) -> list[str]:
    return [
        *MASSGEN,
        "batch",
        str(tasks),
        "--config",
        str(team),
        "--out",
        str(out),
        "--concurrency",
        str(concurrency),
        *extra,
    ]


def timed(cmd: list[str]) -> tuple[float, float, float, str]:
    """Wall seconds, CPU seconds (user+sys) and peak RSS (MB) of one child process, and
    its stderr."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    err = proc.stderr.read()
    proc.stderr.close()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} exited {proc.returncode}:\n{err[-2000:]}")
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, err


def one_batch(sim: SimulatorProcess, cmd: list[str], out: Path) -> Run:
    sim.reset()
    wall, cpu, rss, err = timed(cmd)
    found = SUMMARY.findall(err)
    return Run(
        wall=wall,
        cpu=cpu,
        rss=rss,
        requests=sim.stats().requests,
        lines=len(out.read_text().splitlines()),
        batch=float(found[-1]) if found else math.nan,
    )


def med(runs: list[Run], key: str) -> float:
    return statistics.median(getattr(r, key) for r in runs)


def spread(runs: list[Run], key: str) -> str:
    values = sorted(getattr(r, key) for r in runs)
    return f"{values[0]:.2f}..{values[-1]:.2f}"


def speedup(first: list[Run], again: list[Run], key: str) -> float:
    """Median over repetitions of first / again (in-batch times floored at 1 ms)."""
    return statistics.median(
        getattr(f, key) / max(getattr(a, key), IN_BATCH_FLOOR)
        for f, a in zip(first, again, strict=True)
    )


def print_rerun(label: str, first: list[Run], again: list[Run]) -> None:
    print(f"  {label}")
    print(
        f"    wall {med(again, 'wall'):.3f} s [{spread(again, 'wall')}], "
        f"CPU {med(again, 'cpu'):.3f} s, in-batch {med(again, 'batch'):.3f} s, "
        f"result lines {med(again, 'lines'):.0f}, provider requests "
        f"{med(again, 'requests'):.0f} (target 0; max {max(r.requests for r in again)})"
    )
    print(
        f"    speed-up over the first run: whole process {speedup(first, again, 'wall'):.1f}x, "
        f"in-batch {speedup(first, again, 'batch'):.1f}x (target >= 50x)"
    )


def profile(sim: SimulatorProcess, cmd: list[str], path: Path, top: int = 20) -> None:
    import pstats

    sim.reset()
    prof = [sys.executable, "-m", "cProfile", "-o", str(path), *cmd[1:]]
    subprocess.run(prof, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    print(f"\ncProfile of one T5 batch ({sim.stats().requests} requests), top {top} by own time:")
    stats = pstats.Stats(str(path), stream=sys.stdout)
    stats.sort_stats("tottime").print_stats(top)


async def _raw_worker(host: str, port: int, todo: list[int]) -> None:
    """One keep-alive connection sending streamed chat requests until ``todo`` is empty."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while todo:
            i = todo.pop()
            body = json.dumps(
                {
                    "model": "gpt-4o-mini",
                    "messages": [{"role": "user", "content": f"Task {i}?"}],
                    "stream": True,
                    "stream_options": {"include_usage": True},
                }
            ).encode()
            head = "POST /v1/chat/completions HTTP/1.1\r\nHost: sim\r\n"
            head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
            writer.write(head.encode() + body)
            headers = await reader.readuntil(b"\r\n\r\n")
            assert b"chunked" in headers.lower(), headers
            while size := int((await reader.readline()).split(b";")[0], 16):
                await reader.readexactly(size + 2)
            await reader.readexactly(2)
    finally:
        writer.close()
        await writer.wait_closed()


def sim_floor(url: str, requests: int, connections: int) -> float:
    """Wall seconds for a bare asyncio client (no massgen) to make ``requests`` streamed
    requests over ``connections`` connections: what the simulator and this machine allow."""
    host, port = url.removeprefix("http://").split(":")
    todo = list(range(requests))

    async def run() -> None:
        await asyncio.gather(*(_raw_worker(host, int(port), todo) for _ in range(connections)))

    start = time.perf_counter()
    asyncio.run(run())
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--tasks", type=int, default=1000)
    ap.add_argument("--latency", type=float, default=0.1)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--agents", type=int, default=3, choices=range(1, len(AGENT_NAMES) + 1))
    ap.add_argument("--profile", type=Path, default=None)
    ap.add_argument(
        "--budget", type=float, default=100.0, help="seconds; fewer runs if they would take longer"
    )
    ap.add_argument(
        "--no-bytecode",
        action="store_true",
        help="leave PYTHONDONTWRITEBYTECODE as the environment has it",
    )
    args = ap.parse_args()
    pyc = None
    if not args.no_bytecode:
        pyc = tempfile.TemporaryDirectory(prefix="massgen-bench-pyc-")
        os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
        os.environ["PYTHONPYCACHEPREFIX"] = pyc.name

    ideal = math.ceil(args.tasks / args.concurrency) * args.latency  # one round per task
    expected = args.tasks * args.agents

    with SimulatorProcess(latency=args.latency) as sim, tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        tasks = d / "tasks.txt"
        tasks.write_text(
            "".join(f"Task {i}: what is {i} times {i + 1}?\n" for i in range(args.tasks))
        )
        team = d / "team.yaml"
        team.write_text(team_yaml(sim.url, args.agents, cache=None))

        # Warm the page cache and .pyc files; a 1-task batch is also the fixed cost.
        one = d / "one.txt"
        one.write_text("A single task?\n")
        one_batch(sim, batch_cmd(one, team, d / "warm.jsonl", 1), d / "warm.jsonl")
        fixed = [
            one_batch(sim, batch_cmd(one, team, d / f"one{i}.jsonl", 1), d / f"one{i}.jsonl")
            for i in range(args.runs)
        ]

        floors = []
        for _ in range(args.runs):
            sim.reset()
            floors.append(sim_floor(sim.url, expected, args.concurrency * args.agents))
            assert sim.stats().requests == expected

        t5: list[Run] = []
        t8_first: list[Run] = []
        t8_resume: list[Run] = []
        t8_cached: list[Run] = []
        began = time.perf_counter()
        for i in range(args.runs):
            elapsed = time.perf_counter() - began
            if i and elapsed / i * (i + 1) > args.budget:
                print(
                    f"(stopping after {i} runs: another would pass the {args.budget:.0f} s budget)"
                )
                break
            out = d / f"t5-{i}.jsonl"
            t5.append(one_batch(sim, batch_cmd(tasks, team, out, args.concurrency), out))
            cached = d / f"cache{i}.yaml"
            cached.write_text(team_yaml(sim.url, args.agents, cache=d / f"cache{i}.sqlite3"))
            a = d / f"t8-{i}.jsonl"
            t8_first.append(one_batch(sim, batch_cmd(tasks, cached, a, args.concurrency), a))
            t8_resume.append(one_batch(sim, batch_cmd(tasks, cached, a, args.concurrency), a))
            again = batch_cmd(tasks, cached, a, args.concurrency, "--no-resume")
            t8_cached.append(one_batch(sim, again, a))

        print(
            f"massgen batch: {args.tasks} tasks x {args.agents} agents, strategy parallel, "
            f"{args.latency * 1000:.0f} ms latency, concurrency {args.concurrency}; "
            f"median of {len(t5)} (range in brackets)"
        )
        print(
            f"  fixed cost (a 1-task batch): wall {med(fixed, 'wall'):.3f} s, "
            f"CPU {med(fixed, 'cpu'):.3f} s, peak RSS {med(fixed, 'rss'):.0f} MB"
        )
        floor = statistics.median(floors)
        print(
            f"  floor: a bare asyncio client making the same {expected} requests over "
            f"{args.concurrency * args.agents} connections takes {floor:.2f} s "
            f"({floor / ideal:.2f}x ideal): the simulator and this machine, no massgen"
        )
        wall, cpu, requests = med(t5, "wall"), med(t5, "cpu"), med(t5, "requests")
        print("T5 (no cache):")
        print(
            f"  wall {wall:.2f} s [{spread(t5, 'wall')}]  ideal {ideal:.2f} s  "
            f"ratio {wall / ideal:.2f} (target <= 1.2)  in-batch {med(t5, 'batch'):.2f} s "
            f"(ratio {med(t5, 'batch') / ideal:.2f})"
        )
        per_request = 1000 * cpu / max(requests, 1)
        net = 1000 * (cpu - med(fixed, "cpu")) / max(requests, 1)
        print(
            f"  CPU {cpu:.2f} s [{spread(t5, 'cpu')}] = {per_request:.2f} ms per LLM request "
            f"(target <= 1 ms; {net:.2f} ms without the fixed cost)"
        )
        print(f"  peak RSS {med(t5, 'rss'):.0f} MB")
        print(
            f"  requests at the simulator {requests:.0f} (must be {expected}); "
            f"result lines {med(t5, 'lines'):.0f}"
        )
        print("T8 (warm cache: re-run of a finished batch):")
        print(
            f"  first run (fills the cache): wall {med(t8_first, 'wall'):.2f} s, "
            f"{med(t8_first, 'requests'):.0f} requests, in-batch {med(t8_first, 'batch'):.2f} s"
        )
        print_rerun(
            "(a) the same command again (resume skips every finished task):", t8_first, t8_resume
        )
        print_rerun(
            "(b) with --no-resume (every task runs, the cache answers):", t8_first, t8_cached
        )
        print(
            "  bytecode: "
            + ("as the environment has it" if pyc is None else "cached (as installed)")
        )

        if args.profile is not None:
            out = d / "profiled.jsonl"
            profile(sim, batch_cmd(tasks, team, out, args.concurrency), args.profile)


if __name__ == "__main__":
    main()
