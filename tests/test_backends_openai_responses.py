"""Native web search on the Responses API (``openai`` and ``xai``), against the simulator's
``/v1/responses``: every test runs through both clients, streamed and not."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from massgen.agents.agent import Agent
from massgen.backends.openai import (
    CLIENTS,
    LMStudioBackend,
    OpenAIBackend,
    OpenRouterBackend,
    XAIBackend,
)
from massgen.errors import BadRequestError, ConfigError, ProviderError, RateLimited
from massgen.tools import WebSearch
from massgen.types import (
    ChatMessage,
    Completion,
    CompletionRequest,
    NativeTool,
    Source,
    ToolCall,
    ToolSpec,
    Turn,
    Usage,
)
from tests.recorded.harness import Recorded, ReplayServer
from tests.sim.sim_types import Fault, Searched, Text, ToolCallSpec
from tests.sim.simulator import ProviderSimulator

PAGES = (
    ("Paris - Wikipedia", "https://en.wikipedia.org/wiki/Paris"),
    ("Paris facts", "https://www.britannica.com/place/Paris"),
)
SOURCES = tuple(Source(url, title) for title, url in PAGES)
LOOKUP = ToolSpec(
    "lookup",
    "Look a word up.",
    {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]},
)
PRESETS = {"openai": (OpenAIBackend, "gpt-4.1-mini"), "xai": (XAIBackend, "grok-4")}


@pytest.fixture(params=CLIENTS)
def client(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(params=[False, True], ids=["complete", "stream"])
def stream(request: pytest.FixtureRequest) -> bool:
    return bool(request.param)


@pytest.fixture(params=sorted(PRESETS))
async def backend(
    sim: ProviderSimulator, client: str, request: pytest.FixtureRequest
) -> AsyncIterator[OpenAIBackend]:
    kind, model = PRESETS[request.param]
    b = kind(model, api_key="sk-test", base_url=sim.openai_base_url, client=client)
    yield b
    await b.aclose()


def ask(*turns: ChatMessage, **kw: Any) -> CompletionRequest:
    messages = turns or (ChatMessage("system", "Be brief."), ChatMessage("user", "Capital?"))
    return CompletionRequest(messages=messages, **kw)


async def answer(backend: OpenAIBackend, request: CompletionRequest, stream: bool) -> Completion:
    if not stream:
        return await backend.complete(request)
    deltas: list[str] = []
    final: Completion | None = None
    async for chunk in backend.stream(request):
        deltas.append(chunk.delta)
        final = chunk.completion or final
    assert final is not None and "".join(deltas) == final.text
    return final


def domains(backend: OpenAIBackend) -> NativeTool:
    """A search with a domain filter each provider takes."""
    if isinstance(backend, XAIBackend):
        return NativeTool("web_search", blocked_domains=("evil.example",))
    return NativeTool("web_search", max_uses=2, allowed_domains=("wikipedia.org",))


async def test_search_and_functions_go_to_responses_and_come_back(
    sim: ProviderSimulator, backend: OpenAIBackend, stream: bool
) -> None:
    sim.script([Searched("Paris is the capital.", PAGES, queries=("capital of France",))])
    tool = domains(backend)
    done = await answer(backend, ask(tools=(LOOKUP,), native_tools=(tool,)), stream)
    (seen,) = sim.requests
    assert (seen.protocol, seen.path, seen.stream) == ("responses", "/v1/responses", stream)
    body = seen.body
    assert body["input"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Capital?"},
    ]
    assert body["store"] is False and "messages" not in body
    function, search = body["tools"]
    assert function == {"type": "function", **_flat(LOOKUP)}
    if isinstance(backend, XAIBackend):
        assert search == {"type": "web_search", "excluded_domains": ["evil.example"]}
        assert "include" not in body and "max_tool_calls" not in body
    else:
        assert search == {"type": "web_search", "filters": {"allowed_domains": ["wikipedia.org"]}}
        assert body["include"] == ["web_search_call.action.sources"]
        assert body["max_tool_calls"] == 2
    assert done.text == "Paris is the capital." and done.finish_reason == "stop"
    assert done.sources == SOURCES and done.tool_calls == ()
    (call,) = done.server_calls
    assert call.name == "web_search" and call.arguments == {"query": "capital of France"}
    assert call.ok and "https://en.wikipedia.org/wiki/Paris" in call.output
    assert done.usage == Usage(sim.stats.prompt_tokens, sim.stats.completion_tokens)
    assert done.usage.input_tokens > 0 and done.requests == 1


def _flat(spec: ToolSpec) -> dict[str, Any]:
    return {"name": spec.name, "description": spec.description, "parameters": spec.parameters}


async def test_a_tool_loop_sends_the_call_and_its_output_back(
    sim: ProviderSimulator, backend: OpenAIBackend, stream: bool
) -> None:
    sim.script(
        [
            Searched(
                "Looking it up.",
                PAGES[:1],
                queries=("paris",),
                calls=[ToolCallSpec("lookup", {"q": "Paris"}, id="call_1")],
            ),
            Text("Paris, the capital."),
        ]
    )
    search = NativeTool("web_search")
    first = await answer(backend, ask(tools=(LOOKUP,), native_tools=(search,)), stream)
    assert first.finish_reason == "tool_calls"
    assert first.tool_calls == (ToolCall("call_1", "lookup", {"q": "Paris"}),)
    assert first.text == "Looking it up." and first.sources == SOURCES[:1]
    turns = (
        ChatMessage("user", "Capital?"),
        ChatMessage("assistant", first.text, tool_calls=first.tool_calls),
        ChatMessage("tool", "the capital of France", tool_call_id="call_1", name="lookup"),
    )
    second = await answer(
        backend, ask(*turns, tools=(LOOKUP,), tool_choice="auto", native_tools=(search,)), stream
    )
    assert second.text == "Paris, the capital." and second.finish_reason == "stop"
    sent = sim.requests[1]
    assert sent.body["input"][1:] == [
        {"role": "assistant", "content": "Looking it up."},
        {
            "type": "function_call",
            "call_id": "call_1",
            "name": "lookup",
            "arguments": '{"q": "Paris"}',
        },
        {"type": "function_call_output", "call_id": "call_1", "output": "the capital of France"},
    ]
    assert sent.body["tool_choice"] == "auto"
    (result,) = sent.tool_results
    assert (result.call_id, result.name) == ("call_1", "lookup")
    total = first.usage + second.usage
    assert total == Usage(sim.stats.prompt_tokens, sim.stats.completion_tokens)


async def test_forced_tool_choice_and_settings_on_the_wire(
    sim: ProviderSimulator, client: str
) -> None:
    sim.script([Text("cut", truncated=True)])
    gpt = OpenAIBackend(
        "gpt-5",
        api_key="k",
        base_url=sim.openai_base_url,
        client=client,
        temperature=0.2,
        max_tokens=30,
        params={"reasoning_effort": "low", "top_p": 0.9},
    )
    try:
        done = await gpt.complete(
            ask(tools=(LOOKUP,), tool_choice="lookup", native_tools=(NativeTool("web_search"),))
        )
    finally:
        await gpt.aclose()
    body = sim.requests[0].body
    assert body["tool_choice"] == {"type": "function", "name": "lookup"}
    assert body["max_output_tokens"] == 30 and "max_completion_tokens" not in body
    assert body["temperature"] == 0.2 and body["top_p"] == 0.9
    assert body["reasoning"] == {"effort": "low"} and "reasoning_effort" not in body
    assert done.finish_reason == "length" and done.text == "cut"


async def test_a_rate_limit_is_mapped_with_its_retry_after(
    sim: ProviderSimulator, backend: OpenAIBackend, stream: bool
) -> None:
    sim.script([Fault(429, retry_after=7)])
    with pytest.raises(RateLimited) as err:
        await answer(backend, ask(native_tools=(NativeTool("web_search"),)), stream)
    assert err.value.retry_after == 7 and err.value.provider == backend.provider
    assert sim.requests[0].path == "/v1/responses"


async def test_a_request_without_native_tools_stays_on_chat_completions(
    sim: ProviderSimulator, backend: OpenAIBackend, stream: bool
) -> None:
    sim.script([Text("Paris.")])
    done = await answer(backend, ask(tools=(LOOKUP,)), stream)
    seen = sim.requests[0]
    assert (seen.protocol, seen.path) == ("openai", "/v1/chat/completions")
    assert seen.body["tools"][0]["function"]["name"] == "lookup"
    assert done.text == "Paris." and done.server_calls == () and done.sources == ()


def _events(*events: dict[str, Any]) -> bytes:
    return b"".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n".encode() for e in events)


@pytest.mark.parametrize(
    ("event", "error"),
    [
        (
            {
                "type": "response.failed",
                "response": {
                    "status": "failed",
                    "error": {"code": "server_error", "message": "boom"},
                },
            },
            ProviderError,
        ),
        ({"type": "error", "code": "rate_limit_exceeded", "message": "slow down"}, RateLimited),
        ({"type": "error", "code": "invalid_prompt", "message": "refused"}, BadRequestError),
    ],
)
async def test_errors_inside_a_stream_are_ours(
    client: str, event: dict[str, Any], error: type[ProviderError]
) -> None:
    delta = {"type": "response.output_text.delta", "delta": "Par"}
    events = Recorded(
        "failed", 200, (("Content-Type", "text/event-stream"),), _events(delta, event)
    )
    with ReplayServer([events]) as server:
        gpt = OpenAIBackend("gpt-4o", api_key="k", base_url=server.url + "/v1", client=client)
        deltas: list[str] = []
        with pytest.raises(error) as err:
            async for chunk in gpt.stream(ask(native_tools=(NativeTool("web_search"),))):
                deltas.append(chunk.delta)
        await gpt.aclose()
    assert server.received[0].path == "/v1/responses"
    assert deltas == ["Par"] and type(err.value) is error
    assert err.value.retryable is (error is not BadRequestError)  # a refused prompt is final


# -- what each backend offers ------------------------------------------------------------------
def test_which_models_and_filters_search_natively() -> None:
    search = NativeTool("web_search")
    allow = NativeTool("web_search", allowed_domains=("a.org",))
    block = NativeTool("web_search", blocked_domains=("a.org",))
    gpt = OpenAIBackend("gpt-4.1", api_key="k")
    assert gpt.supports_native(search, with_functions=True) and gpt.supports_native(allow)
    assert not gpt.supports_native(block)  # OpenAI's tool has an allow list only
    for model in ("gpt-4o-mini", "gpt-5-mini", "o3", "o4-mini"):
        assert gpt.supports_native(search, model=model), model
    for model in ("gpt-4.1-nano", "gpt-3.5-turbo", "gpt-4o-audio-preview"):
        assert not gpt.supports_native(search, model=model), model
    # search models stay on Chat Completions: alone, unfiltered
    assert gpt.supports_native(search, model="gpt-4o-search-preview")
    assert not gpt.supports_native(search, model="gpt-4o-search-preview", with_functions=True)
    assert not gpt.supports_native(allow, model="gpt-5-search-api")
    grok = XAIBackend("grok-4-fast", api_key="k")
    assert grok.supports_native(search, with_functions=True)
    assert grok.supports_native(allow) and grok.supports_native(block)
    many = NativeTool("web_search", allowed_domains=tuple(f"d{i}.org" for i in range(6)))
    assert not grok.supports_native(many)  # xAI takes at most 5
    assert not grok.supports_native(search, model="grok-3")
    for preset in (LMStudioBackend, OpenRouterBackend):
        assert not preset("any", api_key="k").supports_native(search)


async def test_presets_without_native_search_refuse_before_sending(
    sim: ProviderSimulator,
) -> None:
    local = LMStudioBackend("local-model", base_url=sim.openai_base_url)
    with pytest.raises(ProviderError, match="no provider-side tool"):
        await local.complete(ask(native_tools=(NativeTool("web_search"),)))
    await local.aclose()
    assert sim.requests == []


async def test_an_agent_on_grok_searches_natively_next_to_its_tools(
    sim: ProviderSimulator, client: str
) -> None:
    sim.script(
        [
            Searched(
                "Let me count.",
                PAGES[:1],
                queries=("capital",),
                calls=[ToolCallSpec("calculator", {"expression": "2+2"})],
            ),
            Text("Paris; 4."),
        ]
    )
    grok = XAIBackend("grok-4", api_key="k", base_url=sim.openai_base_url, client=client)
    agent = Agent("ada", grok, tools=[WebSearch(mode="native"), "calculator"])
    done = await agent.respond(Turn("answer", "Capital?"))
    await grok.aclose()
    assert done.text == "Paris; 4." and done.sources == SOURCES[:1]
    first, second = sim.requests
    assert [t["type"] for t in first.body["tools"]] == ["function", "web_search"]
    assert first.body["tools"][0]["name"] == "calculator"
    assert second.path == "/v1/responses" and "4" in second.tool_results[0].content
    assert done.requests == 2


def test_native_mode_on_an_old_grok_is_a_config_error() -> None:
    grok = XAIBackend("grok-3", api_key="k")
    with pytest.raises(ConfigError, match="has none"):
        WebSearch(mode="native").check_backend(grok)


def test_a_failed_search_and_a_filtered_answer_are_reported() -> None:
    from massgen.backends import openai_responses

    data = {
        "status": "incomplete",
        "incomplete_details": {"reason": "content_filter"},
        "output": [
            {"type": "web_search_call", "id": "ws_1", "status": "failed", "action": {}},
            {
                "type": "web_search_call",
                "id": "ws_2",
                "status": "completed",
                "action": {"type": "open_page", "url": "https://a.org/x"},
            },
        ],
        "usage": {"input_tokens": 3, "output_tokens": 0},
    }
    answer = openai_responses.Assembly("gpt-4o", provider="openai")
    answer.whole(data)
    done = answer.completion(ask(), 0.1)
    failed, opened = done.server_calls
    assert (failed.id, failed.ok, failed.output) == ("ws_1", False, "failed")
    assert opened.ok and opened.arguments == {"url": "https://a.org/x", "action": "open_page"}
    assert done.finish_reason == "content_filter" and done.usage == Usage(3, 0)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (  # Chat Completions
            {
                "prompt_tokens": 336,
                "completion_tokens": 96,
                "prompt_tokens_details": {"cached_tokens": 256},
                "completion_tokens_details": {"reasoning_tokens": 59},
            },
            Usage(336, 96, 256, 59),
        ),
        (  # Responses
            {
                "input_tokens": 34,
                "output_tokens": 226,
                "input_tokens_details": {"cached_tokens": 0},
                "output_tokens_details": {"reasoning_tokens": 59},
            },
            Usage(34, 226, 0, 59),
        ),
        # DeepSeek without the details: its own cache-hit count.
        (
            {"prompt_tokens": 563, "completion_tokens": 9, "prompt_cache_hit_tokens": 512},
            Usage(563, 9, 512),
        ),
        # Nulls, and details a server sent as null.
        (
            {"prompt_tokens": 5, "completion_tokens": None, "prompt_tokens_details": None},
            Usage(5, 0),
        ),
        # A part larger than its whole is read as the whole (OpenRouter: 11 of 10).
        (
            {
                "prompt_tokens": 43,
                "completion_tokens": 10,
                "completion_tokens_details": {"reasoning_tokens": 11},
            },
            Usage(43, 10, 0, 10),
        ),
        ({"prompt_tokens": "x", "completion_tokens": 2}, Usage(0, 2)),
        (None, Usage()),
    ],
)
def test_usage_reads_cached_and_reasoning_tokens(data: Any, expected: Usage) -> None:
    from massgen.backends.openai_responses import usage

    assert usage(data) == expected
