"""T1-T4 of ../shared/targets.md: `massgen --help`, and a 3-agent consensus run against the
provider simulator at 200 ms latency, as whole processes.

Prints medians of several runs: wall, CPU (user+sys), peak RSS, LLM requests, prompt
tokens, rounds, the orchestration overhead over (rounds x latency), and the physical floor:
a bare asyncio script sending the same six requests (the bodies massgen sent, replayed: three
at once, then three more), run as a whole process alternately with massgen.

    .venv/bin/python bench/bench_run.py [--runs 5] [--latency 0.2] [--baseline DIR]

With ``--baseline DIR`` (another checkout, e.g. ``git archive main | tar -x -C DIR``), the
massgen found there runs too, alternately with this one, under the same interpreter.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
MASSGEN = [sys.executable, "-m", "massgen"]
TASK = "What is the capital of France? Answer briefly."

TEAM = """\
backends:
  sim: {{type: openai, model: gpt-4o-mini, base_url: "{url}/v1", api_key: sim-key}}
agents:
  - {{name: ada, backend: sim, role: "You are Ada, a geographer."}}
  - {{name: bo, backend: sim, role: "You are Bo, a historian."}}
  - {{name: cy, backend: sim, role: "You are Cy, a travel writer."}}
orchestrator:
  strategy: consensus
"""


WARM = r"""
import asyncio, json, sys, urllib.request
from massgen import Orchestrator

async def main(team, task, runs, url):
    async with Orchestrator.from_config(team) as orch:
        await orch.arun(task)  # loads the HTTP client, opens its connections
        durations = []
        for _ in range(runs):
            urllib.request.urlopen(urllib.request.Request(url + "/_sim/reset", method="POST"))
            durations.append((await orch.arun(task)).duration)
    print(json.dumps(durations))

asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]))
"""
"""T4 in a warm process: runs after a first one, so that loading the HTTP client (at the first
request) and opening connections, start-up work, are not counted as orchestration."""


def timed(
    cmd: list[str], env: dict[str, str], cwd: str | None = None
) -> tuple[float, float, float, bytes]:
    """Wall seconds, CPU seconds and peak RSS (MB) of one child process, and its stdout."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, cwd=cwd
    )
    assert proc.stdout is not None
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode not in (0, 3):
        raise SystemExit(f"{cmd} exited {proc.returncode}")
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, out


FLOOR = r"""
import asyncio, json, sys

async def post(conn, host, path, body):
    reader, writer = conn
    head = f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
    head += f"Authorization: Bearer sim-key\r\nContent-Length: {len(body)}\r\n\r\n"
    writer.write(head.encode() + body)
    lines = (await reader.readuntil(b"\r\n\r\n")).decode().lower().split("\r\n")
    size = next(int(h.split(":")[1]) for h in lines if h.startswith("content-length:"))
    return json.loads(await reader.readexactly(size))

async def main(url, bodies):
    host = url.split("//")[1]
    name, port = host.split(":")
    conns = [await asyncio.open_connection(name, int(port)) for _ in range(3)]
    for round_ in (bodies[:3], bodies[3:]):
        await asyncio.gather(*(post(c, host, p, b) for c, (p, b) in zip(conns, round_)))
    for _, writer in conns:
        writer.close()

bodies = [(r["path"], json.dumps(r["body"]).encode()) for r in json.load(open(sys.argv[2]))]
asyncio.run(main(sys.argv[1], bodies))
"""


def control(url: str, path: str, method: str = "GET") -> dict:
    req = urllib.request.Request(url + path, method=method, data=b"" if method == "POST" else None)
    with urllib.request.urlopen(req, timeout=5) as r:
        return json.loads(r.read() or b"{}")


