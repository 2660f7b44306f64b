"""Anthropic error responses (bodies as the API sent them) mapped to our error tree, with the
status and Retry-After kept, streamed or not."""

from __future__ import annotations

import random

import pytest

from massgen.errors import AuthenticationError, BadRequestError, ProviderError, RateLimited
from massgen.resilience.retry import RetryPolicy, retryable
from tests.recorded.facts import body, events, recording, wire_variants
from tests.recorded.harness import Recorded
from tests.recorded.replay_backends import KEY, answer, anthropic, ask

KIND: dict[str, type[ProviderError]] = {
    "rate_limit_error": RateLimited,
    "overloaded_error": RateLimited,
    "authentication_error": AuthenticationError,
    "invalid_request_error": BadRequestError,
    "not_found_error": BadRequestError,
}

ERRORS = [
    (rec, variant, stream)
    for name in (
        "logged__429-rate-limit.http",
        "logged__529-overloaded.http",
        "logged__401-invalid-key.http",
        "logged__400-prompt-too-long.http",
        "pydantic-ai__test_anthropic_count_tokens_error.yaml",
        "pydantic-ai__test_anthropic_explicit_effort_xhigh_unsupported_model_errors.yaml",
    )
    for rec in recording("anthropic", name)
    for variant in wire_variants(rec)
    for stream in (False, True)
]


@pytest.mark.parametrize(
    "case", ERRORS, ids=lambda c: f"{c[0].name}-{c[1]}-{'stream' if c[2] else 'complete'}"
)
async def test_error_status_kind_and_retry_after_as_sent(case: tuple[Recorded, str, bool]) -> None:
    rec, variant, stream = case
    error = body(rec)["error"]
    async with anthropic([rec], variant) as (backend, _):
        with pytest.raises(ProviderError) as caught:
            await answer(backend, ask(), stream=stream)
    e = caught.value
    assert type(e) is KIND[error["type"]]
    assert e.status == rec.status
    sent = rec.header("retry-after")
    assert e.retry_after == (float(sent) if sent else None)
    assert e.retryable == (rec.status in (429, 529))
    assert KEY not in str(e)


async def test_rate_limit_waits_what_the_provider_asked() -> None:
    (rec,) = recording("anthropic", "logged__429-rate-limit.http")
    async with anthropic([rec]) as (backend, _):
        with pytest.raises(RateLimited) as caught:
            await backend.complete(ask())
    wait = RetryPolicy(base_delay=0.1, max_delay=0.1).delay(1, caught.value, random.Random(0))
    assert wait == float(rec.header("retry-after") or "nan")


async def test_overloaded_is_retried() -> None:
    (rec,) = recording("anthropic", "logged__529-overloaded.http")
    assert body(rec)["error"]["type"] == "overloaded_error"
    async with anthropic([rec]) as (backend, _):
        with pytest.raises(RateLimited) as caught:
            await backend.complete(ask())
    assert caught.value.status == 529 and retryable(caught.value)


STREAM_ERROR = "handmade__stream-error-event.http"


@pytest.mark.parametrize("variant", wire_variants(recording("anthropic", STREAM_ERROR)[0]))
async def test_error_event_inside_a_stream_ends_it_as_that_error(variant: str) -> None:
    """An ``error`` event after some text (status 200 on the wire): the text already streamed
    stays streamed, and the stream ends with the error the event names, never an answer."""
    (rec,) = recording("anthropic", STREAM_ERROR)
    sent = events(rec)
    text = "".join(e["delta"]["text"] for e in sent if e["type"] == "content_block_delta")
    (error,) = [e["error"] for e in sent if e["type"] == "error"]
    deltas: list[str] = []
    async with anthropic([rec], variant) as (backend, _):
        with pytest.raises(ProviderError) as caught:
            async for chunk in backend.stream(ask()):
                assert chunk.completion is None
                deltas.append(chunk.delta)
    assert "".join(deltas) == text
    assert type(caught.value) is KIND[error["type"]]
    assert caught.value.status == 529
