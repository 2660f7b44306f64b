"""Fixtures of the mas tests: the shared Redis with a unique prefix per test and fast bus
timings (private redis-servers, ``redis_server``, come from the suite's conftest)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from massgen.mas import Agent, MASService

from .helpers import SHARED_REDIS, Bus, clean_prefix


@pytest.fixture
async def prefix() -> AsyncIterator[str]:
    """A key prefix no other test uses; its keys are deleted afterwards."""
    p = f"test:{uuid.uuid4().hex[:10]}:"
    yield p
    await clean_prefix(SHARED_REDIS, p)


@pytest.fixture(params=["memory", "redis"])
async def bus(request: pytest.FixtureRequest, prefix: str) -> AsyncIterator[Bus]:
    """The contract suite's fixture: every test using it runs on both transports."""
    b = Bus(request.param, prefix)
    try:
        yield b
    finally:
        await b.close()


@pytest.fixture
async def redis_bus(prefix: str) -> AsyncIterator[Bus]:
    b = Bus("redis", prefix)
    try:
        yield b
    finally:
        await b.close()


@pytest.fixture
async def seed_defaults(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[str]:
    """For code written the seed framework's way (no URL, no prefix): agents and services
    use the default Redis (``$MASSGEN_REDIS_URL`` unset) under a key prefix of this test's
    own, and agents a test left running (an assertion failed before ``stop()``) are
    stopped after it. Yields the prefix."""
    monkeypatch.delenv("MASSGEN_REDIS_URL", raising=False)
    monkeypatch.delenv("MASSGEN_SECRET", raising=False)
    prefix = f"test:seed:{uuid.uuid4().hex[:10]}:"
    for init in (Agent.__init__, MASService.__init__):
        assert init.__kwdefaults__ is not None and "prefix" in init.__kwdefaults__
        monkeypatch.setitem(init.__kwdefaults__, "prefix", prefix)
    started: list[Agent] = []
    start = Agent.start

    async def recorded_start(self: Agent) -> None:
        started.append(self)
        await start(self)

    monkeypatch.setattr(Agent, "start", recorded_start)
    yield prefix
    for agent in started:
        await agent.stop()
    await clean_prefix(SHARED_REDIS, prefix)
