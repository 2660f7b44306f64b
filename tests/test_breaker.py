"""The circuit breaker: what trips it, failing fast, one probe after the cooldown, shared state
over Redis (two clients, and a real second process)."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections.abc import AsyncIterator, Callable

import pytest

from massgen.backends.base import Backend
from massgen.backends.function import FunctionBackend
from massgen.errors import (
    AuthenticationError,
    BadRequestError,
    CircuitOpen,
    ProviderConnectionError,
    ProviderError,
    ProviderTimeout,
    RateLimited,
    TransportError,
)
from massgen.resilience.breaker import (
    BreakerBackend,
    BreakerPolicy,
    BreakerState,
    CircuitBreaker,
    CircuitState,
    endpoint_key,
    redis_state,
    trips,
)
from massgen.store.redis_client import RedisLease
from massgen.types import ChatMessage, Completion, CompletionRequest, StreamChunk

REDIS_URL = os.environ.get("MASSGEN_TEST_REDIS", "redis://127.0.0.1:6379/0")
REQ = CompletionRequest(messages=(ChatMessage("user", "hi"),))
POLICY = BreakerPolicy(failures=3, cooldown=30.0)


class FakeClock:
    """Seconds that move only when the test says so."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


class Scripted(Backend):
    """Answers "ok", or raises the next scripted error. ``gate`` (when set) holds calls at the
    endpoint until it opens; ``entered`` is set when a call reaches the endpoint."""

    provider = "scripted"

    def __init__(self, errors: list[BaseException] | None = None) -> None:
        super().__init__(model="m")
        self.errors = errors or []
        self.calls = 0
        self.gate: asyncio.Event | None = None
        self.entered = asyncio.Event()

    async def complete(self, request: CompletionRequest) -> Completion:
        self.calls += 1
        self.entered.set()
        if self.gate is not None:
            await self.gate.wait()
        if self.errors:
            raise self.errors.pop(0)
        return Completion(text="ok", model="m")


def guarded(backend: Backend, clock: FakeClock) -> BreakerBackend:
    return BreakerBackend(backend, CircuitBreaker("scripted:test", POLICY, clock=clock))


async def fail_times(backend: BreakerBackend, n: int) -> None:
    for _ in range(n):
        with pytest.raises(ProviderError) as info:
            await backend.complete(REQ)
        assert not isinstance(info.value, CircuitOpen)


async def open_circuit(inner: Scripted, wrapped: BreakerBackend) -> None:
    inner.errors += [ProviderError("down", status=503)] * POLICY.failures
    await fail_times(wrapped, POLICY.failures)
    assert wrapped.breaker.state is CircuitState.OPEN


# -- what trips it ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (ProviderError("x", status=500), True),
        (ProviderError("x", status=503), True),
        (RateLimited("overloaded", status=529), True),
        (ProviderError("x", status=408), True),
        (ProviderTimeout("slow"), True),
        (ProviderConnectionError("reset"), True),
        (RateLimited("busy", status=429), False),
        (RateLimited("busy"), False),
        (BadRequestError("bad", status=400), False),
        (AuthenticationError("key", status=401), False),
        (BadRequestError("gone", status=404), False),
        (CircuitOpen("k", retry_after=1.0), False),
        (ValueError("a bug"), False),
    ],
)
def test_what_trips_the_breaker(error: BaseException, expected: bool):
    assert trips(error) is expected


async def test_opens_after_n_consecutive_failures_then_fails_fast():
    clock = FakeClock()
    inner = Scripted([ProviderError("down", status=503)] * 3)
    wrapped = guarded(inner, clock)
    await fail_times(wrapped, 2)
    assert wrapped.breaker.state is CircuitState.CLOSED
    await fail_times(wrapped, 1)
    assert wrapped.breaker.state is CircuitState.OPEN
    clock.now += 10
    for _ in range(5):
        with pytest.raises(CircuitOpen) as info:
            await wrapped.complete(REQ)
    assert inner.calls == 3  # no request while open
    assert info.value.retry_after == pytest.approx(20.0)
    assert info.value.retryable is False and info.value.provider == "scripted"


