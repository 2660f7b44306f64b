"""CPU per request of the OpenAI-compatible clients, at many requests in flight.

Each client (``http``: massgen's own, the default; ``sdk``: the ``openai`` package) runs in a
child process of its own against the provider simulator (another process), through the
public backend interface: ``--in-flight`` tasks each send chat completions, streamed or not,
until ``--requests`` are done. The child reports the process CPU time (user + sys) of the
timed requests only (a warm-up round first opens the connections and imports what is lazy),
divided by the number of requests. Figures are medians of ``--runs``; nothing passes or fails.

    .venv/bin/python bench/bench_http.py [--requests 3000] [--in-flight 192]
        [--latency 0.05] [--runs 3] [--clients http,sdk]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the simulator lives in tests/
from tests.sim.sim_process import SimulatorProcess


async def _child(url: str, client: str, stream: bool, requests: int, in_flight: int) -> None:
    from massgen.backends import create_backend
    from massgen.types import ChatMessage, CompletionRequest

    backend = create_backend(
        "openai", model="gpt-4o-mini", api_key="sk-bench", base_url=url, client=client
    )
    request = CompletionRequest(messages=(ChatMessage("user", "Say hi."),))

    async def one() -> None:
        if stream:
            async for chunk in backend.stream(request):
                last = chunk
            assert last.completion is not None
        else:
            assert (await backend.complete(request)).text

    async def worker(todo: list[int]) -> None:
        while todo:
            todo.pop()
            await one()

    try:
        await asyncio.gather(*(one() for _ in range(in_flight)))  # warm-up: open connections
        todo = list(range(requests))
        cpu, wall = time.process_time(), time.perf_counter()
        await asyncio.gather(*(worker(todo) for _ in range(in_flight)))
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    finally:
        await backend.aclose()
    print(json.dumps({"cpu": cpu, "wall": wall, "requests": requests}))


def run_child(url: str, client: str, stream: bool, requests: int, in_flight: int) -> dict:
    args = [url, client, str(int(stream)), str(requests), str(in_flight)]
    out = subprocess.run(
        [sys.executable, __file__, "--child", *args], capture_output=True, text=True, check=False
    )
    if out.returncode != 0:
        raise SystemExit(f"child {client} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    if sys.argv[1:2] == ["--child"]:
        url, client, stream, requests, in_flight = sys.argv[2:7]
        asyncio.run(_child(url, client, stream == "1", int(requests), int(in_flight)))
        return
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=3000)
    ap.add_argument("--in-flight", type=int, default=192)
    ap.add_argument("--latency", type=float, default=0.05)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--clients", default="http,sdk")
    args = ap.parse_args()
    print(
        f"{args.requests} chat completions, {args.in_flight} in flight, simulator latency "
        f"{args.latency * 1000:.0f} ms; CPU of the client process per request, median of "
        f"{args.runs} (range in brackets)"
    )
    with SimulatorProcess(latency=args.latency) as sim:
        for client in args.clients.split(","):
            for stream in (False, True):
                runs = [
                    run_child(sim.openai_base_url, client, stream, args.requests, args.in_flight)
                    for _ in range(args.runs)
                ]
                per = sorted(1000 * r["cpu"] / r["requests"] for r in runs)
                rate = statistics.median(r["requests"] / r["wall"] for r in runs)
                kind = "streamed" if stream else "plain   "
                print(
                    f"  client {client:4} {kind}: {statistics.median(per):.3f} ms CPU/request "
                    f"[{per[0]:.3f}..{per[-1]:.3f}], {rate:.0f} requests/s"
                )


if __name__ == "__main__":
    main()
