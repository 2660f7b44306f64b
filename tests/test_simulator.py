"""The provider simulator, checked through the real vendor SDKs it exists to serve."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

import anthropic
import httpx
import httpx2
import openai
import pytest
from google import genai
from google.genai import errors as genai_errors
from google.genai import types as genai_types

from tests.sim.sim_process import SimulatorProcess
from tests.sim.sim_types import (
    Drop,
    Fault,
    Hang,
    Searched,
    SimRequest,
    SimStats,
    Text,
    ToolCalls,
    ToolCallSpec,
    ToolResult,
    estimate_tokens,
    reply_from_json,
    reply_to_json,
)
from tests.sim.simulator import ProviderSimulator, Rule

USER: list[Any] = [{"role": "user", "content": "What is the capital of France?"}]
WEATHER_TOOL: dict[str, Any] = {
    "name": "get_weather",
    "description": "Current weather in a city.",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}


@pytest.fixture
async def oai(sim: ProviderSimulator) -> AsyncIterator[openai.AsyncOpenAI]:
    client = openai.AsyncOpenAI(base_url=sim.openai_base_url, api_key="sk-test", max_retries=0)
    yield client
    await client.close()


@pytest.fixture
async def claude(sim: ProviderSimulator) -> AsyncIterator[anthropic.AsyncAnthropic]:
    client = anthropic.AsyncAnthropic(
        base_url=sim.anthropic_base_url, api_key="sk-ant-test", max_retries=0
    )
    yield client
    await client.close()


def _gemini(sim: ProviderSimulator, **options: Any) -> genai.Client:
    # With aiohttp installed (massgen's own client), google-genai would switch to it: keep it
    # on httpx2, as GoogleBackend does.
    options.setdefault("async_client_args", {"transport": httpx2.AsyncHTTPTransport()})
    http = genai_types.HttpOptions(base_url=sim.gemini_base_url, **options)
    return genai.Client(api_key="g-test", http_options=http)


@pytest.fixture
async def gemini(sim: ProviderSimulator) -> AsyncIterator[genai.Client]:
    client = _gemini(sim)
    yield client
    await client.aio.aclose()
    client.close()


def _tokens(*texts: str) -> int:
    return estimate_tokens("".join(texts))


# --- OpenAI ------------------------------------------------------------------------------------


async def test_openai_plain(sim: ProviderSimulator, oai: openai.AsyncOpenAI) -> None:
    sim.script(Text("Paris."))
    messages = [{"role": "system", "content": "Be brief."}, *USER]
    r = await oai.chat.completions.create(model="gpt-test", messages=messages)

    assert r.choices[0].message.content == "Paris."
    assert r.choices[0].finish_reason == "stop"
    assert r.model == "gpt-test"
    prompt = _tokens("Be brief.\nWhat is the capital of France?")
    assert r.usage is not None
    assert (r.usage.prompt_tokens, r.usage.completion_tokens) == (prompt, _tokens("Paris."))
    assert r.usage.total_tokens == prompt + 2
    (req,) = sim.requests
    assert (req.protocol, req.path, req.model, req.stream) == (
        "openai",
        "/v1/chat/completions",
        "gpt-test",
        False,
    )
    assert req.system == "Be brief."
    assert req.messages == (("user", "What is the capital of France?"),)
    assert req.headers["authorization"] == "<redacted>"
    assert "sk-test" not in json.dumps(dict(req.headers))
    assert req.prompt_tokens == prompt


async def test_openai_stream_with_usage(sim: ProviderSimulator, oai: openai.AsyncOpenAI) -> None:
    sim.script(Text("The capital of France is Paris."))
    stream = await oai.chat.completions.create(
        model="gpt-test",
        messages=USER,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [c async for c in stream]

    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "The capital of France is Paris."
    assert sum(1 for c in chunks if c.choices and c.choices[0].delta.content) > 3
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == _tokens("The capital of France is Paris.")
    assert all(c.usage is None for c in chunks[:-1])
    assert sim.requests[0].stream is True


async def test_openai_stream_without_usage_has_no_usage_chunk(
    sim: ProviderSimulator, oai: openai.AsyncOpenAI
) -> None:
    stream = await oai.chat.completions.create(model="m", messages=USER, stream=True)
    chunks = [c async for c in stream]
    assert all(c.choices and c.usage is None for c in chunks)
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == (
        "Simulated answer 1 from m."
    )


async def test_openai_tool_call_round_trip(sim: ProviderSimulator, oai: openai.AsyncOpenAI) -> None:
    sim.script([ToolCalls([ToolCallSpec("get_weather", {"city": "Paris"})]), Text("Sunny.")])
    tools = [{"type": "function", "function": WEATHER_TOOL}]
    first = await oai.chat.completions.create(model="m", messages=USER, tools=tools)

    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    (call,) = choice.message.tool_calls or []
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Paris"}
    messages = [
        *USER,
        choice.message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": "sunny, 21 C"},
    ]
    second = await oai.chat.completions.create(model="m", messages=messages, tools=tools)

    assert second.choices[0].message.content == "Sunny."
    req = sim.requests[1]
    assert req.tools == ("get_weather",)
    assert req.tool_results == (ToolResult(call.id, "get_weather", "sunny, 21 C"),)
    assert req.messages[-1] == ("tool", "sunny, 21 C")
    # tool schemas and earlier call arguments count as prompt
    assert req.prompt_tokens > sim.requests[0].prompt_tokens > _tokens(USER[0]["content"])


async def test_openai_stream_tool_calls(sim: ProviderSimulator, oai: openai.AsyncOpenAI) -> None:
    calls = [
        ToolCallSpec("get_weather", {"city": "Paris"}),
        ToolCallSpec("get_weather", {"city": "Rome"}),
    ]
    sim.script(ToolCalls(calls, text="Checking."))
    stream = await oai.chat.completions.create(
        model="m",
        messages=USER,
        tools=[{"type": "function", "function": WEATHER_TOOL}],
        stream=True,
    )
    names: dict[int, str] = {}
    args: dict[int, str] = {}
    text, finish = "", None
    async for chunk in stream:
        delta = chunk.choices[0].delta
        text += delta.content or ""
        for tc in delta.tool_calls or ():
            if tc.function and tc.function.name:
                names[tc.index] = tc.function.name
            args[tc.index] = args.get(tc.index, "") + (
                (tc.function and tc.function.arguments) or ""
            )
        finish = chunk.choices[0].finish_reason or finish
    assert text == "Checking."
    assert finish == "tool_calls"
    assert names == {0: "get_weather", 1: "get_weather"}
    assert [json.loads(args[i]) for i in (0, 1)] == [{"city": "Paris"}, {"city": "Rome"}]


async def test_openai_path_without_v1_and_truncation(sim: ProviderSimulator) -> None:
    sim.script(Text("cut", truncated=True))
    async with openai.AsyncOpenAI(base_url=sim.url, api_key="k", max_retries=0) as client:
        r = await client.chat.completions.create(model="m", messages=USER)
    assert r.choices[0].finish_reason == "length"
    assert sim.requests[0].path == "/chat/completions"


# --- OpenAI Responses API ----------------------------------------------------------------------


async def test_responses_through_the_sdk(sim: ProviderSimulator, oai: openai.AsyncOpenAI) -> None:
    sim.script(
        [
            Searched("Paris.", [("Paris", "https://en.wikipedia.org/wiki/Paris")], queries=("q",)),
            ToolCalls([ToolCallSpec("get_weather", {"city": "Paris"}, id="call_w")], text="Hm."),
        ]
    )
    tools: Any = [{"type": "function", **WEATHER_TOOL}, {"type": "web_search"}]
    first = await oai.responses.create(
        model="gpt-4.1",
        input=USER,
        tools=tools,
        include=["web_search_call.action.sources"],
    )
    assert first.status == "completed" and first.output_text == "Paris."
    search, message = first.output
    assert search.type == "web_search_call" and search.action.type == "search"
    assert search.action.query == "q" and search.action.sources is not None
    assert message.type == "message"
    (part,) = message.content
    assert part.type == "output_text"
    assert [a.url for a in part.annotations] == ["https://en.wikipedia.org/wiki/Paris"]  # type: ignore[union-attr]
    assert first.usage is not None and first.usage.input_tokens == sim.requests[0].prompt_tokens
    req = sim.requests[0]
    assert (req.protocol, req.path, req.tools) == (
        "responses",
        "/v1/responses",
        ("get_weather", "web_search"),
    )
    stream = await oai.responses.create(model="gpt-4.1", input=USER, tools=tools, stream=True)
    events = [event async for event in stream]
    kinds = [e.type for e in events]
    assert kinds[0] == "response.created" and kinds[-1] == "response.completed"
    assert "response.function_call_arguments.delta" in kinds
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert deltas == "Hm."
    final = events[-1].response  # type: ignore[union-attr]
    call = final.output[-1]
    assert call.type == "function_call" and call.call_id == "call_w"
    assert json.loads(call.arguments) == {"city": "Paris"}
    assert [e.sequence_number for e in events] == list(range(len(events)))


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"model": "m", "messages": USER}, "Unsupported parameter: 'messages'"),
        ({"model": "m", "input": USER, "max_tokens": 5}, "max_tokens"),
        (
            {"model": "m", "input": USER, "tools": [{"type": "code_interpreter"}]},
            "code_interpreter",
        ),
        (
            {
                "model": "m",
                "input": USER,
                "tools": [{"type": "function", "function": WEATHER_TOOL}],
            },
            "tools[0].name",
        ),
        (
            {
                "model": "m",
                "input": [*USER, {"type": "function_call_output", "call_id": "c", "output": "x"}],
            },
            "No tool call found",
        ),
        (
            {"model": "m", "input": USER, "tools": [{"type": "web_search", "domains": ["a.org"]}]},
            "tools[0].domains",
        ),
        ({"model": "m", "input": [{"type": "reasoning"}]}, "input[0].type"),
    ],
)
def test_responses_refuses_what_the_api_refuses(
    sim: ProviderSimulator, body: dict[str, Any], message: str
) -> None:
    reply = httpx.post(sim.openai_base_url + "/responses", json=body)
    assert reply.status_code == 400 and message in reply.json()["error"]["message"]
    assert sim.requests == []


def test_chat_completions_refuses_an_image_in_a_tool_message(sim: ProviderSimulator) -> None:
    call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}
    messages = [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "c1", "content": [{"type": "text", "text": "x"}, image]},
    ]
    body = {"model": "m", "messages": messages}
    reply = httpx.post(sim.openai_base_url + "/chat/completions", json=body)
    assert reply.status_code == 400 and "role 'user'" in reply.json()["error"]["message"]
    messages[-1]["content"] = [{"type": "text", "text": "x"}]  # text parts only: taken
    messages.append({"role": "user", "content": [image]})
    assert httpx.post(sim.openai_base_url + "/chat/completions", json=body).status_code == 200


def test_responses_truncation_and_tool_results(sim: ProviderSimulator) -> None:
    sim.script([Text("cut", truncated=True)])
    body = {
        "model": "grok-4",
        "input": [
            *USER,
            {"type": "function_call", "call_id": "c1", "name": "get_weather", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c1", "output": "sunny"},
        ],
    }
    data = httpx.post(sim.url + "/responses", json=body).json()
    assert data["status"] == "incomplete"
    assert data["incomplete_details"] == {"reason": "max_output_tokens"}
    (req,) = sim.requests
    assert req.tool_results == (ToolResult("c1", "get_weather", "sunny"),)
    assert req.messages[-1] == ("tool", "sunny")


# --- Anthropic ---------------------------------------------------------------------------------


async def test_anthropic_plain(sim: ProviderSimulator, claude: anthropic.AsyncAnthropic) -> None:
    sim.script(Text("Paris."))
    m = await claude.messages.create(
        model="claude-test",
        max_tokens=100,
        system="Be brief.",
        messages=USER,
    )
    assert [b.type for b in m.content] == ["text"]
    assert m.content[0].text == "Paris."
    assert m.stop_reason == "end_turn"
    prompt = _tokens("Be brief.\nWhat is the capital of France?")
    assert (m.usage.input_tokens, m.usage.output_tokens) == (prompt, _tokens("Paris."))
    (req,) = sim.requests
    assert (req.protocol, req.path, req.model) == ("anthropic", "/v1/messages", "claude-test")
    assert req.system == "Be brief."
    assert req.messages == (("user", "What is the capital of France?"),)
    assert "sk-ant-test" not in json.dumps(dict(req.headers))


async def test_anthropic_stream_events(
    sim: ProviderSimulator, claude: anthropic.AsyncAnthropic
) -> None:
    sim.script(Text("The capital of France is Paris."))
    stream = await claude.messages.create(
        model="claude-test",
        max_tokens=100,
        messages=USER,
        stream=True,
    )
    events = [e async for e in stream]

    kinds = [e.type for e in events]
    assert kinds[0] == "message_start" and kinds[-2:] == ["message_delta", "message_stop"]
    assert kinds[1] == "content_block_start" and kinds[-3] == "content_block_stop"
    text = "".join(e.delta.text for e in events if e.type == "content_block_delta")
    assert text == "The capital of France is Paris."
    delta = events[-2]
    assert delta.delta.stop_reason == "end_turn"
    assert delta.usage.output_tokens == _tokens(text)


async def test_anthropic_stream_helper_tool_use(
    sim: ProviderSimulator, claude: anthropic.AsyncAnthropic
) -> None:
    sim.script(ToolCalls([ToolCallSpec("get_weather", {"city": "Paris"})], text="Let me check."))
    tool = {
        "name": "get_weather",
        "description": WEATHER_TOOL["description"],
        "input_schema": WEATHER_TOOL["parameters"],
    }
    async with claude.messages.stream(
        model="claude-test",
        max_tokens=100,
        messages=USER,
        tools=[tool],
    ) as stream:
        final = await stream.get_final_message()
    assert [b.type for b in final.content] == ["text", "tool_use"]
    use = final.content[1]
    assert use.name == "get_weather" and use.input == {"city": "Paris"}
    assert final.stop_reason == "tool_use"
    assert final.usage.input_tokens == sim.requests[0].prompt_tokens
    assert sim.requests[0].tools == ("get_weather",)


async def test_anthropic_tool_result_round_trip(
    sim: ProviderSimulator, claude: anthropic.AsyncAnthropic
) -> None:
    sim.script([ToolCalls([ToolCallSpec("get_weather", {"city": "Paris"})]), Text("Sunny.")])
    tool = {"name": "get_weather", "input_schema": WEATHER_TOOL["parameters"]}
    first = await claude.messages.create(
        model="c",
        max_tokens=50,
        messages=USER,
        tools=[tool],
    )
    (use,) = first.content
    assert use.type == "tool_use"
    messages = [
        *USER,
        {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in first.content]},
        {
            "role": "user",
            "content": [
                {
                    "type": "tool_result",
                    "tool_use_id": use.id,
                    "content": "sunny",
                    "is_error": False,
                }
            ],
        },
    ]
    second = await claude.messages.create(
        model="c",
        max_tokens=50,
        messages=messages,
        tools=[tool],
    )
    assert second.content[0].text == "Sunny."
    assert sim.requests[1].tool_results == (ToolResult(use.id, "get_weather", "sunny"),)
    assert sim.requests[1].messages[-1] == ("tool", "sunny")


async def test_anthropic_missing_max_tokens_is_400(sim: ProviderSimulator) -> None:
    async with httpx.AsyncClient() as client:
        r = await client.post(sim.url + "/v1/messages", json={"model": "c", "messages": USER})
    assert r.status_code == 400
    assert r.json()["type"] == "error"
    assert r.json()["error"]["type"] == "invalid_request_error"
    assert sim.requests == []


# --- Gemini ------------------------------------------------------------------------------------


async def test_gemini_plain(sim: ProviderSimulator, gemini: genai.Client) -> None:
    sim.script(Text("Paris."))
    r = await gemini.aio.models.generate_content(
        model="gemini-test",
        contents="What is the capital of France?",
        config=genai_types.GenerateContentConfig(system_instruction="Be brief."),
    )
    assert r.text == "Paris."
    assert r.candidates and r.candidates[0].finish_reason == genai_types.FinishReason.STOP
    usage = r.usage_metadata
    prompt = _tokens("Be brief.\nWhat is the capital of France?")
    assert usage is not None
    assert (usage.prompt_token_count, usage.candidates_token_count) == (prompt, 2)
    assert usage.total_token_count == prompt + 2
    (req,) = sim.requests
    assert (req.protocol, req.model, req.path) == (
        "gemini",
        "gemini-test",
        "/v1/models/gemini-test:generateContent",
    )
    assert req.system == "Be brief."
    assert req.messages == (("user", "What is the capital of France?"),)
    assert req.headers["x-goog-api-key"] == "<redacted>"


async def test_gemini_stream_on_v1beta(sim: ProviderSimulator) -> None:
    sim.script(Text("The capital of France is Paris."))
    client = _gemini(sim, api_version="v1beta")
    try:
        stream = await client.aio.models.generate_content_stream(model="g", contents="Capital?")
        chunks = [c async for c in stream]
    finally:
        await client.aio.aclose()
        client.close()
    assert "".join(c.text or "" for c in chunks) == "The capital of France is Paris."
    assert len(chunks) > 3
    last = chunks[-1]
    assert last.candidates and last.candidates[0].finish_reason == genai_types.FinishReason.STOP
    assert last.usage_metadata is not None
    assert last.usage_metadata.candidates_token_count == _tokens("The capital of France is Paris.")
    assert sim.requests[0].path == "/v1beta/models/g:streamGenerateContent"
    assert sim.requests[0].stream is True


async def test_gemini_function_call_round_trip(
    sim: ProviderSimulator, gemini: genai.Client
) -> None:
    sim.script([ToolCalls([ToolCallSpec("get_weather", {"city": "Paris"})]), Text("Sunny.")])
    tool = genai_types.Tool(
        function_declarations=[
            genai_types.FunctionDeclaration(
                name="get_weather",
                description=WEATHER_TOOL["description"],
                parameters_json_schema=WEATHER_TOOL["parameters"],
            )
        ]
    )
    config = genai_types.GenerateContentConfig(tools=[tool])
    user = genai_types.Content(role="user", parts=[genai_types.Part(text="Weather in Paris?")])
    first = await gemini.aio.models.generate_content(model="g", contents=[user], config=config)
    (call,) = first.function_calls or []
    assert (call.name, call.args) == ("get_weather", {"city": "Paris"})

    assert first.candidates and first.candidates[0].content
    reply = genai_types.Content(
        role="user",
        parts=[genai_types.Part.from_function_response(name="get_weather", response={"t": 21})],
    )
    contents = [user, first.candidates[0].content, reply]
    second = await gemini.aio.models.generate_content(model="g", contents=contents, config=config)
    assert second.text == "Sunny."
    req = sim.requests[1]
    assert req.tools == ("get_weather",)
    assert req.tool_results == (ToolResult("", "get_weather", '{"t":21}'),)
    assert [role for role, _ in req.messages] == ["user", "assistant", "tool"]


# --- faults ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (400, openai.BadRequestError),
        (401, openai.AuthenticationError),
        (429, openai.RateLimitError),
        (500, openai.InternalServerError),
        (503, openai.InternalServerError),
    ],
)
async def test_openai_faults(
    sim: ProviderSimulator, oai: openai.AsyncOpenAI, status: int, error: type[Exception]
) -> None:
    sim.script(Fault(status, retry_after=2 if status == 429 else None, message="nope"))
    with pytest.raises(error) as info:
        await oai.chat.completions.create(model="m", messages=USER)
    exc = info.value
    assert isinstance(exc, openai.APIStatusError)
    assert exc.status_code == status
    assert exc.body == {
        "message": "nope",
        "type": exc.body["type"],
        "param": None,
        "code": exc.body["code"],
    }
    if status == 429:
        assert exc.response.headers["retry-after"] == "2"


@pytest.mark.parametrize(
    ("status", "error", "kind"),
    [
        (401, anthropic.AuthenticationError, "authentication_error"),
        (429, anthropic.RateLimitError, "rate_limit_error"),
        (500, anthropic.InternalServerError, "api_error"),
        (529, anthropic.OverloadedError, "overloaded_error"),
    ],
)
async def test_anthropic_faults(
    sim: ProviderSimulator,
    claude: anthropic.AsyncAnthropic,
    status: int,
    error: type[Exception],
    kind: str,
) -> None:
    sim.script(Fault(status, retry_after=0.5))
    with pytest.raises(error) as info:
        await claude.messages.create(model="c", max_tokens=10, messages=USER)
    exc = info.value
    assert isinstance(exc, anthropic.APIStatusError)
    assert exc.status_code == status
    assert exc.body["type"] == "error" and exc.body["error"]["type"] == kind
    assert exc.response.headers["retry-after"] == "0.5"


@pytest.mark.parametrize(
    ("status", "error", "name"),
    [
        (401, genai_errors.ClientError, "UNAUTHENTICATED"),
        (429, genai_errors.ClientError, "RESOURCE_EXHAUSTED"),
        (503, genai_errors.ServerError, "UNAVAILABLE"),
    ],
)
async def test_gemini_faults(
    sim: ProviderSimulator, gemini: genai.Client, status: int, error: type[Exception], name: str
) -> None:
    sim.script(Fault(status, retry_after=3))
    with pytest.raises(error) as info:
        await gemini.aio.models.generate_content(model="g", contents="hi")
    exc = info.value
    assert isinstance(exc, genai_errors.APIError)
    assert (exc.code, exc.status) == (status, name)
    assert exc.response.headers["retry-after"] == "3"


async def test_fault_then_success(sim: ProviderSimulator, oai: openai.AsyncOpenAI) -> None:
    sim.script([Fault(429, retry_after=1), Text("ok")])
    with pytest.raises(openai.RateLimitError):
        await oai.chat.completions.create(model="m", messages=USER)
    for _ in range(2):  # the last reply repeats
        r = await oai.chat.completions.create(model="m", messages=USER)
        assert r.choices[0].message.content == "ok"
    stats = sim.stats
    assert stats.replies == {"fault": 1, "text": 2}
    assert stats.completion_tokens == 2 * _tokens("ok")  # faults are not billed
    assert stats.prompt_tokens == 2 * sim.requests[0].prompt_tokens


async def test_fault_in_stream_mode_is_an_http_error(
    sim: ProviderSimulator, claude: anthropic.AsyncAnthropic
) -> None:
    sim.script(Fault(529))
    with pytest.raises(anthropic.OverloadedError):
        await claude.messages.create(model="c", max_tokens=5, messages=USER, stream=True)


async def test_hang_times_out_in_each_sdk(sim: ProviderSimulator) -> None:
    sim.script(Hang())
    async with openai.AsyncOpenAI(
        base_url=sim.openai_base_url, api_key="k", max_retries=0, timeout=0.2
    ) as oai:
        with pytest.raises(openai.APITimeoutError):
            await oai.chat.completions.create(model="m", messages=USER)
    async with anthropic.AsyncAnthropic(
        base_url=sim.anthropic_base_url, api_key="k", max_retries=0, timeout=0.2
    ) as claude:
        with pytest.raises(anthropic.APITimeoutError):
            await claude.messages.create(model="c", max_tokens=5, messages=USER)
    client = _gemini(sim, timeout=200)  # milliseconds
    try:
        # google-genai does not wrap transport errors: it raises httpx2's own
        with pytest.raises(httpx2.TimeoutException):
            await client.aio.models.generate_content(model="g", contents="hi")
    finally:
        await client.aio.aclose()
        client.close()
    assert sim.stats.replies == {"hang": 3}
    await sim.wait_until_idle_async(timeout=5)  # each hang ended when its client gave up
    assert sim.stats.in_flight == 0


async def test_hang_does_not_block_stop() -> None:
    simulator = ProviderSimulator().start()
    simulator.script(Hang())
    async with openai.AsyncOpenAI(
        base_url=simulator.openai_base_url, api_key="k", max_retries=0, timeout=30
    ) as oai:
        task = asyncio.ensure_future(oai.chat.completions.create(model="m", messages=USER))
        await simulator.wait_for_requests_async(1)
        started = time.monotonic()
        await asyncio.to_thread(simulator.stop)
        assert time.monotonic() - started < 2
        with pytest.raises(openai.APIConnectionError):
            await task


@pytest.mark.parametrize("after", ["request", "headers", "partial"])
@pytest.mark.parametrize("stream", [False, True])
async def test_drop_is_a_connection_error(
    sim: ProviderSimulator, oai: openai.AsyncOpenAI, after: str, stream: bool
) -> None:
    sim.script(Drop(after))
    with pytest.raises(openai.APIConnectionError):
        if stream:
            async for _ in await oai.chat.completions.create(model="m", messages=USER, stream=True):
                pass
        else:
            await oai.chat.completions.create(model="m", messages=USER)
    assert sim.stats.replies == {"drop": 1}
    assert sim.stats.completion_tokens == 0
    # the next request on the same client gets a fresh connection and an answer
    sim.clear_rules()
    r = await oai.chat.completions.create(model="m", messages=USER)
    assert r.choices[0].message.content == "Simulated answer 2 from m."


async def test_drop_in_anthropic_and_gemini(
    sim: ProviderSimulator, claude: anthropic.AsyncAnthropic, gemini: genai.Client
) -> None:
    sim.script(Drop("partial"))
    with pytest.raises(anthropic.APIConnectionError):
        await claude.messages.create(model="c", max_tokens=5, messages=USER)
    # google-genai lets httpx2's own transport error out
    with pytest.raises(httpx2.RemoteProtocolError):
        await gemini.aio.models.generate_content(model="g", contents="hi")
    assert sim.stats.replies == {"drop": 2}


async def test_drop_partial_stream_delivers_some_events_first(
    sim: ProviderSimulator, claude: anthropic.AsyncAnthropic
) -> None:
    sim.script(Drop("partial"))
    seen: list[str] = []
    # anthropic lets httpx2's own error out of a stream cut short
    with pytest.raises((httpx2.RemoteProtocolError, anthropic.APIConnectionError)):
        async for event in await claude.messages.create(
            model="c",
            max_tokens=5,
            messages=USER,
            stream=True,
        ):
            seen.append(event.type)
    assert "message_start" in seen and "message_stop" not in seen


# --- latency and concurrency -------------------------------------------------------------------


async def test_latency_is_applied_concurrently(
    oai: openai.AsyncOpenAI, sim: ProviderSimulator
) -> None:
    sim.latency = 0.2

    async def one() -> float:
        t = time.monotonic()
        await oai.chat.completions.create(model="m", messages=USER)
        return time.monotonic() - t

    started = time.monotonic()
    durations = await asyncio.gather(*(one() for _ in range(10)))
    total = time.monotonic() - started
    assert min(durations) >= 0.2
    assert total < 1.0  # 10 x 0.2 s one after another would be 2 s
    assert sim.stats.requests == 10


async def test_rule_latency_overrides_default(
    sim: ProviderSimulator, oai: openai.AsyncOpenAI
) -> None:
    sim.script(Text("slow"), match="slow please", latency=0.4)

    async def timed(content: str) -> float:
        t = time.monotonic()
        await oai.chat.completions.create(
            model="m", messages=[{"role": "user", "content": content}]
        )
        return time.monotonic() - t

    slow, fast = await asyncio.gather(timed("slow please"), timed("fast"))
    assert slow >= 0.4
    assert fast < slow


async def test_max_concurrency_and_in_flight(sim: ProviderSimulator) -> None:
    sim.script(Hang())
    async with openai.AsyncOpenAI(
        base_url=sim.openai_base_url, api_key="k", max_retries=0, timeout=30
    ) as oai:
        tasks = [
            asyncio.ensure_future(oai.chat.completions.create(model="m", messages=USER))
            for _ in range(12)
        ]
        await sim.wait_for_requests_async(12)
        stats = sim.stats
        assert (stats.in_flight, stats.max_concurrency) == (12, 12)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    await sim.wait_until_idle_async()
    assert sim.stats.in_flight == 0
    assert sim.stats.max_concurrency == 12


def test_keep_alive_reuses_one_connection(sim: ProviderSimulator) -> None:
    body = {"model": "m", "messages": USER}
    with httpx.Client(base_url=sim.openai_base_url) as client:
        for stream in (False, True) * 5:
            r = client.post("/chat/completions", json={**body, "stream": stream})
            assert r.status_code == 200
    assert sim.stats.requests == 10
    assert sim.stats.connections == 1


def test_chunked_request_body_is_read(sim: ProviderSimulator) -> None:
    payload = json.dumps({"model": "m", "messages": USER}).encode()
    with httpx.Client(base_url=sim.openai_base_url) as client:
        r = client.post("/chat/completions", content=iter([payload[:10], payload[10:]]))
    assert r.status_code == 200
    assert sim.requests[0].messages == (("user", USER[0]["content"]),)


# --- rules, responder, default -----------------------------------------------------------------


def _ask(sim: ProviderSimulator, content: str, model: str = "m", system: str = "") -> str:
    messages = ([{"role": "system", "content": system}] if system else []) + [
        {"role": "user", "content": content}
    ]
    r = httpx.post(
        sim.openai_base_url + "/chat/completions", json={"model": model, "messages": messages}
    )
    assert r.status_code == 200, r.text
    return str(r.json()["choices"][0]["message"]["content"])


def test_default_answer_is_deterministic(sim: ProviderSimulator) -> None:
    assert _ask(sim, "a", model="gpt-a") == "Simulated answer 1 from gpt-a."
    assert _ask(sim, "b", model="gpt-b") == "Simulated answer 2 from gpt-b."
    sim.reset()
    assert _ask(sim, "c", model="gpt-a") == "Simulated answer 1 from gpt-a."


def test_rules_match_model_text_and_regex_first_wins(sim: ProviderSimulator) -> None:
    by_model = sim.script(Text("model rule"), model="special")
    sim.script(Text("substring rule"), match="capital")
    sim.script(Text("regex rule"), match=re.compile(r"\bvote\b"))
    sim.script(Text("system rule"), match="JUDGE")
    sim.script(Text("never"), match="capital")  # shadowed by the earlier rule

    assert _ask(sim, "the capital?", model="special") == "model rule"
    assert _ask(sim, "the capital?") == "substring rule"
    assert _ask(sim, "please vote now") == "regex rule"
    assert _ask(sim, "please voter") == "Simulated answer 4 from m."
    assert _ask(sim, "hello", system="You are the JUDGE.") == "system rule"
    assert by_model.hits == 1
    assert [r.hits for r in sim.rules] == [1, 1, 1, 1, 0]


def test_replies_in_order_last_repeats(sim: ProviderSimulator) -> None:
    sim.script([Text("one"), Text("two")])
    assert [_ask(sim, "x") for _ in range(4)] == ["one", "two", "two", "two"]


def test_responder_is_checked_first_and_may_pass(sim: ProviderSimulator) -> None:
    sim.script(Text("rule"))
    seen: list[SimRequest] = []

    def responder(request: SimRequest) -> Text | None:
        seen.append(request)
        return Text(request.last_user_text.upper()) if "shout" in request.prompt_text else None

    sim.responder = responder
    assert _ask(sim, "shout this") == "SHOUT THIS"
    assert _ask(sim, "quiet") == "rule"
    assert [r.index for r in seen] == [1, 2]
    sim.reset(rules=True)
    assert sim.responder is None and sim.rules == []


def test_failing_responder_gives_500_and_frees_the_slot(sim: ProviderSimulator) -> None:
    def responder(request: SimRequest) -> Text:
        raise RuntimeError("bug in a test responder")

    sim.responder = responder
    r = httpx.post(sim.openai_base_url + "/chat/completions", json={"model": "m", "messages": USER})
    assert r.status_code == 500
    assert sim.stats.in_flight == 0 and sim.stats.requests == 1


def test_script_rejects_empty_replies(sim: ProviderSimulator) -> None:
    with pytest.raises(ValueError, match="at least one reply"):
        sim.script([])


def test_bad_json_and_unknown_route(sim: ProviderSimulator) -> None:
    r = httpx.post(sim.openai_base_url + "/chat/completions", content=b"{not json")
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"
    r = httpx.post(sim.url + "/v1beta/models/g:generateContent", json={"nope": 1})
    assert r.status_code == 400 and r.json()["error"]["status"] == "INVALID_ARGUMENT"
    r = httpx.get(sim.url + "/v1/models")
    assert r.status_code == 404
    assert sim.stats.requests == 0


# --- observing ---------------------------------------------------------------------------------


def test_wait_for_requests_times_out(sim: ProviderSimulator) -> None:
    with pytest.raises(TimeoutError, match="0 of 1"):
        sim.wait_for_requests(1, timeout=0.05)


def test_wait_for_requests_from_another_thread(sim: ProviderSimulator) -> None:
    sim.latency = 0.05
    with httpx.Client() as client:
        done = asyncio.run(_fire_and_wait(sim, client))
    assert done == 3


async def _fire_and_wait(sim: ProviderSimulator, client: httpx.Client) -> int:
    body = {"model": "m", "messages": USER}
    posts = [
        asyncio.to_thread(client.post, sim.openai_base_url + "/chat/completions", json=body)
        for _ in range(3)
    ]
    tasks = [asyncio.ensure_future(p) for p in posts]
    seen = await sim.wait_for_requests_async(3, timeout=5)
    await asyncio.gather(*tasks)
    return len(seen)


def test_stats_by_protocol_and_model(sim: ProviderSimulator) -> None:
    _ask(sim, "a", model="x")
    _ask(sim, "b", model="y")
    httpx.post(
        sim.url + "/v1/messages",
        json={"model": "c", "max_tokens": 5, "messages": USER},
    ).raise_for_status()
    httpx.post(
        sim.url + "/v1beta/models/g:generateContent",
        json={"contents": [{"role": "user", "parts": [{"text": "hi"}]}]},
    ).raise_for_status()
    stats = sim.stats
    assert stats.requests == 4
    assert stats.by_protocol == {"openai": 2, "anthropic": 1, "gemini": 1}
    assert stats.by_model == {"x": 1, "y": 1, "c": 1, "g": 1}
    assert stats.prompt_tokens == sum(r.prompt_tokens for r in sim.requests)
    assert stats.max_concurrency == 1 and stats.in_flight == 0


def test_json_forms_round_trip() -> None:
    replies = [
        Text("hi", truncated=True),
        ToolCalls([ToolCallSpec("f", {"a": [1, 2]}, id="c1")], text="t"),
        Fault(429, retry_after=1.5, message="m", headers={"x-a": "b"}),
        Hang(),
        Drop("partial"),
    ]
    assert [reply_from_json(reply_to_json(r)) for r in replies] == replies
    assert reply_from_json("plain") == Text("plain")
    assert reply_from_json({"status": 503}) == Fault(503)
    with pytest.raises(ValueError, match="unknown reply type"):
        reply_from_json({"type": "teleport"})
    with pytest.raises(ValueError, match="bad drop point"):
        reply_from_json({"type": "drop", "after": "never"})
    rule = Rule.from_json(
        {
            "replies": ["a", {"status": 500}],
            "model": "m",
            "match": "x+",
            "regex": True,
            "latency": 1,
        }
    )
    again = Rule.from_json(rule.to_json())
    assert again.replies == (Text("a"), Fault(500))
    assert isinstance(again.match, re.Pattern) and again.match.pattern == "x+"
    assert (again.model, again.latency) == ("m", 1)


def test_sim_request_json_round_trip(sim: ProviderSimulator) -> None:
    _ask(sim, "hello", system="sys")
    (req,) = sim.requests
    assert SimRequest.from_json(json.loads(json.dumps(req.to_json()))) == req


# --- HTTP control and the standalone process ---------------------------------------------------


def test_http_control_endpoints(sim: ProviderSimulator) -> None:
    with httpx.Client(base_url=sim.url) as client:
        rules = {
            "rules": [{"replies": [{"type": "fault", "status": 429, "retry_after": 1}, "ok"]}],
            "latency": 0.0,
        }
        assert client.post("/_sim/script", json=rules).json()["ok"] is True
        body = {"model": "m", "messages": USER}
        first = client.post("/v1/chat/completions", json=body)
        assert first.status_code == 429 and first.headers["retry-after"] == "1"
        assert (
            client.post("/v1/chat/completions", json=body).json()["choices"][0]["message"][
                "content"
            ]
            == "ok"
        )

        stats = SimStats.from_json(client.get("/_sim/stats").json())
        assert (stats.requests, stats.replies) == (2, {"fault": 1, "text": 1})
        records = client.get("/_sim/requests", params={"since": 1}).json()["requests"]
        assert [r["index"] for r in records] == [2]
        assert SimRequest.from_json(records[0]).messages == (("user", USER[0]["content"]),)
        assert len(client.get("/_sim/rules").json()["rules"]) == 1

        assert client.post("/_sim/reset", json={"rules": True}).json() == {"ok": True}
        assert client.get("/_sim/stats").json()["requests"] == 0
        assert client.get("/_sim/rules").json()["rules"] == []
        assert client.post("/_sim/script", json={"rules": [{"replies": []}]}).status_code == 400
        assert client.get("/_sim/nothing").status_code == 404


def test_standalone_process(tmp_path: Any) -> None:
    script = tmp_path / "rules.json"
    script.write_text(json.dumps([{"match": "capital", "replies": ["Paris."]}]))
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.sim.simulator", "--port", "0", "--script", str(script)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+", url)
        r = httpx.post(url + "/v1/chat/completions", json={"model": "m", "messages": USER})
        assert r.json()["choices"][0]["message"]["content"] == "Paris."
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=10)
    assert proc.returncode == 0
    assert "Traceback" not in err


def test_simulator_process_client_and_sigint() -> None:
    with SimulatorProcess(latency=0.0) as sp:
        sp.script([Text("scripted")], model="m")
        r = httpx.post(
            sp.openai_base_url + "/chat/completions", json={"model": "m", "messages": USER}
        )
        assert r.json()["choices"][0]["message"]["content"] == "scripted"
        (req,) = sp.requests()
        assert req.model == "m" and sp.stats().requests == 1
        sp.reset()
        assert sp.stats().requests == 0
        pid = sp.pid
        assert pid is not None
    # SIGINT works the same way as SIGTERM (exits 0, no traceback)
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.sim.simulator"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdout.readline().startswith("http://127.0.0.1:")
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=10)
    assert proc.returncode == 0 and "Traceback" not in err


def test_bad_script_file_exits_2(tmp_path: Any) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"rules": [{"replies": [{"type": "teleport"}]}]}')
    proc = subprocess.run(
        [sys.executable, "-m", "tests.sim.simulator", "--script", str(bad)],
        capture_output=True,
        text=True,
        timeout=10,
    )
    assert proc.returncode == 2
    assert "teleport" in proc.stderr and "Traceback" not in proc.stderr


def test_import_is_cheap() -> None:
    code = (
        "import sys, tests.sim as t; "
        "heavy = [m for m in ('openai', 'anthropic', 'google.genai', 'httpx', 'asyncio', "
        "'tests.sim.simulator') if m in sys.modules]; "
        "print(heavy); assert t.Text('x').text == 'x'"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=10)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
