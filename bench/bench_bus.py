"""Benchmark of the massgen.mas bus (prints figures; not a test).

    python bench/bench_bus.py [--redis redis://127.0.0.1:6379] [--runs 3]

Figures, each the median of ``--runs`` runs, with raw redis-py pub/sub measured in the same
run as the reference (timings on shared machines are noisy: compare ratios):

* one-way messages/s between two OS processes over Redis, at least once (streams, acks),
  with the CPU time each side spent per message (``send_cpu_us``, ``recv_cpu_us``: far less
  noisy than the rate on a shared machine);
* request/reply RTT P50/P95/P99 between two processes over Redis, and the requester's CPU
  time per request (``cpu_us``);
* the same in memory (one process);
* raw redis-py pub/sub between two processes (at most once): messages/s and RTT;
* 100 agents in one process: peak RSS and registry lookup time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from massgen.mas import Agent, AgentMessage, BusSettings, MemoryHub, MemoryTransport  # noqa: E402

SETTINGS = BusSettings(batch=500, block=1.0)


def emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def percentiles(samples: list[float]) -> dict[str, float]:
    s = sorted(samples)

    def p(q: float) -> float:
        return s[min(len(s) - 1, int(q * len(s)))] * 1000

    return {"p50": p(0.50), "p95": p(0.95), "p99": p(0.99)}


def peak_rss_mb() -> float:
    """VmHWM: unlike ru_maxrss it is not inherited across exec from the parent."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# roles run in child processes -----------------------------------------------------------------
