"""Provider quirks of the OpenAI protocol family, each shown by the recording that has it.

Where no public recording shows a quirk, the test builds the response by hand after the
provider's documented wire format, and says so.
"""

from __future__ import annotations

import json

import pytest

from massgen.backends.openai import OpenAIBackend, OpenRouterBackend
from massgen.errors import BadRequestError, ConfigError, ProviderConnectionError
from massgen.types import ChatMessage, Completion, CompletionRequest
from tests.recorded.harness import HERE, Recorded, ReplayServer, load

CLIENTS = ("http", "sdk")
KEY = "sk-quirk-0123456789abcdef"
ASK = CompletionRequest(messages=(ChatMessage("user", "What is the current llm version?"),))


def recorded(folder: str, name: str) -> list[Recorded]:
    return load(HERE / folder / name)


def backend(url: str, client: str, cls: type[OpenAIBackend] = OpenAIBackend) -> OpenAIBackend:
    return cls("gpt-4.1-mini", api_key=KEY, base_url=f"{url}/v1", client=client, timeout=20)


async def streamed(rec: Recorded, client: str, *, variant: str = "exact") -> Completion:
    with ReplayServer([rec], variant=variant) as server:
        b = backend(server.url, client)
        try:
            chunks = [c async for c in b.stream(ASK)]
        finally:
            await b.aclose()
    final = chunks[-1].completion
    assert final is not None
    return final


async def completed(rec: Recorded, client: str, *, variant: str = "exact") -> Completion:
    with ReplayServer([rec], variant=variant) as server:
        b = backend(server.url, client)
        try:
            return await b.complete(ASK)
        finally:
            await b.aclose()


def hand_made_stream(*chunks: dict[str, object], done: bool = True) -> Recorded:
    """A Chat Completions event stream written by hand (for quirks no recording shows)."""
    body = "".join(f"data: {json.dumps(c)}\n\n" for c in chunks)
    if done:
        body += "data: [DONE]\n\n"
    return Recorded("hand-made", 200, (("Content-Type", "text/event-stream"),), body.encode())


# -- [DONE] without a finish_reason ------------------------------------------------------------
@pytest.mark.parametrize("client", CLIENTS)
async def test_a_stream_ended_by_done_alone_is_complete(client: str) -> None:
    """simonw/llm's recording: a tool call whose stream never says finish_reason."""
    rec = recorded("openai_compat", "llm-test_tools_streaming_variant_b.yaml")[0]
    assert b'"finish_reason":"' not in rec.body and b"data: [DONE]" in rec.body
    final = await streamed(rec, client)
    assert final.finish_reason == "tool_calls"
    assert [(c.id, c.name, dict(c.arguments)) for c in final.tool_calls] == [
        ("0", "llm_version", {})
    ]


async def test_a_stream_with_neither_finish_nor_done_is_still_cut_off() -> None:
    """The same recording cut before its ``[DONE]``: the server never said it was complete.
    (Our own client only: the SDK does not tell a clean end of the body from ``[DONE]``.)"""
    rec = recorded("openai_compat", "llm-test_tools_streaming_variant_b.yaml")[0]
    cut = Recorded("cut", rec.status, rec.headers, rec.body.split(b"data: [DONE]")[0])
    with pytest.raises(ProviderConnectionError):
        await streamed(cut, "http")


# -- a function name repeated in later deltas -------------------------------------------------
@pytest.mark.parametrize("client", CLIENTS)
async def test_a_repeated_function_name_is_not_doubled(client: str) -> None:
    """simonw/llm's recording sends ``"name": "llm_version"`` in two deltas of one call."""
    rec = recorded("openai_compat", "llm-test_tools_streaming_variant_a.yaml")[0]
    assert rec.body.count(b'"name":"llm_version"') == 2
    final = await streamed(rec, client, variant="split")
    assert [(c.name, dict(c.arguments)) for c in final.tool_calls] == [("llm_version", {})]


