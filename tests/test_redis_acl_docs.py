"""The ACL line docs/redis.md gives is enough for everything that uses Redis.

The line is read out of the page itself and applied to a private redis-server; then the bus
(two agents, request and reply, plain and signed messages, discovery, state, the service's
check, a dead letter), the store, the shared rate limit and the shared circuit breaker run as
that user. A command the line forgets (a script calling ``TIME``, a list command of the
store) fails here, as it would for a user who followed the docs.
"""

from __future__ import annotations

import asyncio
import re
import shlex
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from massgen.errors import ProviderError
from massgen.mas import Agent, MASService, RedisTransport
from massgen.resilience.breaker import (
    BreakerBackend,
    BreakerPolicy,
    CircuitBreaker,
    CircuitState,
    redis_state,
)
from massgen.resilience.ratelimit import RateLimit, RedisLimiter
from massgen.store.redis_client import RedisLease, RedisStore

from .mas.helpers import FAST, Recorder, RedisServer

DOC = Path(__file__).resolve().parent.parent / "docs" / "redis.md"
PASSWORD = "acl-canary-pw-8675309"


def documented_acl() -> list[str]:
    """The arguments of the one ``ACL SETUSER`` line of docs/redis.md."""
    found = re.findall(r"`ACL SETUSER ([^`]+)`", DOC.read_text())
    assert len(found) == 1, "docs/redis.md should give exactly one ACL SETUSER line"
    return shlex.split(found[0])


def test_the_documented_line_is_parsed() -> None:
    user, *rules = documented_acl()
    assert user and any(r.startswith(">") for r in rules)
    assert any(r.startswith("~") for r in rules)


@pytest.fixture
async def acl_url(tmp_path: Path) -> AsyncIterator[str]:
    """A private redis-server with the documented user; its URL as that user."""
    import redis.asyncio as aioredis

    server = RedisServer(tmp_path)
    await asyncio.to_thread(server.start)
    try:
        user, *rules = documented_acl()
        rules = [">" + PASSWORD if r.startswith(">") else r for r in rules]
        admin = aioredis.Redis(host="127.0.0.1", port=server.port)
        try:
            await admin.execute_command("ACL", "SETUSER", user, "reset", *rules)
            # Only the documented user may do anything from here on.
            await admin.execute_command("ACL", "SETUSER", "default", "off")
        finally:
            await admin.aclose()
        yield f"redis://{user}:{PASSWORD}@127.0.0.1:{server.port}/0"
    finally:
        await asyncio.to_thread(server.stop)


async def test_the_default_user_is_really_off(acl_url: str) -> None:
    """So every other test here runs as the documented user, not as `default`."""
    import redis.asyncio as aioredis
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff
    from redis.exceptions import AuthenticationError, ResponseError

    port = urlsplit(acl_url).port
    # asked once: redis-py retries a refused login with backoff (~4 s) by default
    client = aioredis.Redis(host="127.0.0.1", port=port, retry=Retry(NoBackoff(), 0))
    try:
        with pytest.raises((AuthenticationError, ResponseError)):
            await client.ping()
    finally:
        await client.aclose()


class Failing(Agent):
    async def on_message(self, message: Any) -> None:
        raise RuntimeError("always")


@pytest.mark.parametrize("secret", [None, "shared-secret"])
async def test_the_bus_runs_as_the_documented_user(acl_url: str, secret: str | None) -> None:
    a = Recorder("a", capabilities=["echo"], redis_url=acl_url, settings=FAST, secret=secret)
    b = Agent("b", redis_url=acl_url, settings=FAST, secret=secret)
    bad = Failing("bad", redis_url=acl_url, settings=FAST, secret=secret)
    agents = [a, b, bad]
    try:
        for agent in agents:
            await agent.start()
        reply = await b.request("a", {"n": 1}, timeout=10)
        assert getattr(reply, "payload", reply) == {"echo": {"n": 1}}
        got = a.expect(2)
        await b.send("a", {"n": 2})
        async with asyncio.timeout(10):
            await got.wait()
        assert [r["id"] for r in await b.discover(["echo"])] == ["a"]
        await a.update_state({"seen": 2})
        await b.send("bad", {"n": 3})  # fails every delivery: dead-lettered
        transport = RedisTransport(acl_url)
        try:
            service = MASService(transport=transport, settings=FAST)
            async with asyncio.timeout(15):
                while not await transport.dead_letters("bad"):
                    await service.check()  # stats, reaping and reclaiming, as the user
                    await asyncio.sleep(0.05)
            await transport.trim("a")
            assert (await transport.load_state("a")) != {}
        finally:
            await transport.close()
    finally:
        for agent in agents:
            await agent.stop()


async def test_gateway_mode_runs_as_the_documented_user(acl_url: str) -> None:
    from massgen.mas import GatewayService

    async with GatewayService(redis_url=acl_url) as gateway:
        a = Recorder("a", redis_url=acl_url, settings=FAST, use_gateway=True)
        b = Agent("b", redis_url=acl_url, settings=FAST, use_gateway=True)
        try:
            for agent in (a, b):
                agent.set_gateway(gateway)
                await agent.start()
            await gateway.auth_manager().allow_bidirectional("a", "b")
            await gateway.set_limits("b", per_minute=50)
            reply = await b.request("a", {"n": 1}, timeout=10)
            assert reply.payload == {"echo": {"n": 1}}
            assert [e["decision"] for e in await gateway.audit_log()] == ["ALLOWED"] * 2
        finally:
            for agent in (a, b):
                await agent.stop()


async def test_store_limiter_and_breaker_run_as_the_documented_user(acl_url: str) -> None:
    store = RedisStore(acl_url)
    try:
        await store.set("k", b"v", ttl=60)
        assert await store.get("k") == b"v"
        assert await store.count("") == 1
        for i in range(5):
            await store.append("log", str(i).encode())
        await store.trim("log", keep_last=2)
        assert await store.read("log") == [b"3", b"4"]
        assert await store.length("log") == 2
        assert await store.delete("k")
        assert await store.delete_prefix("") == 0
    finally:
        await store.aclose()

    client = RedisLease(acl_url)
    limiter = RedisLimiter(client, "massgen:", "acl", RateLimit(rpm=2, tpm=1000, window=60))
    grants = [await limiter.acquire(10) for _ in range(2)]
    assert len({g.id for g in grants}) == 2
    await limiter.settle(grants[0], 20)
    assert not limiter.fallback.active  # every step ran in Redis, as the documented user

    answers: list[BaseException | str] = [ProviderError("down", status=503)] * 2 + ["ok"]

    def down(request: Any) -> Any:
        answer = answers.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        return answer

    from massgen.backends.function import FunctionBackend
    from massgen.types import ChatMessage, CompletionRequest

    key, now = "acl:breaker", [1000.0]
    state = redis_state(client, "massgen:", key)
    policy = BreakerPolicy(failures=2, cooldown=60)
    breaker = CircuitBreaker(key, policy, state=state, clock=lambda: now[0])
    backend = BreakerBackend(FunctionBackend(down), breaker)
    request = CompletionRequest(messages=(ChatMessage("user", "hi"),))
    try:
        for _ in range(2):
            with pytest.raises(ProviderError):
                await backend.complete(request)
        assert await breaker.refresh() is CircuitState.OPEN
        now[0] += 60
        assert (await backend.complete(request)).text == "ok"  # the probe closes it
        assert await breaker.refresh() is CircuitState.CLOSED
        assert not state.active  # type: ignore[attr-defined]
    finally:
        await client.aclose()