class Sink(Agent):
    def __init__(self, *args: Any, total: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.total = total
        self.count = 0
        self.done = asyncio.Event()

    async def on_message(self, message: AgentMessage) -> None:
        self.count += 1
        if self.count == self.total:
            self.done.set()


class Echo(Agent):
    async def on_message(self, message: AgentMessage) -> None:
        await message.reply(message.payload)


async def role_sink(url: str, prefix: str, n: int) -> None:
    sink = Sink("sink", redis_url=url, prefix=prefix, settings=SETTINGS, concurrency=1, total=n)
    await sink.start()
    emit({"ready": True})
    c0 = time.process_time()
    await sink.done.wait()
    emit({"end": time.time(), "cpu": time.process_time() - c0})
    await sink.stop()


async def role_sender(url: str, prefix: str, n: int) -> None:
    sender = Agent("sender", redis_url=url, prefix=prefix, settings=SETTINGS)
    await sender.start()
    window = 256

    async def lane(k: int) -> None:
        for i in range(k, n, window):
            await sender.send("sink", {"i": i})

    start, c0 = time.time(), time.process_time()
    await asyncio.gather(*(lane(k) for k in range(window)))
    emit({"start": start, "sent_end": time.time(), "cpu": time.process_time() - c0})
    await sender.stop()


async def role_echo(url: str, prefix: str) -> None:
    echo = Echo("echo", redis_url=url, prefix=prefix, settings=SETTINGS)
    await echo.start()
    emit({"ready": True})
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await echo.stop()


async def role_requester(url: str, prefix: str, n: int) -> None:
    me = Agent("requester", redis_url=url, prefix=prefix, settings=SETTINGS)
    await me.start()
    for i in range(200):  # warm up
        await me.request("echo", {"i": i})
    lat = []
    c0 = time.process_time()
    for i in range(n):
        t = time.perf_counter()
        await me.request("echo", {"i": i})
        lat.append(time.perf_counter() - t)
    emit({**percentiles(lat), "cpu_us": (time.process_time() - c0) / n * 1e6})
    await me.stop()


async def role_pubsub_sub(url: str, channel: str, n: int) -> None:
    import redis.asyncio as aioredis

    r = aioredis.Redis.from_url(url)
    ps = r.pubsub()
    await ps.subscribe(channel)
    emit({"ready": True})
    count = 0
    async for m in ps.listen():
        if m["type"] == "message":
            count += 1
            if count == n:
                break
    emit({"end": time.time()})
    await ps.aclose()
    await r.aclose()


async def role_pubsub_pub(url: str, channel: str, n: int) -> None:
    import redis.asyncio as aioredis

    r = aioredis.Redis.from_url(url)
    body = json.dumps({"id": uuid.uuid4().hex, "payload": {"i": 0}})
    start = time.time()
    for _ in range(n):
        await r.publish(channel, body)
    emit({"start": start})
    await r.aclose()


async def role_pubsub_echo(url: str, channel: str) -> None:
    import redis.asyncio as aioredis

    r = aioredis.Redis.from_url(url)
    ps = r.pubsub()
    await ps.subscribe(channel + ":req")
    emit({"ready": True})
    async for m in ps.listen():
        if m["type"] == "message":
            if m["data"] == b"quit":
                break
            await r.publish(channel + ":rep", m["data"])
    await ps.aclose()
    await r.aclose()


async def role_pubsub_ping(url: str, channel: str, n: int) -> None:
    import redis.asyncio as aioredis

    r = aioredis.Redis.from_url(url)
    ps = r.pubsub()
    await ps.subscribe(channel + ":rep")
    await ps.get_message(timeout=1.0)  # subscribe confirmation
    lat = []
    for i in range(n + 200):
        t = time.perf_counter()
        await r.publish(channel + ":req", str(i))
        while True:
            m = await ps.get_message(timeout=5.0)
            if m and m["type"] == "message":
                break
        if i >= 200:
            lat.append(time.perf_counter() - t)
    await r.publish(channel + ":req", "quit")
    emit(percentiles(lat))
    await ps.aclose()
    await r.aclose()


async def role_many_agents(url: str | None, prefix: str, count: int) -> None:
    hub = MemoryHub()
    transport = None
    if url:
        from massgen.mas import RedisTransport

        transport = RedisTransport(url, prefix=prefix)
        await transport.connect()
    agents = [
        Agent(
            f"agent-{i:03d}",
            capabilities=["all", f"group-{i % 10}"],
            transport=transport or MemoryTransport(hub),
            settings=SETTINGS,
        )
        for i in range(count)
    ]
    t0 = time.perf_counter()
    for a in agents:
        await a.start()
    started = time.perf_counter() - t0
    lookups_all, lookups_cap = [], []
    for _ in range(200):
        t = time.perf_counter()
        found = await agents[0].discover()
        lookups_all.append(time.perf_counter() - t)
        t = time.perf_counter()
        some = await agents[0].discover(capabilities=["group-3"])
        lookups_cap.append(time.perf_counter() - t)
    assert len(found) == count and len(some) == count // 10
    rss_mb = peak_rss_mb()
    emit(
        {
            "rss_mb": rss_mb,
            "start_s": started,
            "discover_all_ms": statistics.median(lookups_all) * 1000,
            "discover_cap_ms": statistics.median(lookups_cap) * 1000,
        }
    )
    for a in agents:
        await a.stop()
    if transport is not None:
        await transport.close()


async def in_memory(n: int, rtt_n: int) -> dict[str, float]:
    hub = MemoryHub()
    sink = Sink("sink", hub=hub, settings=SETTINGS, concurrency=1, total=n)
    sender = Agent("sender", hub=hub, settings=SETTINGS)
    echo = Echo("echo", hub=hub, settings=SETTINGS)
    for a in (sink, sender, echo):
        await a.start()
    batch = [("sink", {"i": 0})] * 1000
    t, c0 = time.perf_counter(), time.process_time()
    for _ in range(n // 1000):
        await sender.send_many(batch)
    await sink.done.wait()
    rate = n / (time.perf_counter() - t)
    cpu_us = (time.process_time() - c0) / n * 1e6
    lat = []
    for i in range(rtt_n):
        t = time.perf_counter()
        await sender.request("echo", {"i": i})
        lat.append(time.perf_counter() - t)
    for a in (sink, sender, echo):
        await a.stop()
    return {"msgs_per_s": rate, "cpu_us": cpu_us, **percentiles(lat)}


# the parent --------------------------------------------------------------------------------
def child(role: str, *args: str, stdin: bool = False) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, __file__, "--role", role, *args],
        stdout=subprocess.PIPE,
        stdin=subprocess.PIPE if stdin else None,
        text=True,
    )


def read(proc: subprocess.Popen[str]) -> dict[str, Any]:
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        raise RuntimeError(f"child {proc.args} died")
    return dict(json.loads(line))


async def cleanup(url: str, prefix: str) -> None:
    import redis.asyncio as aioredis

    r = aioredis.Redis.from_url(url)
    keys = [k async for k in r.scan_iter(match=prefix + "*", count=1000)]
    for i in range(0, len(keys), 1000):
        await r.delete(*keys[i : i + 1000])
    await r.aclose()


