"""R23: a Redis restart under a run whose circuit breaker and rate limit live in that Redis.

A private redis-server is stopped (SIGKILL or SIGTERM) between turns of a run of many turns,
left down for a moment and started again on the same port. The turns go through the real
stack (YAML config, rate limit, breaker, the OpenAI adapter) to the provider simulator. None
may fail because of the restart, and after it the shared state is in the new Redis again.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable

import pytest

from massgen.config import loads
from massgen.orchestrator import Orchestrator
from tests.mas.helpers import RedisServer
from tests.sim.simulator import ProviderSimulator

TURNS = 60
DOWN_AFTER = 20  # turns done before Redis goes away
OUTAGE = 1.0  # seconds Redis stays down: the fault injected, not a wait for a condition


def team(sim: ProviderSimulator, url: str) -> str:
    return f"""\
redis: {{url: '{url}', prefix: 'restart:'}}
backends:
  shared:
    type: openai
    model: gpt-4o-mini
    base_url: '{sim.openai_base_url}'
    api_key: x
    timeout: 10
    rate_limit: {{rpm: 100000, tpm: 100000000}}
    breaker: {{failures: 3, cooldown: 30}}
agents:
  - {{name: ada, backend: shared}}
orchestrator: {{strategy: parallel, error_strategy: fail_fast, cache: {{enabled: false}}}}
"""


def stop(server: RedisServer, how: signal.Signals) -> None:
    assert server.proc is not None
    server.proc.send_signal(how)
    server.proc.wait(timeout=10)
    server.proc = None


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGTERM], ids=["kill", "term"])
async def test_a_redis_restart_fails_no_turn(
    sim: ProviderSimulator,
    redis_server: Callable[..., RedisServer],
    how: signal.Signals,
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = redis_server()
    orchestrator = Orchestrator.from_config(loads(team(sim, server.url)))
    outcomes: list[str] = []
    reached = asyncio.Event()

    async def turns() -> None:
        for i in range(TURNS):
            try:
                result = await orchestrator.arun(f"Question {i}?")
                outcomes.append(result.status)
            except Exception as e:  # a failed turn is what this test looks for
                outcomes.append(f"{type(e).__name__}: {e}")
            if len(outcomes) == DOWN_AFTER:
                reached.set()

    caplog.set_level(logging.WARNING)
    async with orchestrator:
        runner = asyncio.create_task(turns())
        await asyncio.wait_for(reached.wait(), 30)
        stop(server, how)
        done_before = len(outcomes)
        await asyncio.sleep(OUTAGE)
        await asyncio.to_thread(server.start)
        await asyncio.wait_for(runner, 60)

    assert done_before < TURNS  # the restart happened mid-run
    assert outcomes == ["done"] * TURNS, [o for o in outcomes if o != "done"]
    assert len(sim.requests) == TURNS
    assert "Redis unreachable" not in caplog.text  # ridden out by reconnecting, not local
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(server.url)
    try:  # the limit is counted in the new Redis again
        assert [k async for k in client.scan_iter(match="restart:ratelimit:*")]
    finally:
        await client.aclose()


async def test_the_guards_share_the_process_client_and_give_it_back(
    sim: ProviderSimulator, redis_server: Callable[..., RedisServer]
) -> None:
    import redis.asyncio as aioredis

    from massgen.store.redis_client import release_client, shared_client

    server = redis_server()
    async with Orchestrator.from_config(loads(team(sim, server.url))) as orchestrator:
        assert (await orchestrator.arun("Question?")).status == "done"
        lease, shared = orchestrator.guards["ada"].redis, shared_client(server.url)
        assert lease is not None and lease.client is shared  # the process's one client
        await release_client(shared)
    probe = aioredis.Redis.from_url(server.url)
    try:  # the run left no connection open: the probe's is the only one
        assert [c["name"] for c in await probe.client_list()] == [""]
    finally:
        await probe.aclose()


async def test_a_longer_outage_counts_here_then_shares_again(
    redis_server: Callable[..., RedisServer], caplog: pytest.LogCaptureFixture
) -> None:
    """Past the client's retries, the limit is counted in this process (a warning), and in
    Redis again once it is back (another warning); no request fails meanwhile."""
    from massgen.resilience.ratelimit import RateLimit, RedisLimiter
    from massgen.store.redis_client import RedisLease

    server = redis_server()
    client = RedisLease(server.url, retries=1)  # a short budget: the outage outlasts it
    limiter = RedisLimiter(client, "longer:", "k", RateLimit(rpm=1000))
    limiter.fallback.hold = 0.0  # try Redis again at once (10 s by default)
    try:
        with caplog.at_level(logging.WARNING, "massgen.resilience.shared"):
            assert (await limiter.acquire(1)).id
            stop(server, signal.SIGKILL)
            down = await limiter.acquire(1)  # counted here
            assert "Redis unreachable" in caplog.text and "Redis is back" not in caplog.text
            await asyncio.to_thread(server.start)
            up = await limiter.acquire(1)  # and in Redis again
        assert down.id and up.id
        assert "Redis unreachable" in caplog.text and "Redis is back" in caplog.text
        assert (
            await client.client.zcard("longer:ratelimit:k") == 1
        )  # the new Redis holds the last one
    finally:
        await client.aclose()
