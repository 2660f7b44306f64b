"""Rate limits: requests and tokens per window on a fake clock, the bound on requests in
flight, and one limit shared over Redis by two clients and by two real processes."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable

import pytest

from massgen.backends.base import Backend
from massgen.errors import ConfigError, TransportError
from massgen.resilience.ratelimit import (
    Grant,
    Limiter,
    RateLimit,
    RateLimitedBackend,
    RedisLimiter,
)
from massgen.store.redis_client import RedisLease
from massgen.types import ChatMessage, Completion, CompletionRequest, StreamChunk, Usage

REDIS_URL = os.environ.get("MASSGEN_TEST_REDIS", "redis://127.0.0.1:6379/0")


def request(tokens: int = 100) -> CompletionRequest:
    """A request estimated at exactly ``tokens``: an empty message costs 4."""
    return CompletionRequest(messages=(ChatMessage("user", ""),), max_tokens=tokens - 4)


class FakeClock:
    """Time that moves only by sleeping: ``sleep`` jumps the clock forward at once."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


class Counting(Backend):
    """Records when (on ``clock``) each call reached the endpoint; reports ``used`` tokens
    (or nothing when ``used`` is None)."""

    provider = "counting"

    def __init__(self, clock: Callable[[], float], used: int | None = None) -> None:
        super().__init__(model="m")
        self.clock = clock
        self.used = used
        self.times: list[float] = []

    def _answer(self) -> Completion:
        usage = Usage() if self.used is None else Usage(self.used // 2, self.used - self.used // 2)
        return Completion(text="ok", model="m", usage=usage)

    async def complete(self, request: CompletionRequest) -> Completion:
        self.times.append(self.clock())
        return self._answer()

    async def stream(self, request: CompletionRequest) -> AsyncIterator[StreamChunk]:
        self.times.append(self.clock())
        yield StreamChunk(delta="ok")
        yield StreamChunk(completion=self._answer())


Make = Callable[[RateLimit, FakeClock], Limiter]


@pytest.fixture(params=["memory", "redis"])
async def make(request: pytest.FixtureRequest, prefix: str) -> AsyncIterator[Make]:
    """Builds limiters on a fake clock: both kinds must behave alike, to the microsecond."""
    client = RedisLease(REDIS_URL)

    def build(limit: RateLimit, clock: FakeClock) -> Limiter:
        if request.param == "memory":
            return Limiter(limit, clock=clock, sleep=clock.sleep)
        key = uuid.uuid4().hex[:8]
        return RedisLimiter(client, prefix, key, limit, clock=clock, sleep=clock.sleep)

    yield build
    await client.aclose()


def limited(
    make: Make, limit: RateLimit, used: int | None = None
) -> tuple[RateLimitedBackend, FakeClock]:
    clock = FakeClock()
    return RateLimitedBackend(Counting(clock, used), make(limit, clock)), clock


def times(backend: RateLimitedBackend) -> list[float]:
    assert isinstance(backend.inner, Counting)
    return backend.inner.times


# -- requests per minute ---------------------------------------------------------------------


async def test_the_request_over_rpm_waits_until_the_window_allows(make: Make):
    backend, clock = limited(make, RateLimit(rpm=3))
    await asyncio.gather(*(backend.complete(request()) for _ in range(4)))
    assert times(backend) == [0.0, 0.0, 0.0, 60.0]
    assert clock.sleeps == [60.0]  # one wait, exactly as long as needed


async def test_the_window_slides_with_the_oldest_request(make: Make):
    backend, clock = limited(make, RateLimit(rpm=3))
    for at in (0.0, 10.0, 20.0):
        clock.now = at
        await backend.complete(request())
    clock.now = 30.0
    await backend.complete(request())  # waits for the one at 0 to leave the window
    await backend.complete(request())  # ... then for the one at 10
    assert times(backend) == [0.0, 10.0, 20.0, 60.0, 70.0]


async def test_no_window_of_a_minute_ever_holds_more_than_rpm(make: Make):
    backend, _ = limited(make, RateLimit(rpm=5))
    await asyncio.gather(*(backend.complete(request()) for _ in range(23)))
    stamps = times(backend)
    assert len(stamps) == 23
    assert all(stamps[i + 5] - stamps[i] >= 60.0 for i in range(len(stamps) - 5))
    assert stamps[-1] == 240.0  # and no slower than that: 5 per minute, bursts allowed


# -- tokens per minute -----------------------------------------------------------------------


async def test_tokens_per_minute_are_honoured(make: Make):
    backend, _ = limited(make, RateLimit(tpm=1000), used=None)  # usage unknown: estimates stand
    sizes = [400, 400, 300, 100]
    await asyncio.gather(*(backend.complete(request(n)) for n in sizes))
    assert times(backend) == [0.0, 0.0, 60.0, 60.0]


def test_a_request_without_max_tokens_is_charged_output_tokens():
    limit = RateLimit(tpm=1000, output_tokens=496)
    assert limit.estimate(CompletionRequest(messages=(ChatMessage("user", ""),))) == 500
    assert limit.estimate(request(77)) == 77


def test_tool_declarations_and_call_arguments_are_charged():
    from massgen.types import ToolCall, ToolSpec

    limit = RateLimit(tpm=100_000, output_tokens=0)
    plain = CompletionRequest(messages=(ChatMessage("user", "hi"),))
    spec = ToolSpec("lookup", "find a thing", {"type": "object", "properties": {"q": {}}})
    call = ChatMessage("assistant", "", tool_calls=(ToolCall("c1", "lookup", {"q": "x" * 400}),))
    with_tools = CompletionRequest(messages=(*plain.messages, call), tools=(spec,))
    assert limit.estimate(with_tools) > limit.estimate(plain) + 100  # the 400-char argument


async def test_the_charge_is_corrected_to_reported_usage(make: Make):
    backend, _ = limited(make, RateLimit(tpm=1000), used=50)  # estimated 500, used 50
    await asyncio.gather(*(backend.complete(request(500)) for _ in range(4)))
    assert times(backend) == [0.0, 0.0, 0.0, 0.0]


async def test_a_charge_corrected_upwards_delays_the_next_request(make: Make):
    backend, _ = limited(make, RateLimit(tpm=1000), used=900)  # estimated 200, used 900
    await backend.complete(request(200))
    await backend.complete(request(200))
    assert times(backend) == [0.0, 60.0]


async def test_streams_are_limited_and_corrected_too(make: Make):
    backend, _ = limited(make, RateLimit(tpm=1000), used=100)
    for _ in range(3):
        chunks = [c async for c in backend.stream(request(600))]
        assert chunks[-1].completion is not None
    assert times(backend) == [0.0, 0.0, 0.0]  # 100 + 100 + 600 fit


async def test_a_request_bigger_than_tpm_waits_for_an_empty_window_not_forever(make: Make):
    backend, _ = limited(make, RateLimit(tpm=100))
    await backend.complete(request(50))
    await backend.complete(request(5000))
    await backend.complete(request(10))
    assert times(backend) == [0.0, 60.0, 120.0]


async def test_rpm_and_tpm_together_wait_for_the_later_of_the_two(make: Make):
    clock = FakeClock()
    limiter = make(RateLimit(rpm=2, tpm=1000), clock)
    first = await limiter.acquire(900)
    clock.now = 30.0
    await limiter.acquire(10)
    third = await limiter.acquire(10)  # rpm: wait for 60; tpm: fits already
    assert (first.at, third.at) == (0.0, 60.0)
    clock.now = 70.0
    fourth = await limiter.acquire(995)  # tpm: wait for the 10s at 30 and 60 to leave
    assert fourth.at == 120.0


async def test_waiters_are_served_in_order(make: Make):
    clock = FakeClock()
    limiter = make(RateLimit(tpm=100), clock)
    await limiter.acquire(100)
    big, small = limiter.acquire(100), limiter.acquire(1)
    grants = await asyncio.gather(big, small)
    assert [g.at for g in grants] == [60.0, 120.0]  # the small one does not jump the queue


async def test_without_limits_nothing_waits_or_is_logged(make: Make):
    backend, clock = limited(make, RateLimit())
    await asyncio.gather(*(backend.complete(request()) for _ in range(100)))
    assert clock.sleeps == [] and len(times(backend)) == 100


def test_bad_limits_are_config_errors():
    with pytest.raises(ConfigError, match="rate_limit.rpm"):
        RateLimit(rpm=0)
    with pytest.raises(ConfigError, match="rate_limit.max_in_flight"):
        RateLimit(max_in_flight=0)
    with pytest.raises(ConfigError, match="rate_limit.window"):
        RateLimit(window=0)


# -- requests in flight ----------------------------------------------------------------------


class Held(Backend):
    """Every call waits at the endpoint until the test releases it."""

    provider = "held"

    def __init__(self) -> None:
        super().__init__(model="m")
        self.in_flight = 0
        self.most = 0
        self.releases: list[asyncio.Event] = []
        self.arrived = asyncio.Condition()

    async def complete(self, request: CompletionRequest) -> Completion:
        release = asyncio.Event()
        async with self.arrived:
            self.in_flight += 1
            self.most = max(self.most, self.in_flight)
            self.releases.append(release)
            self.arrived.notify_all()
        await release.wait()
        self.in_flight -= 1
        return Completion(text="ok", model="m")

    async def wait_arrivals(self, n: int) -> None:
        async with self.arrived:
            await self.arrived.wait_for(lambda: len(self.releases) >= n)


@pytest.mark.parametrize(("bound", "calls"), [(2, 6), (None, 6)])
async def test_requests_in_flight_never_exceed_the_bound(bound: int | None, calls: int):
    inner = Held()
    backend = RateLimitedBackend(inner, Limiter(RateLimit(max_in_flight=bound)))
    tasks = [asyncio.create_task(backend.complete(request())) for _ in range(calls)]
    expected = bound or calls
    await inner.wait_arrivals(expected)
    assert inner.in_flight == expected
    for n in range(calls):  # release one at a time; the next waiter takes its slot
        inner.releases[n].set()
        await inner.wait_arrivals(min(calls, expected + n + 1))
    await asyncio.gather(*tasks)
    assert inner.most == expected and inner.in_flight == 0


# -- shared over Redis -----------------------------------------------------------------------


async def test_two_clients_share_one_limit(prefix: str):
    limit = RateLimit(rpm=2, window=0.3)
    clients = RedisLease(REDIS_URL), RedisLease(REDIS_URL)
    a, b = (RedisLimiter(c, prefix, "shared", limit) for c in clients)
    try:
        grants = await asyncio.gather(*(lim.acquire(1) for lim in (a, b) * 3))
    finally:
        for c in clients:
            await c.aclose()
    at = sorted(g.at for g in grants)  # the Redis server's clock
    assert all(at[i + 2] - at[i] >= 0.3 for i in range(len(at) - 2))
    assert at[1] - at[0] < 0.3  # a burst up to the limit is not spread out


async def test_the_redis_log_keeps_the_corrected_charges_and_expires(prefix: str):
    clock = FakeClock()
    client = RedisLease(REDIS_URL)
    limiter = RedisLimiter(
        client, prefix, "tokens", RateLimit(tpm=100), clock=clock, sleep=clock.sleep
    )
    key = f"{prefix}ratelimit:tokens"
    try:
        first = await limiter.acquire(60)
        await limiter.settle(first, 10)
        await limiter.acquire(60)
        charged = [int(m.rsplit(b":", 1)[1]) for m in await client.client.zrange(key, 0, -1)]
        assert sorted(charged) == [10, 60]  # the first charge corrected to its usage
        assert 0 < await client.client.pttl(key) <= 61_000  # an unused log expires
        assert clock.sleeps == []  # 70 of 100: no wait
        await limiter.acquire(35)  # 105 would not fit: waits for the first to leave
        assert clock.sleeps == [60.0]
        clock.now = 200.0
        await limiter.acquire(5)  # everything left the window
        assert await client.client.zcard(key) == 1
    finally:
        await client.aclose()


async def test_an_unreachable_redis_counts_in_this_process_with_one_warning(
    caplog: pytest.LogCaptureFixture,
):
    class Waited(Exception):
        pass

    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)
        raise Waited

    client = RedisLease("redis://127.0.0.1:1/0", retries=1)  # nothing listens there
    limiter = RedisLimiter(client, "test:", "k", RateLimit(rpm=1), sleep=sleep)
    try:
        with caplog.at_level(logging.WARNING, "massgen.resilience.shared"):
            grant = await limiter.acquire(1)  # not failed for Redis: granted here
            await limiter.settle(grant, 3)
            with pytest.raises(Waited):
                await limiter.acquire(1)  # and the limit still holds, in this process
        assert waits and 59 < waits[0] <= 60
        assert limiter.fallback.active
        assert caplog.text.count("Redis unreachable") == 1
    finally:
        await client.aclose()