def redis_one_way(url: str, n: int) -> dict[str, float]:
    prefix = f"bench:{uuid.uuid4().hex[:8]}:"
    sink = child("sink", url, prefix, str(n))
    read(sink)
    sender = child("sender", url, prefix, str(n))
    sent = read(sender)
    got = read(sink)
    sender.wait()
    sink.wait()
    asyncio.run(cleanup(url, prefix))
    return {
        "msgs_per_s": n / (got["end"] - sent["start"]),
        "send_cpu_us": sent["cpu"] / n * 1e6,
        "recv_cpu_us": got["cpu"] / n * 1e6,
    }


def redis_rtt(url: str, n: int) -> dict[str, float]:
    prefix = f"bench:{uuid.uuid4().hex[:8]}:"
    echo = child("echo", url, prefix, stdin=True)
    read(echo)
    req = child("requester", url, prefix, str(n))
    out = read(req)
    req.wait()
    assert echo.stdin is not None
    echo.stdin.close()
    echo.wait()
    asyncio.run(cleanup(url, prefix))
    return out


def pubsub_one_way(url: str, n: int) -> float:
    channel = f"bench:ps:{uuid.uuid4().hex[:8]}"
    sub = child("pubsub_sub", url, channel, str(n))
    read(sub)
    pub = child("pubsub_pub", url, channel, str(n))
    start = read(pub)["start"]
    end = read(sub)["end"]
    pub.wait()
    sub.wait()
    return n / (end - start)


def pubsub_rtt(url: str, n: int) -> dict[str, float]:
    channel = f"bench:ps:{uuid.uuid4().hex[:8]}"
    echo = child("pubsub_echo", url, channel)
    read(echo)
    ping = child("pubsub_ping", url, channel, str(n))
    out = read(ping)
    ping.wait()
    echo.wait()
    return out


def many_agents(url: str | None, count: int) -> dict[str, float]:
    prefix = f"bench:{uuid.uuid4().hex[:8]}:"
    proc = child("many_agents", url or "", prefix, str(count))
    out = read(proc)
    proc.wait()
    if url:
        asyncio.run(cleanup(url, prefix))
    return out


def med(runs: list[dict[str, float]]) -> dict[str, float]:
    return {k: statistics.median(r[k] for r in runs) for k in runs[0]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--redis", default=os.environ.get("MASSGEN_REDIS_URL", "redis://127.0.0.1:6379"))
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--n", type=int, default=20_000, help="messages per one-way run")
    p.add_argument("--rtt-n", type=int, default=2_000, help="requests per RTT run")
    p.add_argument("--mem-n", type=int, default=200_000)
    p.add_argument("--role", help=argparse.SUPPRESS)
    p.add_argument("args", nargs="*", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.role:
        fn = globals()[f"role_{a.role}"]
        args: list[Any] = [x if not x.isdigit() else int(x) for x in a.args]
        if a.role == "many_agents":
            args[0] = args[0] or None
        asyncio.run(fn(*args))
        return

    t0 = time.perf_counter()
    rows: dict[str, list[dict[str, float]]] = {}
    for _ in range(a.runs):
        rows.setdefault("mas redis one-way", []).append(redis_one_way(a.redis, a.n))
        rows.setdefault("pubsub one-way", []).append({"msgs_per_s": pubsub_one_way(a.redis, a.n)})
        rows.setdefault("mas redis rtt", []).append(redis_rtt(a.redis, a.rtt_n))
        rows.setdefault("pubsub rtt", []).append(pubsub_rtt(a.redis, a.rtt_n))
        rows.setdefault("mas memory", []).append(asyncio.run(in_memory(a.mem_n, a.rtt_n)))
        rows.setdefault("100 agents redis", []).append(many_agents(a.redis, 100))
        rows.setdefault("100 agents memory", []).append(many_agents(None, 100))

    print(f"massgen.mas bus benchmark: median of {a.runs} runs (Redis {a.redis})")
    for name, runs in rows.items():
        m = med(runs)
        figures = ", ".join(
            f"{k}={v:,.0f}"
            if k == "msgs_per_s"
            else f"{k}={v:.1f}"
            if k.endswith("_us")
            else f"{k}={v:.3f}"
            for k, v in m.items()
        )
        print(f"  {name:<20} {figures}")
    one = med(rows["mas redis one-way"])["msgs_per_s"]
    ref = med(rows["pubsub one-way"])["msgs_per_s"]
    print(f"  ratio mas redis one-way / raw pub/sub: {one / ref:.2f}")
    rtt = med(rows["mas redis rtt"])["p50"]
    print(f"  ratio mas redis RTT P50 / raw pub/sub: {rtt / med(rows['pubsub rtt'])['p50']:.2f}")
    print(f"  total bench time: {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
