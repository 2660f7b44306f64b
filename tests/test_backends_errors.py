"""The boundary helpers every adapter shares: status table, Retry-After, scrubbing, parsing."""

from __future__ import annotations

import email.utils

import pytest

from massgen.backends._common import Draft, parse_arguments
from massgen.backends._errors import (
    body_message,
    clean_message,
    error_for_status,
    parse_retry_after,
)
from massgen.errors import AuthenticationError, BadRequestError, ProviderError, RateLimited
from massgen.tokens import estimate_request
from massgen.types import ChatMessage, CompletionRequest, ToolCall, Usage


@pytest.mark.parametrize(
    ("status", "kind", "retryable"),
    [
        (401, AuthenticationError, False),
        (403, AuthenticationError, False),
        (400, BadRequestError, False),
        (404, BadRequestError, False),
        (413, BadRequestError, False),
        (422, BadRequestError, False),
        (429, RateLimited, True),
        (529, RateLimited, True),
        (408, ProviderError, True),
        (409, ProviderError, True),
        (500, ProviderError, True),
        (502, ProviderError, True),
        (503, ProviderError, True),
    ],
)
def test_status_table(status: int, kind: type[ProviderError], retryable: bool) -> None:
    err = error_for_status(status, "msg", provider="p", retry_after=3.0)
    assert type(err) is kind
    assert err.retryable is retryable
    assert (err.status, err.retry_after, err.provider) == (status, 3.0, "p")
    assert str(err) == f"[p {status}] msg"


def test_retry_after_seconds_milliseconds_and_dates() -> None:
    assert parse_retry_after({"retry-after": "2"}) == 2.0
    assert parse_retry_after({"retry-after": "0.5"}) == 0.5
    assert parse_retry_after({"retry-after-ms": "1500", "retry-after": "9"}) == 1.5
    now = 1_700_000_000.0
    date = email.utils.formatdate(now + 30, usegmt=True)
    assert parse_retry_after({"retry-after": date}, now=now) == pytest.approx(30.0)
    past = email.utils.formatdate(now - 30, usegmt=True)
    assert parse_retry_after({"retry-after": past}, now=now) == 0.0


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        (None, None),
        ({}, None),
        ({"retry-after": "soon"}, None),  # garbled: no hint, the backoff decides
        ({"retry-after": "-3"}, 0.0),  # in the past: go now
        ({"retry-after-ms": "x"}, None),
    ],
)
def test_retry_after_absent_or_garbled(
    headers: dict[str, str] | None, expected: float | None
) -> None:
    assert parse_retry_after(headers) == expected


def test_clean_message_scrubs_the_key_and_clips() -> None:
    key = "sk-proj-abcdefghijklmnopqrstuvwxyz"
    text = clean_message(f"bad key {key}\n\n and a prefix {key[:20]}", secret=key)
    assert key not in text and key[:17] not in text
    assert "\n" not in text
    assert len(clean_message("x" * 1000)) <= 300


def test_body_message_reads_every_shape_providers_send() -> None:
    assert body_message({"error": {"message": "Bad key", "type": "auth"}}) == "Bad key"
    assert body_message({"message": "Bad key", "type": "auth"}) == "Bad key"  # the SDKs' e.body
    assert body_message({"error": "plain words"}) == "plain words"  # some local servers
    assert body_message({"error": {"code": 500}}) == ""
    assert body_message({"error": {"message": 42}}) == ""
    assert body_message("<html>") == "" and body_message(None) == ""


def test_parse_arguments() -> None:
    assert parse_arguments('{"a": 1}') == {"a": 1}
    assert parse_arguments({"a": 1}) == {"a": 1}
    assert parse_arguments("") == {} and parse_arguments(None) == {}
    assert parse_arguments("{broken") == {"_raw": "{broken"}
    assert parse_arguments("[1, 2]") == {"_raw": "[1, 2]"}


def test_finish_reasons_are_normalised() -> None:
    request = CompletionRequest(messages=(ChatMessage("user", "x"),))
    call = ToolCall("c1", "f", {})

    def finish(reason: str, *calls: ToolCall) -> str:
        draft = Draft("m", usage=Usage(1, 1), finish=reason, calls=list(calls))
        return draft.build(request, 0.0).finish_reason

    assert finish("stop") == "stop"
    assert finish("stop", call) == "tool_calls"
    assert finish("length", call) == "length"
    assert finish("weird") == "other"


def test_missing_usage_is_estimated_rather_than_zero() -> None:
    request = CompletionRequest(messages=(ChatMessage("user", "x" * 40),))
    done = Draft("m", text=["text"], usage=Usage(7, 3), finish="stop").build(request, 0.0)
    assert done.usage == Usage(7, 3)
    estimated = Draft("m", text=["y" * 20], finish="stop").build(request, 0.0).usage
    assert estimated == Usage(estimate_request(request), 5)
    assert estimated.input_tokens > 0