async def test_settling_a_grant_made_without_limits_is_a_no_op(prefix: str):
    client = RedisLease(REDIS_URL)
    limiter = RedisLimiter(client, prefix, "none", RateLimit())
    try:
        grant = await limiter.acquire(10)
        assert grant == Grant("", 10, 0.0)
        await limiter.settle(grant, 5)
        assert await client.client.exists(f"{prefix}ratelimit:none") == 0
    finally:
        await client.aclose()


CHILD = """
import asyncio, json, sys, time
from massgen.backends.function import FunctionBackend
from massgen.resilience.ratelimit import RateLimit, RateLimitedBackend, RedisLimiter
from massgen.store.redis_client import RedisLease
from massgen.types import ChatMessage, CompletionRequest

url, prefix, rpm, window, calls = sys.argv[1], sys.argv[2], *map(float, sys.argv[3:6])
stamps = []

def respond(request):
    stamps.append(time.time())
    return "ok"

async def main():
    client = RedisLease(url)
    limiter = RedisLimiter(client, prefix, "shared", RateLimit(rpm=int(rpm), window=window))
    backend = RateLimitedBackend(FunctionBackend(respond), limiter)
    request = CompletionRequest(messages=(ChatMessage("user", "hi"),))
    await asyncio.gather(*(backend.complete(request) for _ in range(int(calls))))
    await client.aclose()

print("ready", flush=True)
sys.stdin.readline()  # start together with the other process
asyncio.run(main())
print(json.dumps(stamps), flush=True)
"""


