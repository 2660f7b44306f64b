"""R1, R3, R4, R5 against real Redis: kill -9, restart, trimming under backlog, SIGSTOP."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from massgen.errors import TransportError
from massgen.mas import (
    Agent,
    AgentMessage,
    BusSettings,
    Envelope,
    MessageKind,
    RedisTransport,
)

from .helpers import SHARED_REDIS, Bus, RedisServer, until

WORKER = Path(__file__).with_name("worker_proc.py")
LEASE = 1.0


class Worker:
    """A worker_proc.py subprocess and the lines it printed."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.lines: list[str] = []
        self._changed = asyncio.Event()
        self._reader = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        async for raw in self.proc.stdout:
            self.lines.append(raw.decode().strip())
            self._changed.set()

    async def wait_line(self, pred: Callable[[list[str]], bool], timeout: float = 20) -> None:
        async with asyncio.timeout(timeout):
            while not pred(self.lines):
                self._changed.clear()
                await self._changed.wait()

    async def close(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()
        await self.proc.wait()
        await self._reader


@pytest.fixture
async def spawn(prefix: str) -> AsyncIterator[Callable[..., Any]]:
    workers: list[Worker] = []

    async def start(name: str, delay: float) -> Worker:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            str(WORKER),
            "--url",
            SHARED_REDIS,
            "--prefix",
            prefix,
            "--name",
            name,
            "--delay",
            str(delay),
            "--lease",
            str(LEASE),
            stdout=asyncio.subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])},
        )
        w = Worker(proc)
        workers.append(w)
        await w.wait_line(lambda lines: "ready" in lines)
        return w

    yield start
    for w in workers:
        if w.proc.returncode is None:
            os.kill(w.proc.pid, signal.SIGCONT)
        await w.close()


class FastReplica(Agent):
    """The second worker: answers at once and counts what it handled."""

    handled: list[int]

    async def on_message(self, message: AgentMessage) -> None:
        self.handled.append(message.payload["i"])
        await message.reply({"i": message.payload["i"], "worker": "B"})


def replica_settings() -> BusSettings:
    return BusSettings(
        heartbeat_interval=0.1, heartbeat_ttl=LEASE, lease=LEASE, reclaim_interval=0.1, block=0.5
    )


async def _reply_stream_len(client: Agent) -> int:
    t = client.transport
    assert isinstance(t, RedisTransport)
    return int(await t.client.xlen(t.keys.replies(client.instance_id)))


async def test_r1_kill9_worker_with_100_in_flight(
    redis_bus: Bus, spawn: Callable[..., Any]
) -> None:
    """R1: 100 requests in flight on a worker killed with SIGKILL; a replica takes over
    after the lease: 100 results, 0 lost, 0 duplicated."""
    client = redis_bus.agent(Agent, "client")
    await client.start()
    a = await spawn("A", delay=60.0)
    calls = [
        asyncio.ensure_future(client.request("work", {"i": i}, timeout=30)) for i in range(100)
    ]
    await a.wait_line(lambda lines: "holding 100" in lines)
    a.proc.send_signal(signal.SIGKILL)
    await a.proc.wait()

    b = redis_bus.agent(FastReplica, "work", replica=True, settings=replica_settings())
    b.handled = []
    await b.start()
    results = [r.payload for r in await asyncio.gather(*calls)]
    assert sorted(r["i"] for r in results) == list(range(100))  # 0 lost
    assert {r["worker"] for r in results} == {"B"}
    assert sorted(b.handled) == list(range(100))  # each handled once by the survivor
    assert await _reply_stream_len(client) == 100  # each request answered exactly once
    assert not any(line.startswith("reply") for line in a.lines)


async def test_r5_paused_worker_late_replies_are_refused(
    redis_bus: Bus, spawn: Callable[..., Any]
) -> None:
    """R5: SIGSTOP past the lease; a replica completes the work; after SIGCONT the stale
    worker's replies are refused: exactly one result per request."""
    client = redis_bus.agent(Agent, "client")
    await client.start()
    a = await spawn("A", delay=1.5)
    calls = [asyncio.ensure_future(client.request("work", {"i": i}, timeout=30)) for i in range(20)]
    await a.wait_line(lambda lines: "holding 20" in lines)
    os.kill(a.proc.pid, signal.SIGSTOP)

    b = redis_bus.agent(FastReplica, "work", replica=True, settings=replica_settings())
    b.handled = []
    await b.start()
    results = [r.payload for r in await asyncio.gather(*calls)]
    assert sorted(r["i"] for r in results) == list(range(20))
    assert {r["worker"] for r in results} == {"B"}

    os.kill(a.proc.pid, signal.SIGCONT)
    await a.wait_line(lambda lines: sum(x.startswith("reply") for x in lines) == 20)
    assert sorted(x for x in a.lines if x.startswith("reply")) == sorted(
        f"reply {i} refused" for i in range(20)
    )
    assert await _reply_stream_len(client) == 20  # exactly one result per request
    for i_result in results:
        assert i_result["worker"] == "B"
    a.proc.send_signal(signal.SIGTERM)
    await a.wait_line(lambda lines: "stopped" in lines)