async def test_only_consecutive_failures_count():
    inner = Scripted([ProviderError("x", status=500)] * 2)
    wrapped = guarded(inner, FakeClock())
    await fail_times(wrapped, 2)
    assert (await wrapped.complete(REQ)).text == "ok"  # resets the count
    inner.errors += [ProviderError("x", status=500)] * 2
    await fail_times(wrapped, 2)
    assert wrapped.breaker.state is CircuitState.CLOSED


@pytest.mark.parametrize(
    "error",
    [
        BadRequestError("bad", status=400),
        AuthenticationError("key", status=401),
        RateLimited("busy", status=429, retry_after=1),
    ],
)
async def test_caller_faults_and_429_never_open_it(error: ProviderError):
    inner = Scripted([error] * 10)
    wrapped = guarded(inner, FakeClock())
    for _ in range(10):
        with pytest.raises(type(error)):
            await wrapped.complete(REQ)
    assert inner.calls == 10 and wrapped.breaker.state is CircuitState.CLOSED


async def test_an_answered_4xx_between_failures_breaks_the_run_of_failures():
    inner = Scripted(
        [ProviderError("x", status=502)] * 2
        + [AuthenticationError("k", status=401)]
        + [ProviderError("x", status=502)] * 2
    )
    wrapped = guarded(inner, FakeClock())
    for _ in range(5):
        with pytest.raises(ProviderError):
            await wrapped.complete(REQ)
    assert wrapped.breaker.state is CircuitState.CLOSED


# -- half-open: one probe --------------------------------------------------------------------


async def test_after_the_cooldown_exactly_one_probe_goes_through_and_its_success_closes():
    clock = FakeClock()
    inner = Scripted()
    wrapped = guarded(inner, clock)
    await open_circuit(inner, wrapped)
    clock.now += POLICY.cooldown - 0.001
    with pytest.raises(CircuitOpen):
        await wrapped.complete(REQ)
    clock.now += 0.001
    inner.gate = asyncio.Event()
    inner.entered.clear()
    probe = asyncio.create_task(wrapped.complete(REQ))
    await inner.entered.wait()  # the probe is at the endpoint, holding the permit
    assert wrapped.breaker.state is CircuitState.HALF_OPEN
    others = await asyncio.wait_for(  # a second probe would hang at the gate: fail instead
        asyncio.gather(*(wrapped.complete(REQ) for _ in range(5)), return_exceptions=True), 5
    )
    assert all(isinstance(o, CircuitOpen) for o in others)
    assert inner.calls == POLICY.failures + 1  # only the probe reached the endpoint
    inner.gate.set()
    assert (await probe).text == "ok"
    assert wrapped.breaker.state is CircuitState.CLOSED
    assert (await wrapped.complete(REQ)).text == "ok"


async def test_a_failed_probe_reopens_for_a_whole_cooldown():
    clock = FakeClock()
    inner = Scripted()
    wrapped = guarded(inner, clock)
    await open_circuit(inner, wrapped)
    clock.now += POLICY.cooldown
    inner.errors.append(ProviderTimeout("still down"))
    with pytest.raises(ProviderTimeout):
        await wrapped.complete(REQ)
    assert wrapped.breaker.state is CircuitState.OPEN
    with pytest.raises(CircuitOpen) as info:
        await wrapped.complete(REQ)
    assert info.value.retry_after == pytest.approx(POLICY.cooldown)
    clock.now += POLICY.cooldown
    assert (await wrapped.complete(REQ)).text == "ok"  # the next probe
    assert wrapped.breaker.state is CircuitState.CLOSED