@pytest.mark.parametrize("client", CLIENTS)
async def test_a_name_streamed_in_pieces_is_joined(client: str) -> None:
    """Hand-made: a server that streams the name in pieces (as arguments are streamed)."""
    rec = hand_made_stream(
        *(
            {"choices": [{"index": 0, "delta": {"tool_calls": [call]}}]}
            for call in (
                {"index": 0, "id": "call_1", "function": {"name": "get_", "arguments": ""}},
                {"index": 0, "function": {"name": "weather", "arguments": '{"city":'}},
                {"index": 0, "function": {"arguments": '"Paris"}'}},
            )
        ),
        {"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]},
    )
    final = await streamed(rec, client)
    assert [(c.name, dict(c.arguments)) for c in final.tool_calls] == [
        ("get_weather", {"city": "Paris"})
    ]


# -- n > 1 ------------------------------------------------------------------------------------
def test_more_than_one_choice_is_refused_in_config() -> None:
    with pytest.raises(ConfigError) as info:
        OpenAIBackend("gpt-4.1", api_key=KEY, params={"n": 2})
    assert info.value.key == "n"


@pytest.mark.parametrize("client", CLIENTS)
async def test_more_than_one_choice_is_refused_per_request(client: str) -> None:
    b = OpenAIBackend("gpt-4.1", api_key=KEY, base_url="http://127.0.0.1:9/v1", client=client)
    try:
        with pytest.raises(ConfigError):
            await b.complete(CompletionRequest(messages=ASK.messages, extra={"n": 3}))
    finally:
        await b.aclose()


@pytest.mark.parametrize("client", CLIENTS)
async def test_interleaved_choices_are_read_by_index(client: str) -> None:
    """Hand-made, after OpenAI's documented ``n: 2`` stream: choices interleave, each chunk
    naming its ``index``. Only choice 0 is the answer; choice 1 never leaks into it."""
    piece = [("Par", 0), ("Lyon", 1), ("is", 0), (" too", 1)]
    rec = hand_made_stream(
        *({"choices": [{"index": i, "delta": {"content": text}}]} for text, i in piece),
        {"choices": [{"index": 1, "delta": {}, "finish_reason": "stop"}]},
        {"choices": [{"index": 0, "delta": {}, "finish_reason": "length"}]},
    )
    final = await streamed(rec, client)
    assert (final.text, final.finish_reason) == ("Paris", "length")


# -- an error object inside a 200 stream ------------------------------------------------------
@pytest.mark.parametrize("client", CLIENTS)
@pytest.mark.parametrize("variant", ["exact", "comments", "split"])
async def test_an_answer_finished_before_a_stream_error_is_kept(client: str, variant: str) -> None:
    """pydantic-ai's OpenRouter recording: ``finish_reason: length``, then an error chunk
    ``{"code": 400, "message": "Token limit reached"}``, then ``[DONE]``."""
    rec = recorded("openai_compat", "pydantic_ai-test_openrouter_stream_error.yaml")[0]
    with ReplayServer([rec], variant=variant) as server:
        b = backend(server.url, client, OpenRouterBackend)
        try:
            chunks = [c async for c in b.stream(ASK)]
        finally:
            await b.aclose()
    final = chunks[-1].completion
    assert final is not None and final.finish_reason == "length"
    assert final.reasoning == "We need to respond to a greeting. The user"


@pytest.mark.parametrize("client", CLIENTS)
async def test_a_stream_error_that_names_a_4xx_is_not_retried(client: str) -> None:
    """pydantic-ai's Groq recording: ``event: error`` with ``status_code: 400``
    (tool_use_failed) after some reasoning, before any finish."""
    rec = recorded("openai_compat", "pydantic_ai-test_tool_use_failed_error_streaming.yaml")[0]
    assert b"event: error" in rec.body
    with pytest.raises(BadRequestError) as info:
        await streamed(rec, client)
    assert info.value.status == 400 and not info.value.retryable
    assert "Tool call validation failed" in str(info.value)


@pytest.mark.parametrize("client", CLIENTS)
async def test_a_stream_error_that_names_a_429_is_rate_limited(client: str) -> None:
    """Hand-made, in OpenRouter's shape: an upstream 429 after the stream began."""
    from massgen.errors import RateLimited

    rec = hand_made_stream(
        {"choices": [{"index": 0, "delta": {"content": "Hel"}}]},
        {"error": {"code": 429, "message": "Provider returned error"}, "choices": []},
    )
    with pytest.raises(RateLimited) as info:
        await streamed(rec, client)
    assert info.value.retryable


# -- tool calls without an id -----------------------------------------------------------------
@pytest.mark.parametrize("variant", ["exact", "gzip"])
async def test_a_tool_call_with_an_empty_id_gets_a_stable_unique_one(variant: str) -> None:
    """pydantic-ai's recording of Gemini's OpenAI-compatible endpoint: ``"id": ""``."""
    rec = recorded(
        "openai_compat", "pydantic_ai-test_compatible_api_with_tool_calls_without_id.yaml"
    )[0]
    assert json.loads(rec.body)["choices"][0]["message"]["tool_calls"][0]["id"] == ""
    ids = {
        client: (await completed(rec, client, variant=variant)).tool_calls[0].id
        for client in CLIENTS
    }
    again = (await completed(rec, "http")).tool_calls[0].id
    assert ids["http"] == ids["sdk"] == again  # stable: a replay or a cache hit pairs the same
    assert ids["http"].startswith("call_") and len(ids["http"]) > len("call_")
    other = json.loads(rec.body)
    other["id"] = "another-response"
    changed = Recorded("edited", rec.status, rec.headers, json.dumps(other).encode())
    assert (await completed(changed, "http")).tool_calls[0].id != ids["http"]  # unique


@pytest.mark.parametrize("client", CLIENTS)
async def test_streamed_calls_without_ids_get_unique_ones(client: str) -> None:
    """Hand-made, in the shape of Gemini's compatible stream: two calls, both ``id: ""``;
    two responses' calls must not share ids (a tool loop pairs results by id)."""

    def answer(response_id: str) -> Recorded:
        calls = [
            {"index": i, "id": "", "function": {"name": "get_time", "arguments": "{}"}}
            for i in (0, 1)
        ]
        return hand_made_stream(
            {"id": response_id, "choices": [{"index": 0, "delta": {"tool_calls": calls}}]},
            {
                "id": response_id,
                "choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}],
            },
        )

    first = [c.id for c in (await streamed(answer("r-1"), client)).tool_calls]
    second = [c.id for c in (await streamed(answer("r-2"), client)).tool_calls]
    assert len({*first, *second}) == 4 and all(i.startswith("call_") for i in first + second)
    assert first == [c.id for c in (await streamed(answer("r-1"), client)).tool_calls]


# -- compressed bodies ------------------------------------------------------------------------
@pytest.mark.parametrize("variant", ["gzip", "deflate", "deflate-raw"])
@pytest.mark.parametrize("stream", [True, False], ids=["streamed", "whole"])
async def test_a_compressed_body_is_decoded_unasked(variant: str, stream: bool) -> None:
    name = (
        "pydantic_ai-test_deepseek_model_thinking_stream.yaml"
        if stream
        else "pydantic_ai-test_deepseek_model_thinking_part.yaml"
    )
    rec = recorded("openai_compat", name)[0]
    plain = await (streamed if stream else completed)(rec, "http")
    for client in CLIENTS:
        got = await (streamed if stream else completed)(rec, client, variant=variant)
        assert (got.text, got.reasoning, got.usage) == (plain.text, plain.reasoning, plain.usage)
    assert plain.text and plain.reasoning


async def test_a_compressed_error_body_keeps_the_providers_message() -> None:
    rec = recorded("openai", "pydantic_ai-test_openai_o1_mini_system_rolesystem.yaml")[0]
    message = json.loads(rec.body)["error"]["message"]
    with pytest.raises(BadRequestError) as info:
        await completed(rec, "http", variant="gzip")
    assert message[:40] in str(info.value)
