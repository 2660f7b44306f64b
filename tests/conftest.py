"""Fixtures shared by the whole suite."""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

# What massgen keeps between runs (genai-prices' answers) stays inside this test session.
os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="massgen-test-cache-")

from tests.mas.helpers import RedisServer
from tests.sim.simulator import ProviderSimulator


@pytest.fixture
def sim() -> Iterator[ProviderSimulator]:
    """A provider simulator on a free loopback port, no latency, stopped after the test."""
    with ProviderSimulator() as simulator:
        yield simulator


@pytest.fixture(scope="session")
def offline(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """configs/offline.yaml's team unpaced (tests.teamkit.unpaced), for tests of what a run
    prints rather than of how it streams. Shared: no test may change it."""
    from tests.teamkit import unpaced_offline

    return unpaced_offline(tmp_path_factory.mktemp("checkout"))


@pytest.fixture
async def prefix() -> AsyncIterator[str]:
    """A Redis key prefix of this test's own on the shared server, deleted afterwards."""
    import redis.asyncio as aioredis

    p = f"test:{uuid.uuid4().hex[:10]}:"
    yield p
    client = aioredis.Redis.from_url(os.environ.get("MASSGEN_TEST_REDIS", "redis://127.0.0.1:6379"))
    try:
        keys = [k async for k in client.scan_iter(match=f"{p}*")]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[Callable[..., RedisServer]]:
    """Factory: ``redis_server("--appendonly", "yes", password="x")`` starts one."""
    servers: list[RedisServer] = []

    def make(*args: str, password: str | None = None) -> RedisServer:
        d = tmp_path / f"redis{len(servers)}"
        d.mkdir()
        s = RedisServer(d, *args, password=password)
        servers.append(s)
        s.start()
        return s

    yield make
    for s in servers:
        if s.proc is not None and s.proc.poll() is None:
            s.proc.kill()
            s.proc.wait(timeout=10)