async def test_a_cancelled_probe_hands_the_permit_back():
    clock = FakeClock()
    inner = Scripted()
    wrapped = guarded(inner, clock)
    await open_circuit(inner, wrapped)
    clock.now += POLICY.cooldown
    inner.gate = asyncio.Event()
    inner.entered.clear()
    probe = asyncio.create_task(wrapped.complete(REQ))
    await inner.entered.wait()
    probe.cancel()
    with pytest.raises(asyncio.CancelledError):
        await probe
    inner.gate.set()
    assert (await wrapped.complete(REQ)).text == "ok"  # a new probe, at once
    assert wrapped.breaker.state is CircuitState.CLOSED


async def test_a_late_success_does_not_close_an_open_circuit():
    clock = FakeClock()
    inner = Scripted()
    wrapped = guarded(inner, clock)
    slow_gate = inner.gate = asyncio.Event()
    slow = asyncio.create_task(wrapped.complete(REQ))  # admitted while closed
    await inner.entered.wait()
    inner.gate = None
    await open_circuit(inner, wrapped)
    slow_gate.set()
    assert (await slow).text == "ok"
    assert wrapped.breaker.state is CircuitState.OPEN
    with pytest.raises(CircuitOpen):
        await wrapped.complete(REQ)
    assert inner.calls == 1 + POLICY.failures


async def test_the_state_seen_follows_every_change():
    clock = FakeClock()
    inner = Scripted()
    wrapped = guarded(inner, clock)
    seen = [wrapped.breaker.state]
    await open_circuit(inner, wrapped)
    seen.append(wrapped.breaker.state)
    with pytest.raises(CircuitOpen):
        await wrapped.complete(REQ)
    seen.append(wrapped.breaker.state)
    clock.now += POLICY.cooldown
    inner.gate, inner.entered = asyncio.Event(), asyncio.Event()
    probe = asyncio.create_task(wrapped.complete(REQ))
    await inner.entered.wait()
    seen.append(wrapped.breaker.state)
    inner.gate.set()
    await probe
    seen.append(wrapped.breaker.state)
    closed, opened, half = CircuitState.CLOSED, CircuitState.OPEN, CircuitState.HALF_OPEN
    assert seen == [closed, opened, opened, half, closed]


# -- streams ---------------------------------------------------------------------------------


class BrokenStream(Backend):
    provider = "scripted"

    def __init__(self) -> None:
        super().__init__(model="m")
        self.calls = 0

    async def stream(self, request: CompletionRequest) -> AsyncIterator[StreamChunk]:
        self.calls += 1
        yield StreamChunk(delta="par")
        raise ProviderConnectionError("dropped mid-stream")


async def test_a_stream_that_drops_counts_as_a_failure():
    inner = BrokenStream()
    wrapped = guarded(inner, FakeClock())
    for _ in range(POLICY.failures):
        with pytest.raises(ProviderConnectionError):
            async for _ in wrapped.stream(REQ):
                pass
    with pytest.raises(CircuitOpen):
        async for _ in wrapped.stream(REQ):
            pass
    assert inner.calls == POLICY.failures


async def test_an_abandoned_probe_stream_hands_the_permit_back():
    clock = FakeClock()
    inner = Scripted()
    wrapped = guarded(inner, clock)
    await open_circuit(inner, wrapped)
    clock.now += POLICY.cooldown
    stream = wrapped.stream(REQ)
    assert (await anext(stream)).delta == "ok"
    await stream.aclose()  # the consumer stops reading: no verdict on the endpoint
    assert wrapped.breaker.state is CircuitState.HALF_OPEN
    assert (await wrapped.complete(REQ)).text == "ok"
    assert wrapped.breaker.state is CircuitState.CLOSED


# -- keys ------------------------------------------------------------------------------------


