"""Issue 14's serving figures: ``massgen serve`` as its own process against the provider
simulator (in another process), driven by aiohttp from this one.

1. Overhead: a 3-agent consensus through ``serve`` against the same run in this process
   (an Orchestrator of the same team, warm), alternately, ``--runs`` times each; prints the
   medians and the median of the pairwise differences (the target: <= 20 ms more).
2. Load: ``--clients`` concurrent clients (200), each asking a 3-agent parallel team
   ``--asks`` times in a row, at ``--latency`` (1 s) per simulated request. The ideal: every
   run takes one latency, so clients / latency runs per second (200/s). Prints runs/s
   against it (target >= 0.8x), P50/P99 of the latency each client saw beyond the
   simulated one (target P99 <= 50 ms), the part of it outside the run (the HTTP side:
   client time minus the run's own duration, from the ``massgen`` field), and the serve
   process's peak RSS (target <= 200 MB).

Figures only; nothing here passes or fails.

    .venv/bin/python bench/bench_serve.py [--runs 20] [--clients 200] [--asks 3]
        [--latency 1.0] [--overhead-latency 0.05]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the simulator lives in tests/
from tests.sim.sim_process import SimulatorProcess

TASK = "What is the capital of France? Answer briefly."
TEAM = """\
name: {name}
backends:
  sim: {{type: openai, model: gpt-4o-mini, base_url: "{url}/v1", api_key: sim-key}}
agents:
  - {{name: ada, backend: sim, role: "You are Ada, a geographer."}}
  - {{name: bo, backend: sim, role: "You are Bo, a historian."}}
  - {{name: cy, backend: sim, role: "You are Cy, a travel writer."}}
orchestrator:
  strategy: {strategy}
"""


def start_serve(team: Path, concurrency: int) -> tuple[subprocess.Popen[str], str]:
    cmd = [sys.executable, "-m", "massgen", "serve", str(team), "--port", "0", "--no-cache"]
    cmd += ["--no-access-log", "--concurrency", str(concurrency)]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    line = proc.stderr.readline()
    if " on http://" not in line:
        proc.kill()
        raise SystemExit(f"massgen serve did not start: {line}{proc.stderr.read()}")
    return proc, line.rsplit(" on ", 1)[1].strip()


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def stop(proc: subprocess.Popen[str]) -> None:
    proc.terminate()
    proc.communicate(timeout=60)


async def ask(http: object, url: str, model: str) -> tuple[float, float]:
    """One completion: the seconds the client waited and the run's own duration."""
    import aiohttp

    assert isinstance(http, aiohttp.ClientSession)
    body = {"model": model, "messages": [{"role": "user", "content": TASK}]}
    started = time.perf_counter()
    async with http.post(url + "/v1/chat/completions", json=body) as r:
        data = await r.json()
    waited = time.perf_counter() - started
    if r.status != 200:
        raise SystemExit(f"serve answered {r.status}: {data}")
    return waited, data["massgen"]["duration"]


async def overhead(sim_url: str, runs: int, folder: Path) -> None:
    import aiohttp

    from massgen import Orchestrator

    team = folder / "consensus.yaml"
    team.write_text(TEAM.format(name="c", url=sim_url, strategy="consensus"))
    proc, url = start_serve(team, 8)
    try:
        async with (
            Orchestrator.from_config(team, cache_enabled=False) as orch,
            aiohttp.ClientSession() as http,
        ):
            await orch.arun(TASK)  # both warm: clients loaded, connections open
            await ask(http, url, "massgen/c")
            local: list[float] = []
            served: list[float] = []
            for _ in range(runs):
                started = time.perf_counter()
                await orch.arun(TASK)
                local.append(time.perf_counter() - started)
                served.append((await ask(http, url, "massgen/c"))[0])
    finally:
        stop(proc)
    diffs = [s - here for s, here in zip(served, local, strict=True)]
    ms = 1000
    print(f"1. 3-agent consensus, {runs} runs each, alternately (medians):")
    print(f"   in-process {statistics.median(local) * ms:8.1f} ms")
    print(f"   via serve  {statistics.median(served) * ms:8.1f} ms")
    print(f"   added      {statistics.median(diffs) * ms:8.1f} ms (median of pairwise differences)")


async def load(sim_url: str, clients: int, asks: int, latency: float, folder: Path) -> None:
    import aiohttp

    team = folder / "parallel.yaml"
    team.write_text(TEAM.format(name="p", url=sim_url, strategy="parallel"))
    proc, url = start_serve(team, clients + 16)
    try:
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector) as http:
            await ask(http, url, "massgen/p")  # warm
            seen: list[tuple[float, float]] = []

            async def client() -> None:
                for _ in range(asks):
                    seen.append(await ask(http, url, "massgen/p"))

            started = time.perf_counter()
            await asyncio.gather(*(client() for _ in range(clients)))
            wall = time.perf_counter() - started
        rss = peak_rss_mb(proc.pid)
    finally:
        stop(proc)
    runs = clients * asks
    ideal = clients / latency
    added = sorted(w - latency for w, _ in seen)
    outside = sorted(w - d for w, d in seen)

    def pct(values: list[float], p: float) -> float:
        return values[min(len(values) - 1, int(p / 100 * len(values)))] * 1000

    print(
        f"2. {clients} concurrent clients x {asks} asks, 3-agent parallel, {latency:g} s latency:"
    )
    print(
        f"   {runs} runs in {wall:.2f} s: {runs / wall:.1f} runs/s (ideal {ideal:.0f}/s, "
        f"{runs / wall / ideal:.2f}x)"
    )
    print(
        f"   added latency over the simulated {latency:g} s: P50 {pct(added, 50):.1f} ms, "
        f"P99 {pct(added, 99):.1f} ms"
    )
    print(
        f"   of it outside the run (HTTP side): P50 {pct(outside, 50):.1f} ms, "
        f"P99 {pct(outside, 99):.1f} ms"
    )
    print(f"   serve process peak RSS {rss:.0f} MB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--asks", type=int, default=3)
    parser.add_argument("--latency", type=float, default=1.0)
    parser.add_argument("--overhead-latency", type=float, default=0.05)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        os.chdir(folder)  # run records and caches of the in-process runs land here
        with SimulatorProcess(args.overhead_latency) as sim:
            asyncio.run(overhead(sim.url, args.runs, folder))
        with SimulatorProcess(args.latency) as sim:
            asyncio.run(load(sim.url, args.clients, args.asks, args.latency, folder))


if __name__ == "__main__":
    main()
