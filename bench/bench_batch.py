"""T5 and T8 of ../shared/targets.md: `massgen batch` as a whole process against the provider
simulator in its own process.

T5: 1,000 tasks x 3 agents, strategy parallel, 100 ms latency, concurrency 64, no cache. The
three agents of a task answer at once, so the ideal wall time is one latency per wave of 64
tasks: ceil(1000 / 64) x 0.1 s = 1.6 s. Prints wall against that ideal (target <= 1.2x), CPU
of the massgen process per LLM request (target <= 1 ms), peak RSS, and the requests the
simulator counted (must be tasks x agents).

T8: the same batch with the cache on (a fresh cache file per repetition): a first run fills
it (out file A), a second run of the same tasks into a fresh out file B (so resume skips
nothing) must be served by the cache: provider requests on the second run (target 0) and
the speed-up, first wall / second wall (target >= 50x). The in-batch time (from the
"batch summary" line, which leaves out process start-up) is printed beside it.

Figures are medians of ``--runs`` repetitions; nothing here passes or fails.

    .venv/bin/python bench/bench_batch.py [--runs 3] [--tasks 1000] [--latency 0.1]
        [--concurrency 64] [--agents 3] [--budget 100] [--profile FILE]

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

from massgen.testing.sim_process import SimulatorProcess

MASSGEN = [sys.executable, "-m", "massgen"]
AGENT_NAMES = ["ada", "bo", "cy", "dee", "eli", "fay", "gus", "hal"]
SUMMARY = re.compile(r"^batch summary: .*, ([0-9.]+)s$", re.MULTILINE)


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


def batch_cmd(tasks: Path, team: Path, out: Path, concurrency: int) -> list[str]:
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
    args = ap.parse_args()

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
        t8_second: list[Run] = []
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
            a, b = d / f"t8-{i}-A.jsonl", d / f"t8-{i}-B.jsonl"
            t8_first.append(one_batch(sim, batch_cmd(tasks, cached, a, args.concurrency), a))
            t8_second.append(one_batch(sim, batch_cmd(tasks, cached, b, args.concurrency), b))

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
            f"ratio {wall / ideal:.2f} (target <= 1.2)  in-batch {med(t5, 'batch'):.2f} s"
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
        first, second = med(t8_first, "wall"), med(t8_second, "wall")
        print("T8 (warm cache, re-run into a fresh out file):")
        print(
            f"  first run (fills the cache): wall {first:.2f} s, "
            f"{med(t8_first, 'requests'):.0f} requests, in-batch {med(t8_first, 'batch'):.2f} s"
        )
        print(
            f"  second run: wall {second:.3f} s [{spread(t8_second, 'wall')}], "
            f"CPU {med(t8_second, 'cpu'):.2f} s, in-batch {med(t8_second, 'batch'):.3f} s, "
            f"result lines {med(t8_second, 'lines'):.0f}"
        )
        print(
            f"  provider requests on the second run: {med(t8_second, 'requests'):.0f} "
            f"(target 0; max over runs {max(r.requests for r in t8_second)})"
        )
        speedups = [f.wall / s.wall for f, s in zip(t8_first, t8_second, strict=True)]
        in_batch = [f.batch / s.batch for f, s in zip(t8_first, t8_second, strict=True)]
        print(
            f"  speed-up, whole process: {statistics.median(speedups):.1f}x (target >= 50x); "
            f"in-batch: {statistics.median(in_batch):.1f}x"
        )

        if args.profile is not None:
            out = d / "profiled.jsonl"
            profile(sim, batch_cmd(tasks, team, out, args.concurrency), args.profile)


if __name__ == "__main__":
    main()