def test_endpoint_keys_name_the_endpoint_without_secrets():
    class Remote(Backend):
        provider = "openai"

        def __init__(self, base_url: str | None) -> None:
            super().__init__(model="gpt", name="writer")
            self.base_url = base_url

    secret = Remote("https://user:s3cret@api.example.com:8443/v1/?api_key=s3cret#x")
    assert endpoint_key(secret) == "openai:https://api.example.com:8443/v1"
    assert endpoint_key(Remote(None)) == "openai:writer"
    assert endpoint_key(FunctionBackend(lambda r: "x")) == "function:function"


def test_bad_policies_are_config_errors():
    from massgen.errors import ConfigError

    with pytest.raises(ConfigError, match="breaker.failures"):
        BreakerPolicy(failures=0)
    with pytest.raises(ConfigError, match="breaker.cooldown"):
        BreakerPolicy(cooldown=0)


# -- shared over Redis -----------------------------------------------------------------------


@pytest.fixture
async def clients() -> AsyncIterator[Callable[[], RedisLease]]:
    """Leases of their own (each breaker's state is its own, in Redis); closed at the end."""
    made: list[RedisLease] = []

    def make() -> RedisLease:
        made.append(RedisLease(REDIS_URL))
        return made[-1]

    yield make
    for client in made:
        await client.aclose()


def on_redis(
    prefix: str, clock: Callable[[], float], client: RedisLease, policy: BreakerPolicy = POLICY
) -> CircuitBreaker:
    state = redis_state(client, prefix, "scripted:shared")
    return CircuitBreaker("scripted:shared", policy, state=state, clock=clock)


async def test_two_clients_share_one_circuit_and_one_probe(prefix: str, clients):
    clock = FakeClock()
    inner_a, inner_b = Scripted(), Scripted()
    a = BreakerBackend(inner_a, on_redis(prefix, clock, clients()))
    b = BreakerBackend(inner_b, on_redis(prefix, clock, clients()))
    try:
        await open_circuit(inner_a, a)
        with pytest.raises(CircuitOpen) as info:
            await b.complete(REQ)
        assert inner_b.calls == 0 and b.breaker.state is CircuitState.OPEN
        assert info.value.retry_after == pytest.approx(POLICY.cooldown)

        clock.now += POLICY.cooldown
        for inner in (inner_a, inner_b):
            inner.gate = asyncio.Event()
            inner.entered.clear()
        calls = [asyncio.create_task(w.complete(REQ)) for w in (a, b, a, b)]
        pending: set[asyncio.Task[Completion]] = set(calls)
        while len(pending) > 1:  # all but the gated probe fail fast; 5 s guards a hang
            done, pending = await asyncio.wait(pending, timeout=5, return_when="FIRST_COMPLETED")
            assert done, f"{len(pending)} calls still running: more than one probe"
        for inner in (inner_a, inner_b):
            assert inner.gate is not None
            inner.gate.set()
        outcomes = await asyncio.gather(*calls, return_exceptions=True)
        assert sum(not isinstance(o, BaseException) for o in outcomes) == 1
        assert sum(isinstance(o, CircuitOpen) for o in outcomes) == 3
        assert inner_a.calls + inner_b.calls == POLICY.failures + 1

        assert await a.breaker.refresh() is CircuitState.CLOSED
        assert await b.breaker.refresh() is CircuitState.CLOSED
        assert (await b.complete(REQ)).text == "ok"
    finally:
        await a.aclose()
        await b.aclose()


async def test_a_failed_probe_over_redis_reopens_for_everyone(prefix: str, clients):
    clock = FakeClock()
    inner_a, inner_b = Scripted(), Scripted()
    a = BreakerBackend(inner_a, on_redis(prefix, clock, clients()))
    b = BreakerBackend(inner_b, on_redis(prefix, clock, clients()))
    try:
        await open_circuit(inner_a, a)
        clock.now += POLICY.cooldown
        inner_b.errors.append(ProviderError("x", status=500))
        with pytest.raises(ProviderError):
            await b.complete(REQ)  # b's probe fails
        with pytest.raises(CircuitOpen) as info:
            await a.complete(REQ)
        assert info.value.retry_after == pytest.approx(POLICY.cooldown)
        assert inner_a.calls == POLICY.failures and inner_b.calls == 1
    finally:
        await a.aclose()
        await b.aclose()