def median(xs: list[float]) -> float:
    return statistics.median(xs)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--latency", type=float, default=0.2)
    ap.add_argument("--baseline", help="a directory holding another massgen/ to compare")
    args = ap.parse_args()
    # Any value of PYTHONDONTWRITEBYTECODE, "0" too, stops .pyc files being written: every
    # start would compile the modules changed since the last write from source.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}

    helps = [timed([*MASSGEN, "--help"], env)[:3] for _ in range(args.runs)]
    print(
        f"massgen --help: wall {median([h[0] for h in helps]):.3f} s, "
        f"CPU {median([h[1] for h in helps]):.3f} s, RSS {median([h[2] for h in helps]):.0f} MB"
    )

    sim = subprocess.Popen(
        [sys.executable, str(HERE / "consensus_sim.py"), str(args.latency)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert sim.stdout is not None
        url = sim.stdout.readline().strip()
        with tempfile.TemporaryDirectory() as tmp:
            team = Path(tmp) / "team.yaml"
            team.write_text(TEAM.format(url=url))
            cmd = [*MASSGEN, "run", str(team), TASK, "--json", "--no-record", "--quiet"]
            control(url, "/_sim/reset", "POST")
            timed(cmd, env)  # warm the page cache and .pyc files; record the six requests
            sent = control(url, "/_sim/requests")["requests"]
            (Path(tmp) / "requests.json").write_text(json.dumps(sent))
            floor_cmd = [sys.executable, "-c", FLOOR, url, str(Path(tmp) / "requests.json")]
            timed(floor_cmd, env)
            rows, floors, baseline = [], [], []
            if args.baseline:
                timed(cmd, env, args.baseline)
            for _ in range(args.runs):
                floors.append(timed(floor_cmd, env)[:2])
                if args.baseline:
                    control(url, "/_sim/reset", "POST")
                    baseline.append(timed(cmd, env, args.baseline)[:2])
                control(url, "/_sim/reset", "POST")
                wall, cpu, rss, out = timed(cmd, env)
                stats = control(url, "/_sim/stats")
                result = json.loads(out)
                rows.append(
                    {
                        "wall": wall,
                        "cpu": cpu,
                        "rss": rss,
                        "requests": stats["requests"],
                        "prompt_tokens": stats["prompt_tokens"],
                        "rounds": result["rounds"],
                        "run": result["duration"],
                    }
                )
            warm = [sys.executable, "-c", WARM, str(team), TASK, str(args.runs), url]
            warm_runs = json.loads(
                subprocess.run(warm, check=True, env=env, capture_output=True).stdout
            )
    finally:
        sim.terminate()
        sim.wait(timeout=10)

    m = {k: median([r[k] for r in rows]) for k in rows[0]}
    critical = (m["rounds"] + 1) * args.latency
    print(f"3-agent consensus, {args.latency * 1000:.0f} ms latency, median of {args.runs}:")
    print(f"  wall {m['wall']:.3f} s   CPU {m['cpu']:.3f} s   peak RSS {m['rss']:.0f} MB")
    floor_wall, floor_cpu = median([f[0] for f in floors]), median([f[1] for f in floors])
    print(
        f"  floor (bare asyncio, same {len(sent)} requests): wall {floor_wall:.3f} s   "
        f"CPU {floor_cpu:.3f} s   massgen / floor {m['wall'] / floor_wall:.2f}x"
    )
    if baseline:
        base_wall, base_cpu = median([b[0] for b in baseline]), median([b[1] for b in baseline])
        print(
            f"  baseline ({args.baseline}): wall {base_wall:.3f} s   CPU {base_cpu:.3f} s   "
            f"baseline / floor {base_wall / floor_wall:.2f}x"
        )
    print(
        f"  requests {m['requests']:.0f}   prompt tokens {m['prompt_tokens']:.0f}   "
        f"rounds {m['rounds']:.0f} review (+1 answer)"
    )
    print(
        f"  the run inside the process {m['run']:.3f} s (the first request loads the HTTP client)"
    )
    warm_run = median(warm_runs)
    print(
        f"  T4, a run in a warm process {warm_run:.3f} s vs critical path {critical:.3f} s: "
        f"overhead {100 * (warm_run / critical - 1):.1f} %"
    )


if __name__ == "__main__":
    main()
