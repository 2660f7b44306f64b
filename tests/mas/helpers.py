"""Helpers of the mas tests: fast timings, condition waits, a bus builder and private
redis-servers."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from massgen.mas import Agent, BusSettings, MemoryHub, MemoryTransport, Transport
from massgen.mas.transport import cancel_and_wait

SHARED_REDIS = os.environ.get("MASSGEN_TEST_REDIS", "redis://127.0.0.1:6379/0")
REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"

#: Timings that make leases and heartbeats expire in a fraction of a second.
FAST = BusSettings(
    heartbeat_interval=0.05,
    heartbeat_ttl=0.4,
    lease=0.5,
    reclaim_interval=0.1,
    max_deliveries=3,
    block=0.2,
    drain_timeout=2.0,
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def wait_for(cond: Callable[[], Any], timeout: float = 10.0, what: str = "") -> None:
    """Wait until ``cond()`` is true, yielding to the loop between checks (no fixed sleeps)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not cond():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what or cond}")
        await asyncio.sleep(0.005)


async def clean_prefix(url: str, prefix: str) -> None:
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(url)
    try:
        keys = [k async for k in client.scan_iter(match=f"{prefix}*", count=1000)]
        for i in range(0, len(keys), 1000):
            await client.delete(*keys[i : i + 1000])
    finally:
        await client.aclose()


@dataclass
class Bus:
    """Builds agents and transports on one bus (memory hub or Redis prefix)."""

    kind: str
    prefix: str
    hub: MemoryHub = field(default_factory=MemoryHub)
    url: str = SHARED_REDIS
    transports: list[Transport] = field(default_factory=list)
    agents: list[Agent] = field(default_factory=list)

    def transport(self) -> Transport:
        if self.kind == "memory":
            t: Transport = MemoryTransport(self.hub)
        else:
            from massgen.mas import RedisTransport

            t = RedisTransport(self.url, prefix=self.prefix)
        self.transports.append(t)
        return t

    def agent_kwargs(self) -> dict[str, Any]:
        if self.kind == "memory":
            return {"hub": self.hub}
        return {"redis_url": self.url, "prefix": self.prefix}

    def agent(self, cls: type[Agent] = Agent, agent_id: str = "a", **kw: Any) -> Agent:
        kw.setdefault("settings", FAST)
        a = cls(agent_id, **{**self.agent_kwargs(), **kw})
        self.agents.append(a)
        return a

    async def close(self) -> None:
        for a in self.agents:
            await a.stop()
        for t in self.transports:
            await t.close()


class RedisServer:
    """A private redis-server on a free port, in its own directory, that tests may kill,
    pause or restart (same port, same directory, so an AOF file survives)."""

    def __init__(self, workdir: Path, *args: str, password: str | None = None) -> None:
        self.dir = workdir
        self.port = free_port()
        self.args = list(args)
        self.password = password
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def start(self) -> None:
        cmd = [
            REDIS_SERVER,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.dir),
            "--save",
            "",
            "--daemonize",
            "no",
            *self.args,
        ]
        if self.password:
            cmd += ["--requirepass", self.password]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:  # ready when it accepts connections (and has loaded its AOF)
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as s:
                    s.sendall(b"PING\r\n")
                    reply = s.recv(64)
                    if reply.startswith((b"+PONG", b"-NOAUTH")):
                        return
            except OSError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server on port {self.port} did not start")
            time.sleep(0.01)

    def stop(self) -> None:
        """SIGTERM: redis-server flushes its AOF and exits."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
        self.proc = None


class Recorder(Agent):
    """Records what it receives; replies to requests with ``{"echo": payload}``.

    ``expect(n)`` returns an event set once ``n`` messages arrived.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.got: list[Any] = []
        self._want = 0
        self._reached = asyncio.Event()

    def expect(self, n: int) -> asyncio.Event:
        self._want = n
        if len(self.got) >= n:
            self._reached.set()
        else:
            self._reached.clear()
        return self._reached

    async def on_message(self, message: Any) -> None:
        self.got.append(message)
        if message.kind == "request":
            await message.reply({"echo": message.payload})
        if self._want and len(self.got) >= self._want:
            self._reached.set()


async def crash(agent: Agent) -> None:
    """Make ``agent`` vanish like a killed process: no ack, no deregistration, no goodbye."""
    await agent._cancel(lambda t: True)
    if agent._reply_task is not None:
        await cancel_and_wait([agent._reply_task])
    if agent._owns_transport and not isinstance(agent.transport, MemoryTransport):
        await agent.transport.close()
    from massgen.mas import AgentStatus

    agent.status = AgentStatus.STOPPED


async def until(event: asyncio.Event, timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        await event.wait()