CHILD = """
import asyncio, sys
from massgen.backends.function import FunctionBackend
from massgen.errors import ProviderError
from massgen.resilience.breaker import (
    BreakerBackend, BreakerPolicy, CircuitBreaker, redis_state,
)
from massgen.store.redis_client import RedisLease
from massgen.types import ChatMessage, Completion, CompletionRequest, StreamChunk

def down(request):
    raise ProviderError("down", status=503)

async def main(url, prefix, key, failures):
    client = RedisLease(url)
    state = redis_state(client, prefix, key)
    breaker = CircuitBreaker(key, BreakerPolicy(failures=failures, cooldown=60), state=state)
    backend = BreakerBackend(FunctionBackend(down), breaker)
    request = CompletionRequest(messages=(ChatMessage("user", "hi"),))
    for _ in range(failures):
        try:
            await backend.complete(request)
        except ProviderError:
            pass
    print(breaker.state.value)
    await client.aclose()

asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])))
"""


async def test_a_circuit_opened_by_another_process_fails_fast_here(prefix: str, clients):
    key = "scripted:shared"
    inner = Scripted()
    here = BreakerBackend(
        inner,
        CircuitBreaker(
            key, BreakerPolicy(failures=3, cooldown=60), state=redis_state(clients(), prefix, key)
        ),
    )
    try:
        assert (await here.complete(REQ)).text == "ok"
        child = await asyncio.create_subprocess_exec(
            sys.executable, "-c", CHILD, REDIS_URL, prefix, key, "3",
            stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, _ = await child.communicate()
        assert child.returncode == 0 and out.decode().strip() == "open"
        assert await here.breaker.refresh() is CircuitState.OPEN
        with pytest.raises(CircuitOpen) as info:
            await here.complete(REQ)
        assert inner.calls == 1
        assert info.value.retry_after is not None and 0 < info.value.retry_after <= 60
    finally:
        await here.aclose()


async def test_an_unreachable_redis_keeps_the_circuit_in_this_process(
    caplog: pytest.LogCaptureFixture,
):
    client = RedisLease("redis://127.0.0.1:1/0", retries=1)  # nothing listens there
    state = redis_state(client, "test:", "k")
    breaker = CircuitBreaker("k", BreakerPolicy(failures=2), state=state)
    inner = Scripted([ProviderError("down", status=503), ProviderError("down", status=503)])
    wrapped = BreakerBackend(inner, breaker)
    try:
        with caplog.at_level(logging.WARNING, "massgen.resilience.shared"):
            for _ in range(2):  # the calls go through: Redis is not a reason to fail them
                with pytest.raises(ProviderError, match="down"):
                    await wrapped.complete(REQ)
            with pytest.raises(CircuitOpen):  # and the circuit still opens, here
                await wrapped.complete(REQ)
        assert inner.calls == 2
        assert state.active  # type: ignore[attr-defined]
        assert caplog.text.count("Redis unreachable") == 1
    finally:
        await client.aclose()


class Forgetful(BreakerState):
    """Admits calls but cannot record them, as Redis failing between two steps."""

    async def record(self, now: float | None, threshold: int) -> float | None:
        raise TransportError("circuit breaker state in Redis: ConnectionError")


async def test_an_answer_survives_a_store_that_cannot_record_it(caplog: pytest.LogCaptureFixture):
    wrapped = BreakerBackend(Scripted(), CircuitBreaker("k", state=Forgetful()))
    with caplog.at_level(logging.WARNING, "massgen.resilience.breaker"):
        assert (await wrapped.complete(REQ)).text == "ok"
    assert "circuit k: outcome not recorded" in caplog.text