async def test_r3_redis_restart_loses_no_acknowledged_work(
    redis_server: Callable[..., RedisServer],
) -> None:
    """R3: Redis (AOF, fsync always) restarted mid-run; every send Redis acknowledged is
    handled; producer and consumer reconnect by themselves."""
    server = redis_server("--appendonly", "yes", "--appendfsync", "always")
    settings = BusSettings(
        heartbeat_interval=0.1, heartbeat_ttl=2, lease=1.0, reclaim_interval=0.2, block=0.3
    )
    handled: set[int] = set()
    progress = asyncio.Event()

    class Sink(Agent):
        async def on_message(self, message: AgentMessage) -> None:
            handled.add(message.payload["i"])
            progress.set()

    sink = Sink("sink", redis_url=server.url, prefix="r3:", settings=settings)
    producer = Agent("producer", redis_url=server.url, prefix="r3:", settings=settings)
    await sink.start()
    await producer.start()
    acknowledged: list[int] = []
    failed: list[int] = []
    try:
        for i in range(300):
            if i == 100:
                await asyncio.to_thread(server.stop)
                await asyncio.to_thread(server.start)
            try:
                await producer.send("sink", {"i": i})
                acknowledged.append(i)
            except TransportError:
                failed.append(i)
        async with asyncio.timeout(20):
            while not set(acknowledged) <= handled:
                progress.clear()
                await progress.wait()
        assert set(acknowledged) <= handled  # 0 acknowledged work lost
        assert len(acknowledged) >= 290  # the clients rode out the restart by themselves
        assert max(handled) == 299
    finally:
        await sink.stop()
        await producer.stop()


async def test_r4_trimming_never_deletes_unacknowledged_entries(redis_bus: Bus) -> None:
    """R4: under a backlog, trim drops only acknowledged entries."""
    t = redis_bus.transport()
    assert isinstance(t, RedisTransport)
    await t.connect()
    await t.ensure_inbox("w")
    sender = "s"

    def env(i: int) -> Envelope:
        return Envelope(AgentMessage(id=f"m{i}", sender_id=sender, target_id="w", payload={"i": i}))

    await t.send([env(i) for i in range(1000)])
    delivered = await t.fetch("w", "c1", count=300, block=0)
    assert len(delivered) == 300
    keep = {120, 121, 250}  # handled slowly: still pending
    done = [d.entry_id for d in delivered if d.envelope.message.payload["i"] not in keep]  # type: ignore[union-attr]
    await t.ack("w", "c1", done[:250])  # acks 0..252 minus the three kept
    removed = await t.trim("w")
    assert removed > 0  # trimming does happen

    inbox = t.keys.inbox("w")
    left = await t.client.xrange(inbox)
    left_i = {int(f[b"m"].split(b'"i":')[1].split(b"}")[0]) for _, f in left}
    assert keep <= left_i  # pending entries survive
    assert set(range(253, 1000)) <= left_i  # delivered-unacked and undelivered survive
    assert min(left_i) <= 120

    # the backlog is still fully deliverable
    rest = await t.fetch("w", "c1", count=1000, block=0)
    assert len(rest) == 700
    await t.ack("w", "c1", [d.entry_id for d in delivered if d.entry_id not in done[:250]])
    await t.ack("w", "c1", [d.entry_id for d in rest])
    await t.trim("w")
    assert int(await t.client.xlen(inbox)) < 1000 - 250
    assert (await t.client.xpending(inbox, "workers"))["pending"] == 0


async def test_r4_agent_trims_its_inbox_while_working(redis_bus: Bus) -> None:
    """The agent trims as it acks (trim_every) and loses nothing while doing so."""
    settings = BusSettings(trim_every=50, lease=5, block=0.2, batch=64)
    got: list[int] = []
    all_in = asyncio.Event()

    class Sink(Agent):
        async def on_message(self, message: AgentMessage) -> None:
            got.append(message.payload["i"])
            if len(got) == 2000:
                all_in.set()

    sink = redis_bus.agent(Sink, "sink", settings=settings, concurrency=8)
    producer = redis_bus.agent(Agent, "producer")
    await producer.start()
    await producer.send_many([("sink", {"i": i}) for i in range(2000)])
    await sink.start()
    await until(all_in, timeout=30)
    assert sorted(got) == list(range(2000))
    t = sink.transport
    assert isinstance(t, RedisTransport)
    assert int(await t.client.xlen(t.keys.inbox("sink"))) < 2000


async def test_reply_stream_is_trimmed_as_it_is_read(redis_bus: Bus) -> None:
    """Replies read are trimmed (every 1000, before the next read), unread ones never."""
    t = redis_bus.transport()
    assert isinstance(t, RedisTransport)
    await t.connect()

    def reply(i: int) -> Envelope:
        msg = AgentMessage(
            id=f"r{i}", sender_id="w", target_id="c", kind=MessageKind.REPLY,
            correlation_id=f"q{i}", reply_to="inst", payload={"i": i},
        )  # fmt: skip
        return Envelope(msg)

    await asyncio.gather(*(t.commit_reply("w", "x", None, reply(i), ttl=60) for i in range(1200)))
    first = await t.read_replies("inst", block=0)
    assert [e.message.payload["i"] for e in first] == list(range(1000))
    key = t.keys.replies("inst")
    assert int(await t.client.xlen(key)) == 1200  # read, not trimmed yet
    rest = await t.read_replies("inst", block=0.5)  # trims what was read before it reads
    assert [e.message.payload["i"] for e in rest] == list(range(1000, 1200))
    assert int(await t.client.xlen(key)) <= 300
