"""CPU per request of the OpenAI-compatible clients, at many requests in flight.

Each client (``http``: massgen's own, the default; ``sdk``: the ``openai`` package) runs in a
child process of its own against the provider simulator (another process), through the
public backend interface: ``--in-flight`` tasks each send chat completions, streamed or not,
until ``--requests`` are done. The child reports the process CPU time (user + sys) of the
timed requests only (a warm-up round first opens the connections and imports what is lazy),
divided by the number of requests. Figures are medians of ``--runs``; nothing passes or fails.

First, massgen's own share of a request: the CPU per call of the resilience stack (as
``resilience.wrap`` builds it, and the agent's ``Bound``) around a backend that answers at
once, plain and streamed, in a child process of its own.

    .venv/bin/python bench/bench_http.py [--requests 3000] [--in-flight 192]
        [--latency 0.05] [--runs 3] [--clients http,sdk] [--stack-calls 20000]
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
from typing import Any

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


def _stack_child(calls: int) -> None:
    from massgen.backends.base import Backend
    from massgen.resilience import Bound, CacheSettings, Guards, RetryPolicy, wrap
    from massgen.resilience.breaker import BreakerPolicy
    from massgen.resilience.ratelimit import RateLimit
    from massgen.store import MemoryStore
    from massgen.types import CallContext, ChatMessage, Completion, StreamChunk, Usage
    from massgen.types import CompletionRequest as Request

    done = Completion(text="Paris, since 508.", model="m", usage=Usage(10, 5), finish_reason="stop")

    class Instant(Backend):
        async def complete(self, request: Request) -> Completion:
            return done

        async def stream(self, request: Request) -> Any:
            yield StreamChunk(delta=done.text)
            yield StreamChunk(completion=done)

    class Dict(MemoryStore):  # get and set at no cost: the wrappers' share, not the store's
        def __init__(self) -> None:
            self.d: dict[str, bytes] = {}

        async def get(self, key: str) -> bytes | None:
            return self.d.get(key)

        async def set(self, key: str, value: bytes, ttl: float | None = None) -> None:
            self.d[key] = value

    inner, retry = Instant("m"), RetryPolicy()
    limits = Guards(BreakerPolicy(), RateLimit(rpm=10**9, tpm=10**12, max_in_flight=10**6))
    stacks = {
        "retry, request log (a batch's)": lambda: wrap(inner, retry=retry),
        "+ rate limit, breaker": lambda: wrap(inner, limits, retry=retry),
        "cache hit, retry, request log": lambda: wrap(
            inner, retry=retry, cache=CacheSettings(Dict())
        ),
    }
    request = Request(messages=(ChatMessage("user", "What is the capital of France?"),))

    async def per_call(backend: Any, stream: bool) -> float:
        async def one() -> None:
            if stream:
                async for _ in backend.stream(request):
                    pass
            else:
                await backend.complete(request)

        await one()
        cpu = time.process_time()
        for _ in range(calls):
            await one()
        return 1e6 * (time.process_time() - cpu) / calls

    for name, make in stacks.items():
        for stream in (False, True):
            us = asyncio.run(per_call(Bound(make(), CallContext("ada")), stream))
            print(f"  {name:31} {'streamed' if stream else 'plain   '}: {us:.1f} µs CPU/call")


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
        url, client, streamed, requests, in_flight = sys.argv[2:7]
        asyncio.run(_child(url, client, streamed == "1", int(requests), int(in_flight)))
        return
    if sys.argv[1:2] == ["--stack-child"]:
        _stack_child(int(sys.argv[2]))
        return
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=3000)
    ap.add_argument("--in-flight", type=int, default=192)
    ap.add_argument("--latency", type=float, default=0.05)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--clients", default="http,sdk")
    ap.add_argument("--stack-calls", type=int, default=20000)
    args = ap.parse_args()
    print(f"the resilience stack around a backend that answers at once, {args.stack_calls} calls:")
    child = [sys.executable, __file__, "--stack-child", str(args.stack_calls)]
    subprocess.run(child, check=True)
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
