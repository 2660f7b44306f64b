"""Fixtures shared by the whole suite."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest

from massgen.testing import netguard
from massgen.testing.simulator import ProviderSimulator


@pytest.fixture(autouse=True, scope="session")
def _netguard() -> Iterator[netguard.NetGuard]:
    """No test may connect beyond loopback: a real provider is never reached by accident."""
    guard = netguard.install()
    yield guard
    guard.uninstall()


@pytest.fixture
def sim() -> Iterator[ProviderSimulator]:
    """A provider simulator on a free loopback port, no latency, stopped after the test."""
    with ProviderSimulator() as simulator:
        yield simulator


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
