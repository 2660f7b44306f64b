"""Gemini error responses (bodies as Google sent them) mapped to our error tree.

Google puts what a client needs in ``error.details``: a ``google.rpc.RetryInfo`` with the
delay a 429 asks for, a ``google.rpc.ErrorInfo`` whose ``reason`` says a 400 is a bad key.
"""

from __future__ import annotations

import random

import pytest
import typer

from massgen.cli.common import KEY_HINT, USAGE, guarded
from massgen.errors import AuthenticationError, ProviderError, RateLimited
from massgen.resilience.retry import RetryPolicy, retryable
from tests.recorded.facts import body, gemini_variants, recording
from tests.recorded.harness import Recorded
from tests.recorded.replay_backends import GEMINI_KEY, answer, ask, gemini

RETRY_INFO = "type.googleapis.com/google.rpc.RetryInfo"
ERROR_INFO = "type.googleapis.com/google.rpc.ErrorInfo"


def details(rec: Recorded) -> list[dict[str, object]]:
    return list(body(rec)["error"].get("details", []))


def retry_delay(rec: Recorded) -> float | None:
    for d in details(rec):
        if d.get("@type") == RETRY_INFO:
            return float(str(d["retryDelay"]).removesuffix("s"))
    return None


def cases(*names: str) -> list[tuple[Recorded, str, bool]]:
    return [
        (rec, variant, stream)
        for name in names
        for rec in recording("gemini", name)[:1]
        for variant in gemini_variants(rec)
        for stream in (False, True)
    ]


def case_id(case: tuple[Recorded, str, bool]) -> str:
    return f"{case[0].name}-{case[1]}-{'stream' if case[2] else 'complete'}"


KEY_REFUSED = cases(
    "firebase__googleai-unary-failure-api-key.http",
    "crewai__test_google_streaming_returns_usage_metrics.yaml",
)


@pytest.mark.parametrize("case", KEY_REFUSED, ids=case_id)
async def test_api_key_invalid_is_an_authentication_error(
    case: tuple[Recorded, str, bool],
) -> None:
    """Google answers a bad key with 400 INVALID_ARGUMENT; the ErrorInfo reason
    API_KEY_INVALID is what says it is the key, not the request."""
    rec, variant, stream = case
    error = body(rec)["error"]
    assert (rec.status, error["status"]) == (400, "INVALID_ARGUMENT")
    assert any(d.get("reason") == "API_KEY_INVALID" for d in details(rec))
    async with gemini([rec], variant) as (backend, _):
        with pytest.raises(ProviderError) as caught:
            await answer(backend, ask(), stream=stream)
    assert type(caught.value) is AuthenticationError
    assert caught.value.status == 400
    assert not retryable(caught.value)
    assert GEMINI_KEY not in str(caught.value)


async def test_api_key_invalid_exits_2_with_the_key_hint(
    capsys: pytest.CaptureFixture[str],
) -> None:
    (rec,) = recording("gemini", "firebase__googleai-unary-failure-api-key.http")
    async with gemini([rec]) as (backend, _):
        with pytest.raises(ProviderError) as caught:
            await backend.complete(ask())

    def command() -> None:
        raise caught.value

    with pytest.raises(typer.Exit) as exited:
        guarded(command)
    assert exited.value.exit_code == USAGE
    assert KEY_HINT in capsys.readouterr().err


RATE_LIMITED = cases(
    "logged__free-tier-429-retryinfo.http",
    "firebase__vertexai-unary-failure-quota-exceeded.http",
    "crewai__TestAgentMultimodalGemini.test_video_file.yaml",
)


@pytest.mark.parametrize("case", RATE_LIMITED, ids=case_id)
async def test_429_waits_the_retry_delay_google_gave(case: tuple[Recorded, str, bool]) -> None:
    rec, variant, stream = case
    async with gemini([rec], variant) as (backend, _):
        with pytest.raises(ProviderError) as caught:
            await answer(backend, ask(), stream=stream)
    assert type(caught.value) is RateLimited
    assert caught.value.status == 429
    assert caught.value.retry_after == retry_delay(rec)


async def test_retry_delay_sets_the_wait_capped_like_retry_after() -> None:
    (rec,) = recording("gemini", "logged__free-tier-429-retryinfo.http")
    asked = retry_delay(rec)
    assert asked == 58.0
    async with gemini([rec]) as (backend, _):
        with pytest.raises(RateLimited) as caught:
            await backend.complete(ask())
    rng = random.Random(0)
    assert RetryPolicy(base_delay=0.1, max_delay=0.1).delay(1, caught.value, rng) == asked
    capped = RetryPolicy(base_delay=0.1, max_delay=0.1, retry_after_cap=30.0)
    assert capped.delay(1, caught.value, rng) == 30.0


@pytest.mark.parametrize(
    ("delay", "seconds"), [("58s", 58.0), ("1.5s", 1.5), ("0.250s", 0.25), ("soon", None)]
)
def test_retry_delay_reads_protobuf_durations(delay: str, seconds: float | None) -> None:
    from massgen.backends.google import _retry_delay

    assert _retry_delay([{"@type": RETRY_INFO, "retryDelay": delay}]) == seconds
