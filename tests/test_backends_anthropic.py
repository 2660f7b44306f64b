"""AnthropicBackend against the simulator's Messages endpoint."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from massgen.backends.anthropic import DEFAULT_MAX_TOKENS, AnthropicBackend
from massgen.errors import AuthenticationError, ProviderError
from massgen.types import ChatMessage, CompletionRequest, ToolCall, ToolSpec, Usage
from tests.sim.sim_types import Text, ToolCalls, ToolCallSpec, ToolResult
from tests.sim.simulator import ProviderSimulator
from tests.test_http_client import raw_server, read_request

MODEL = "claude-sonnet-5"
LOOKUP = ToolSpec(
    "lookup",
    "Look a word up.",
    {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]},
)


@pytest.fixture
async def backend(sim: ProviderSimulator) -> AsyncIterator[AnthropicBackend]:
    b = AnthropicBackend(MODEL, api_key="sk-ant-test", base_url=sim.anthropic_base_url)
    yield b
    await b.aclose()


def ask(text: str, **kw: object) -> CompletionRequest:
    return CompletionRequest(
        messages=(ChatMessage("system", "Be brief."), ChatMessage("user", text)),
        **kw,  # type: ignore[arg-type]
    )


async def test_complete_sends_system_apart_and_returns_usage(
    sim: ProviderSimulator, backend: AnthropicBackend
) -> None:
    sim.script([Text("Paris.")])
    done = await backend.complete(ask("Capital of France?"))
    assert done.text == "Paris."
    assert done.model == MODEL
    assert done.finish_reason == "stop"
    assert done.usage == Usage(sim.stats.prompt_tokens, sim.stats.completion_tokens)
    assert done.usage.input_tokens > 0
    body = sim.requests[0].body
    assert body["system"] == "Be brief."
    assert body["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "Capital of France?"}]}
    ]
    assert body["max_tokens"] == DEFAULT_MAX_TOKENS  # required by the API: always sent
    assert "temperature" not in body


async def test_settings_and_params_reach_the_body(sim: ProviderSimulator) -> None:
    b = AnthropicBackend(
        MODEL,
        api_key="k",
        base_url=sim.anthropic_base_url,
        temperature=0.2,
        max_tokens=64,
        params={"top_k": 5, "metadata": {"user_id": "u1"}},
    )
    try:
        await b.complete(ask("hi"))
        await b.complete(ask("hi", temperature=0.7, max_tokens=9))
    finally:
        await b.aclose()
    first, second = (r.body for r in sim.requests)
    assert first["temperature"] == 0.2 and first["max_tokens"] == 64
    assert first["top_k"] == 5 and first["metadata"] == {"user_id": "u1"}
    assert second["temperature"] == 0.7 and second["max_tokens"] == 9


async def test_truncated_answer_finishes_with_length(
    sim: ProviderSimulator, backend: AnthropicBackend
) -> None:
    sim.script([Text("cut", truncated=True)])
    assert (await backend.complete(ask("x"))).finish_reason == "length"


async def test_stream_yields_deltas_then_the_completion_with_usage(
    sim: ProviderSimulator, backend: AnthropicBackend
) -> None:
    sim.script([Text("Paris is the capital of France.")])
    chunks = [c async for c in backend.stream(ask("Capital?"))]
    deltas = [c.delta for c in chunks[:-1]]
    final = chunks[-1].completion
    assert len(deltas) > 1 and all(c.completion is None for c in chunks[:-1])
    assert "".join(deltas) == "Paris is the capital of France."
    assert final is not None
    assert final.text == "Paris is the capital of France."
    assert final.usage == Usage(sim.stats.prompt_tokens, sim.stats.completion_tokens)
    assert final.usage.output_tokens > 0
    assert final.finish_reason == "stop"
    assert sim.requests[0].stream is True


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("hour", [0, 300])
async def test_tokens_read_from_and_written_to_the_prompt_cache_are_counted(
    sim: ProviderSimulator, backend: AnthropicBackend, stream: bool, hour: int
) -> None:
    """Both are input beside ``input_tokens``: the reads cached, the writes cache-written (and
    those kept an hour apart), streamed (the SDK's snapshot of ``message_start`` and
    ``message_delta``) or not."""
    sim.script([Text("Paris.", cache_read=1111, cache_write=418, cache_write_1h=hour)])
    if stream:
        done = [c async for c in backend.stream(ask("Capital?"))][-1].completion
    else:
        done = await backend.complete(ask("Capital?"))
    assert done is not None
    prompt = sim.stats.prompt_tokens + 1111 + 418
    assert done.usage == Usage(prompt, sim.stats.completion_tokens, 1111, 0, 418, hour)


async def test_tools_and_tool_choice_use_anthropic_shapes(
    sim: ProviderSimulator, backend: AnthropicBackend
) -> None:
    for choice in ("auto", "required", "none", "lookup"):
        await backend.complete(ask("x", tools=(LOOKUP,), tool_choice=choice))
    bodies = [r.body for r in sim.requests]
    assert bodies[0]["tools"] == [
        {
            "name": "lookup",
            "description": "Look a word up.",
            "input_schema": dict(LOOKUP.parameters),
        }
    ]
    assert [b["tool_choice"] for b in bodies] == [
        {"type": "auto"},
        {"type": "any"},
        {"type": "none"},
        {"type": "tool", "name": "lookup"},
    ]


async def test_tool_calls_are_parsed_in_both_modes(
    sim: ProviderSimulator, backend: AnthropicBackend
) -> None:
    args = {"q": "a query long enough to arrive in several JSON pieces", "n": 2}
    sim.script([ToolCalls([ToolCallSpec("lookup", args, id="toolu_1")], text="Checking.")])
    done = await backend.complete(ask("x", tools=(LOOKUP,)))
    chunks = [c async for c in backend.stream(ask("x", tools=(LOOKUP,)))]
    streamed = chunks[-1].completion
    assert streamed is not None
    for result in (done, streamed):
        assert result.tool_calls == (ToolCall("toolu_1", "lookup", args),)
        assert result.finish_reason == "tool_calls"
        assert result.text == "Checking."


async def test_tool_results_go_back_in_one_user_turn_of_tool_result_blocks(
    sim: ProviderSimulator, backend: AnthropicBackend
) -> None:
    calls = (
        ToolCall("toolu_1", "lookup", {"q": "paris"}),
        ToolCall("toolu_2", "lookup", {"q": "rome"}),
    )
    history = CompletionRequest(
        messages=(
            ChatMessage("system", "Be brief."),
            ChatMessage("user", "Look both up"),
            ChatMessage("assistant", "Looking.", tool_calls=calls),
            ChatMessage("tool", "Paris: France", tool_call_id="toolu_1"),
            ChatMessage("tool", "Rome: Italy", tool_call_id="toolu_2"),
            ChatMessage("user", "Now compare."),
        ),
        tools=(LOOKUP,),
    )
    await backend.complete(history)
    seen = sim.requests[0]
    assert seen.tool_results == (
        ToolResult("toolu_1", "lookup", "Paris: France"),
        ToolResult("toolu_2", "lookup", "Rome: Italy"),
    )
    messages = seen.body["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "user"]
    assert messages[1]["content"] == [
        {"type": "text", "text": "Looking."},
        {"type": "tool_use", "id": "toolu_1", "name": "lookup", "input": {"q": "paris"}},
        {"type": "tool_use", "id": "toolu_2", "name": "lookup", "input": {"q": "rome"}},
    ]
    assert messages[2]["content"] == [
        {"type": "tool_result", "tool_use_id": "toolu_1", "content": "Paris: France"},
        {"type": "tool_result", "tool_use_id": "toolu_2", "content": "Rome: Italy"},
        {"type": "text", "text": "Now compare."},
    ]


async def test_client_is_reused_and_closed(sim: ProviderSimulator) -> None:
    b = AnthropicBackend(MODEL, api_key="k", base_url=sim.anthropic_base_url)
    await b.complete(ask("one"))
    client = b._client
    await b.complete(ask("two"))
    assert b._client is client is not None
    await b.aclose()
    assert client.is_closed()


def test_key_comes_from_anthropic_api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    with pytest.raises(AuthenticationError, match="ANTHROPIC_API_KEY"):
        AnthropicBackend(MODEL)
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-env")
    assert AnthropicBackend(MODEL)._api_key == "sk-ant-env"
    assert AnthropicBackend(MODEL).provider == "anthropic"


async def test_tool_input_that_is_not_json_is_our_error_not_the_sdks() -> None:
    message: dict[str, Any] = {"id": "msg_1", "type": "message", "role": "assistant"}
    message |= {"model": MODEL, "content": [], "usage": {"input_tokens": 1, "output_tokens": 0}}
    use = {"type": "tool_use", "id": "toolu_1", "name": "lookup", "input": {}}
    broken = {"type": "input_json_delta", "partial_json": '{"q": nope}'}
    events: list[dict[str, Any]] = [
        {"type": "message_start", "message": message},
        {"type": "content_block_start", "index": 0, "content_block": use},
        {"type": "content_block_delta", "index": 0, "delta": broken},
    ]
    body = b"".join(
        b"event: %s\ndata: %s\n\n" % (e["type"].encode(), json.dumps(e).encode()) for e in events
    )
    head = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Length: %d\r\n\r\n"

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(head % len(body) + body)
        await writer.drain()

    async with raw_server(handler) as port:
        b = AnthropicBackend(MODEL, api_key="sk-ant-test", base_url=f"http://127.0.0.1:{port}")
        with pytest.raises(ProviderError) as info:
            async for _ in b.stream(ask("x", tools=(LOOKUP,))):
                pass
        await b.aclose()
    assert info.value.provider == "anthropic" and "nope" in str(info.value)
