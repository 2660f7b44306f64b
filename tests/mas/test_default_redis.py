"""Agents given no URL use the Redis at redis://localhost:6379, as the seed's do, so two
processes written from the seed README meet; the in-process bus is opt-in."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from massgen.mas import (
    DEFAULT_REDIS_URL,
    Agent,
    AgentMessage,
    MASService,
    MemoryHub,
    MemoryTransport,
    RedisTransport,
)
from tests.procs import start_ready

from .helpers import SHARED_REDIS, until

ROOT = Path(__file__).parents[2]

PROC_B = """
import asyncio, logging, signal, sys
from massgen.mas import Agent, AgentMessage

class ProcB(Agent):
    async def on_message(self, message: AgentMessage):
        print(f"Received: {message.payload}", flush=True)
        await self.send(message.sender_id, {"reply": "got it"})

async def main():
    agent = ProcB(sys.argv[1], capabilities=["chat"])
    await agent.start()
    print(f"ready {agent!r}", flush=True)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    await agent.stop()
    print("stopped", flush=True)

logging.basicConfig(level=logging.INFO, format="%(message)s")
asyncio.run(main())
"""

PROC_A = """
import asyncio, sys
from massgen.mas import Agent, AgentMessage

class ProcA(Agent):
    async def on_message(self, message: AgentMessage):
        print(f"Received: {message.payload}", flush=True)
        self.replied.set()

async def main():
    agent = ProcA(sys.argv[1])
    agent.replied = asyncio.Event()
    await agent.start()
    agents = await agent.discover(capabilities=["chat"])
    print(f"found {sys.argv[2] in [a['id'] for a in agents]}", flush=True)
    await agent.send(sys.argv[2], {"hello": "world"})
    await asyncio.wait_for(agent.replied.wait(), 15)
    await agent.stop()

asyncio.run(main())
"""


@pytest.fixture
def run_id() -> Iterator[str]:
    """Ids of this test's own on the default prefix; their keys are deleted afterwards."""
    rid = uuid.uuid4().hex[:10]
    yield rid
    asyncio.run(_clean_ids(rid))


async def _clean_ids(rid: str) -> None:
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(SHARED_REDIS)
    try:
        keys = [k async for k in client.scan_iter(match=f"massgen:*{rid}*", count=1000)]
        await client.delete(*keys)
    finally:
        await client.aclose()


def test_two_processes_written_like_the_seed_readme_meet_over_the_default_redis(
    tmp_path: Path, run_id: str
) -> None:
    (tmp_path / "proc_b.py").write_text(textwrap.dedent(PROC_B))
    (tmp_path / "proc_a.py").write_text(textwrap.dedent(PROC_A))
    env = {k: v for k, v in os.environ.items() if k not in ("MASSGEN_REDIS_URL", "MASSGEN_SECRET")}
    env["PYTHONPATH"] = str(ROOT)
    a_id, b_id = f"proc_a_{run_id}", f"proc_b_{run_id}"
    b = start_ready(
        [sys.executable, str(tmp_path / "proc_b.py"), b_id], ready="ready", env=env, timeout=30
    )
    try:
        a = subprocess.run(
            [sys.executable, str(tmp_path / "proc_a.py"), a_id, b_id],
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert a.returncode == 0, a.stderr
        assert a.stdout.splitlines() == ["found True", "Received: {'reply': 'got it'}"]
        b.send_signal(signal.SIGTERM)
        out, err = b.communicate(timeout=30)
    finally:
        if b.poll() is None:
            b.kill()
            b.communicate(timeout=10)
    assert b.returncode == 0, err
    assert out.splitlines() == ["Received: {'hello': 'world'}", "stopped"]
    # which bus is in use: in the start log line
    assert f"agent {b_id} started on {DEFAULT_REDIS_URL}" in err


def test_the_default_is_the_local_redis_and_the_url_variable_overrides_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("MASSGEN_REDIS_URL", raising=False)
    agent, service = Agent("a"), MASService()
    assert DEFAULT_REDIS_URL == "redis://localhost:6379"
    for t in (agent.transport, service._transport):
        assert isinstance(t, RedisTransport) and t.url == DEFAULT_REDIS_URL
    assert repr(agent) == "Agent('a', status=created, on='redis://localhost:6379')"
    assert repr(service) == "MASService(on='redis://localhost:6379', running=False)"
    monkeypatch.setenv("MASSGEN_REDIS_URL", "redis://:hunter2@elsewhere:6390/2")
    agent = Agent("a")
    assert isinstance(agent.transport, RedisTransport)
    assert agent.transport.url == "redis://:hunter2@elsewhere:6390/2"
    assert "hunter2" not in repr(agent) and "elsewhere:6390" in repr(agent)
    third = Agent("a", redis_url="redis://third:1").transport
    assert isinstance(third, RedisTransport) and third.url == "redis://third:1"


def test_the_in_process_bus_is_an_explicit_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MASSGEN_REDIS_URL", "redis://elsewhere:6390")
    hub = MemoryHub()
    for agent in (Agent("a", transport=MemoryTransport()), Agent("b", hub=hub)):
        assert isinstance(agent.transport, MemoryTransport)
        assert repr(agent).endswith("on='the in-process bus')")
    assert isinstance(MASService(hub=hub)._transport, MemoryTransport)
    with pytest.raises(ValueError, match="not hub and redis_url"):
        Agent("a", hub=hub, redis_url="redis://x")
    with pytest.raises(ValueError, match="not transport and hub"):
        MASService(transport=MemoryTransport(), hub=hub)


async def test_agents_on_memory_transports_of_one_loop_meet(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MASSGEN_REDIS_URL", "redis://127.0.0.1:1")  # never used
    got = asyncio.Event()

    class B(Agent):
        async def on_message(self, message: AgentMessage) -> None:
            got.set()

    async with B("b", transport=MemoryTransport()), Agent("a", transport=MemoryTransport()) as a:
        await a.send("b", {})
        await until(got)


async def test_the_start_log_line_names_the_bus(
    prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="massgen.mas")
    async with Agent("a", redis_url=SHARED_REDIS, prefix=prefix):
        pass
    async with Agent("b", transport=MemoryTransport()):
        pass
    async with MASService(SHARED_REDIS, prefix=prefix):
        pass
    where = RedisTransport(SHARED_REDIS).where
    assert f"agent a started on {where}" in caplog.text
    assert "agent b started on the in-process bus" in caplog.text
    assert f"mas service started on {where}" in caplog.text