async def test_two_processes_sharing_a_limit_never_exceed_it_together(prefix: str):
    rpm, window, calls = 3, 0.5, 6
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            CHILD,
            REDIS_URL,
            prefix,
            str(rpm),
            str(window),
            str(calls),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        for _ in range(2)
    ]
    for p in procs:
        assert p.stdout is not None
        assert (await p.stdout.readline()).strip() == b"ready"
    outs = await asyncio.gather(*(p.communicate(b"go\n") for p in procs))
    assert all(p.returncode == 0 for p in procs)
    per_process = [json.loads(out) for out, _ in outs]
    assert all(len(s) == calls for s in per_process)
    stamps = sorted(per_process[0] + per_process[1])
    # Any ``rpm + 1`` calls span at least a window. The tolerance covers the gap between the
    # grant (Redis clock) and the call (this clock); unshared limits would fail by a window.
    tolerance = 0.1
    assert all(stamps[i + rpm] - stamps[i] >= window - tolerance for i in range(len(stamps) - rpm))
    assert time.time() - stamps[-1] < 60  # sanity: these are wall-clock times of this run


class Forgetful(Limiter):
    async def settle(self, grant: Grant, tokens: int) -> None:
        raise TransportError("rate limit log in Redis: ConnectionError")


async def test_an_answer_survives_a_limiter_that_cannot_settle(caplog: pytest.LogCaptureFixture):
    clock = FakeClock()
    backend = RateLimitedBackend(Counting(clock, used=7), Forgetful(RateLimit(rpm=5)))
    with caplog.at_level(logging.WARNING, "massgen.resilience.ratelimit"):
        assert (await backend.complete(request())).text == "ok"
    assert "usage not recorded" in caplog.text
