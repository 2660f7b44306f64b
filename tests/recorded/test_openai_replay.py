"""Recorded OpenAI, OpenAI Responses and OpenAI-compatible traffic, read by both our clients.

Every response in ``tests/recorded/openai/`` and ``tests/recorded/openai_compat/`` (see
their ``ORIGINS.toml``) is served byte for byte from loopback, under each wire variant that
applies to it, and read through massgen's own HTTP client and the ``openai`` SDK client. The
two must agree with each other, and with the facts read out of the recording itself
(:mod:`tests.recorded.openai_facts`): text, reasoning, tool calls, usage, finish reason, or
the error's class, status and Retry-After.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from massgen.backends.openai import OpenAIBackend, OpenRouterBackend
from massgen.errors import (
    AuthenticationError,
    BadRequestError,
    ProviderError,
    RateLimited,
)
from massgen.types import ChatMessage, Completion, CompletionRequest, NativeTool, Usage
from tests.recorded import openai_facts
from tests.recorded.harness import HERE, Recorded, ReplayServer, load, origins, recordings

FOLDERS = ("openai", "openai_compat")
CLIENTS = ("http", "sdk")
KEY = "sk-replay-0123456789abcdef"


def _variants(rec: Recorded) -> tuple[str, ...]:
    """crlf and comments change only an event stream's bytes; the rest apply to every body."""
    if rec.is_stream:
        return ("exact", "crlf", "split", "comments", "gzip")
    return ("exact", "split", "gzip")


RESPONSES = [rec for folder in FOLDERS for path in recordings(folder) for rec in load(path)]
CASES = [
    pytest.param(rec, variant, id=f"{rec.name}-{variant}")
    for rec in RESPONSES
    for variant in _variants(rec)
]


def _backend(rec: Recorded, url: str, client: str) -> OpenAIBackend:
    uri = str((rec.request or {}).get("uri") or "")
    cls = OpenRouterBackend if "openrouter.ai" in uri else OpenAIBackend
    return cls("gpt-4.1", api_key=KEY, base_url=f"{url}/v1", client=client, timeout=20)


def _request(api: str) -> CompletionRequest:
    messages = (ChatMessage("user", "hello"),)
    if api == "responses":  # a declared web search is what sends a turn to the Responses API
        return CompletionRequest(messages=messages, native_tools=(NativeTool("web_search"),))
    return CompletionRequest(messages=messages)


async def _outcome(backend: OpenAIBackend, request: CompletionRequest, stream: bool) -> Any:
    """The Completion (latency zeroed, so two clients compare equal) or the error raised."""
    try:
        if stream:
            pieces = [chunk async for chunk in backend.stream(request)]
            completion = pieces[-1].completion
            assert completion is not None
            assert "".join(p.delta for p in pieces[:-1]) == completion.text
        else:
            completion = await backend.complete(request)
    except ProviderError as e:
        return (type(e), e.status, e.retry_after, e.retryable, str(e))
    finally:
        await backend.aclose()
    return dataclasses.replace(completion, latency=0.0)


@pytest.mark.parametrize(("rec", "variant"), CASES)
async def test_both_clients_read_the_recording_as_it_says(rec: Recorded, variant: str) -> None:
    facts = openai_facts.read(rec)
    request = _request(facts.api)
    outcomes = {}
    with ReplayServer([rec], variant=variant) as server:  # the one response, to each client
        for client in CLIENTS:
            outcomes[client] = await _outcome(
                _backend(rec, server.url, client), request, rec.is_stream
            )
    assert outcomes["http"] == outcomes["sdk"]
    outcome = outcomes["http"]
    if isinstance(outcome, Completion):
        _check_answer(outcome, facts)
    else:
        _check_error(outcome, facts)


_STATUS_KIND = {400: BadRequestError, 401: AuthenticationError, 404: BadRequestError}


def _check_error(outcome: tuple[Any, ...], facts: openai_facts.Facts) -> None:
    kind, status, retry_after, retryable, message = outcome
    assert not facts.finished_before_error, "an answer that had finished must be kept"
    assert facts.error_status is not None or facts.error_message, "the recording holds no error"
    if facts.error_status == 429:
        assert kind is RateLimited and retryable
    elif facts.error_status is not None:
        assert kind is _STATUS_KIND.get(facts.error_status, BadRequestError)
        assert not retryable
    assert status == facts.error_status
    assert retry_after == facts.retry_after
    words = " ".join(facts.error_message.split())[:60]
    assert words in message


def _check_answer(completion: Completion, facts: openai_facts.Facts) -> None:
    assert facts.error_status is None or facts.finished_before_error
    assert completion.text == facts.text
    assert completion.reasoning == facts.reasoning
    if facts.reasoning.strip():
        assert facts.reasoning not in completion.text
    if facts.model:
        assert completion.model == facts.model
    if facts.usage is not None and any(facts.usage):  # none reported: ours is an estimate
        prompt, output, cached, reasoning = facts.usage
        # A part is never more than its whole (the OpenRouter error stream here reports 11
        # reasoning tokens of a 10-token answer): read as the whole.
        assert completion.usage == Usage(
            prompt, output, min(cached, prompt), min(reasoning, output)
        )
    assert [(c.name, dict(c.arguments)) for c in completion.tool_calls] == [
        (name, args) for _, name, args in facts.calls
    ]
    ids = [c.id for c in completion.tool_calls]
    assert len(set(ids)) == len(ids) and all(ids)
    for ours, (recorded, _, _) in zip(ids, facts.calls, strict=True):
        assert ours == recorded or (not recorded and ours.startswith("call_"))
    assert completion.finish_reason == _finish(facts, bool(facts.calls))


def _finish(facts: openai_facts.Facts, calls: bool) -> str:
    if facts.api == "responses":
        finish = {"completed": "stop", "incomplete": "length"}[str(facts.finish)]
    else:
        assert facts.finish is not None or facts.done, "neither a finish_reason nor [DONE]"
        finish = facts.finish or "stop"
    return "tool_calls" if calls and finish == "stop" else finish


def test_the_suite_holds_enough_recordings() -> None:
    files = [path for folder in FOLDERS for path in recordings(folder)]
    assert len(files) >= 25
    for folder in FOLDERS:
        named = origins(HERE / folder)
        assert {p.name for p in recordings(folder)} <= set(named), "every file has its origin"


def test_the_suite_holds_cached_and_reasoning_tokens_on_every_path() -> None:
    """The check above compares cached and reasoning tokens on recordings that have some:
    Chat Completions and Responses, streamed and not (and a recording that loses them
    would leave a path unchecked)."""
    seen = set()
    for rec in RESPONSES:
        facts = openai_facts.read(rec)
        if facts.usage is not None and facts.error_status is None:
            _, _, cached, reasoning = facts.usage
            if cached:
                seen.add((facts.api, rec.is_stream, "cached"))
            if reasoning:
                seen.add((facts.api, rec.is_stream, "reasoning"))
    assert seen == {
        (api, stream, kind)
        for api in ("chat", "responses")
        for stream in (False, True)
        for kind in ("cached", "reasoning")
    }
