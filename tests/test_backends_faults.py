"""Every provider fault, through every adapter and client, lands as our own error after ONE
request.

The simulator serves the real wire protocols on loopback, so these run the vendor SDKs (and
massgen's own OpenAI client) for real: if a client retried behind our back,
``sim.stats.requests`` would show it. OpenAI runs twice, once per client, to prove both map
every fault the same way.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import cast

import pytest

from massgen.backends import Backend, create_backend
from massgen.errors import (
    AuthenticationError,
    BadRequestError,
    ProviderConnectionError,
    ProviderError,
    ProviderTimeout,
    RateLimited,
)
from massgen.types import ChatMessage, CompletionRequest, StreamChunk
from tests.sim.sim_types import Drop, Fault, Hang, Reply, Text
from tests.sim.simulator import ProviderSimulator

KEY = "sk-canary-0123456789abcdef"

# id -> (backend type, model, simulator URL attribute, client)
PROVIDERS: dict[str, tuple[str, str, str, str | None]] = {
    "openai-http": ("openai", "gpt-4o-mini", "openai_base_url", "http"),
    "openai-sdk": ("openai", "gpt-4o-mini", "openai_base_url", "sdk"),
    "anthropic": ("anthropic", "claude-sonnet-5", "anthropic_base_url", None),
    "google": ("google", "gemini-2.5-flash", "gemini_base_url", None),
}

REQUEST = CompletionRequest(messages=(ChatMessage("user", "What is the capital of France?"),))


def build(kind: str, sim: ProviderSimulator, timeout: float = 5.0) -> Backend:
    type_, model, url_attr, client = PROVIDERS[kind]
    return create_backend(
        type_,
        model=model,
        api_key=KEY,
        base_url=getattr(sim, url_attr),
        timeout=timeout,
        client=client,
    )


def provider(kind: str) -> str:
    return PROVIDERS[kind][0]


async def call(backend: Backend, mode: str, request: CompletionRequest = REQUEST) -> None:
    try:
        if mode == "complete":
            await backend.complete(request)
        else:
            async for _ in backend.stream(request):
                pass
    finally:
        await backend.aclose()


# (reply, expected type, status, retry_after)
STATUS_CASES: list[tuple[Reply, type[ProviderError], int | None, float | None]] = [
    (Fault(401), AuthenticationError, 401, None),
    (Fault(403), AuthenticationError, 403, None),
    (Fault(400), BadRequestError, 400, None),
    (Fault(404), BadRequestError, 404, None),
    (Fault(422), BadRequestError, 422, None),
    (Fault(429, retry_after=2), RateLimited, 429, 2.0),
    (Fault(429, headers={"retry-after-ms": "1500"}), RateLimited, 429, 1.5),
    (Fault(529), RateLimited, 529, None),
    (Fault(500), ProviderError, 500, None),
    (Fault(503, retry_after=7), ProviderError, 503, 7.0),
    (Fault(408), ProviderError, 408, None),
    (Fault(409), ProviderError, 409, None),
]


@pytest.mark.parametrize("mode", ["complete", "stream"])
@pytest.mark.parametrize("kind", list(PROVIDERS))
@pytest.mark.parametrize(
    ("reply", "expected", "status", "retry_after"),
    STATUS_CASES,
    ids=[
        f"{type(r).__name__}{getattr(r, 'status', '')}-{i}"
        for i, (r, *_) in enumerate(STATUS_CASES)
    ],
)
async def test_status_faults_map_to_our_errors_after_one_request(
    sim: ProviderSimulator,
    kind: str,
    mode: str,
    reply: Reply,
    expected: type[ProviderError],
    status: int | None,
    retry_after: float | None,
) -> None:
    sim.script([reply])
    with pytest.raises(ProviderError) as info:
        await call(build(kind, sim), mode)
    err = info.value
    assert type(err) is expected
    assert err.status == status
    assert err.retry_after == retry_after
    assert err.provider == provider(kind)
    assert err.retryable is (expected not in (AuthenticationError, BadRequestError))
    assert err.__cause__ is not None  # translated with `raise ... from e`
    assert sim.stats.requests == 1  # no client retries on its own


@pytest.mark.parametrize("mode", ["complete", "stream"])
@pytest.mark.parametrize("kind", list(PROVIDERS))
@pytest.mark.parametrize("after", ["request", "headers", "partial"])
async def test_dropped_connection_is_a_connection_error(
    sim: ProviderSimulator, kind: str, mode: str, after: str
) -> None:
    sim.script([Drop(after)])  # type: ignore[arg-type]
    with pytest.raises(ProviderConnectionError) as info:
        await call(build(kind, sim), mode)
    assert info.value.provider == provider(kind)
    assert info.value.retryable
    assert sim.stats.requests == 1


@pytest.mark.parametrize("mode", ["complete", "stream"])
@pytest.mark.parametrize("kind", list(PROVIDERS))
async def test_hang_past_the_request_timeout_is_a_timeout(
    sim: ProviderSimulator, kind: str, mode: str
) -> None:
    sim.script([Hang()])
    request = CompletionRequest(messages=REQUEST.messages, timeout=0.1)
    with pytest.raises(ProviderTimeout) as info:
        await call(build(kind, sim, timeout=30.0), mode, request)
    assert info.value.provider == provider(kind)
    assert sim.stats.requests == 1


@pytest.mark.parametrize("kind", list(PROVIDERS))
async def test_backend_timeout_applies_when_the_request_sets_none(
    sim: ProviderSimulator, kind: str
) -> None:
    sim.script([Hang()])
    with pytest.raises(ProviderTimeout):
        await call(build(kind, sim, timeout=0.1), "complete")
    assert sim.stats.requests == 1


@pytest.mark.parametrize("kind", list(PROVIDERS))
async def test_api_key_never_appears_in_an_error(sim: ProviderSimulator, kind: str) -> None:
    sim.script([Fault(401, message=f"Incorrect API key provided: {KEY}. Check it.")])
    with pytest.raises(AuthenticationError) as info:
        await call(build(kind, sim), "complete")
    assert KEY not in str(info.value)
    assert KEY[:13] not in str(info.value)
    assert "Incorrect API key" in str(info.value)


@pytest.mark.parametrize("kind", list(PROVIDERS))
async def test_refused_connection_is_a_connection_error(kind: str) -> None:
    with ProviderSimulator() as s:
        backend = build(kind, s)
    # the simulator is gone: nothing listens on its port any more
    with pytest.raises(ProviderConnectionError):
        await call(backend, "complete")


@pytest.mark.parametrize("kind", list(PROVIDERS))
async def test_a_stream_abandoned_midway_is_closed_cleanly(
    sim: ProviderSimulator, kind: str
) -> None:
    sim.script([Text("one two three four five six seven eight")])
    backend = build(kind, sim)
    chunks = cast(AsyncGenerator[StreamChunk, None], backend.stream(REQUEST))
    first = await anext(chunks)
    assert first.delta
    await chunks.aclose()  # the caller stops reading: the response must be released
    sim.script([Text("again")])
    done = await backend.complete(REQUEST)  # the client still works
    assert done.text
    await backend.aclose()


@pytest.mark.parametrize("mode", ["complete", "stream"])
@pytest.mark.parametrize(
    "reply",
    [
        Fault(400, message="Bad 'model'."),
        Fault(429, retry_after=3, message="Slow down."),
        Fault(503),
    ],
    ids=["400", "429", "503"],
)
async def test_both_openai_clients_raise_the_same_error(
    sim: ProviderSimulator, mode: str, reply: Fault
) -> None:
    seen = []
    for kind in ("openai-http", "openai-sdk"):
        sim.script([reply])
        with pytest.raises(ProviderError) as info:
            await call(build(kind, sim), mode)
        err = info.value
        seen.append((type(err), err.status, err.retry_after, str(err)))
    assert seen[0] == seen[1]
    if reply.message:
        assert reply.message in seen[0][3]  # the provider's own words, from error.message
    assert sim.stats.requests == 2
