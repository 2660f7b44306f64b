"""OpenAIBackend and its presets against the simulator's Chat Completions endpoint."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest

from massgen.backends import create_backend
from massgen.backends.openai import (
    LMStudioBackend,
    OllamaBackend,
    OpenAIBackend,
    OpenRouterBackend,
    VLLMBackend,
    XAIBackend,
)
from massgen.errors import AuthenticationError, ConfigError
from massgen.testing.sim_types import Text, ToolCalls, ToolCallSpec, ToolResult
from massgen.testing.simulator import ProviderSimulator
from massgen.types import ChatMessage, CompletionRequest, ToolCall, ToolSpec, Usage

LOOKUP = ToolSpec(
    "lookup",
    "Look a word up.",
    {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]},
)


@pytest.fixture
async def backend(sim: ProviderSimulator) -> AsyncIterator[OpenAIBackend]:
    b = OpenAIBackend("gpt-4o-mini", api_key="sk-test", base_url=sim.openai_base_url)
    yield b
    await b.aclose()


def ask(text: str, **kw: object) -> CompletionRequest:
    return CompletionRequest(
        messages=(ChatMessage("system", "Be brief."), ChatMessage("user", text)),
        **kw,  # type: ignore[arg-type]
    )


async def test_complete_returns_text_usage_model_and_latency(
    sim: ProviderSimulator, backend: OpenAIBackend
) -> None:
    sim.script([Text("Paris is the capital.")], match="France")
    done = await backend.complete(ask("Capital of France?"))
    stats = sim.stats
    assert done.text == "Paris is the capital."
    assert done.model == "gpt-4o-mini"
    assert done.finish_reason == "stop"
    assert done.usage == Usage(stats.prompt_tokens, stats.completion_tokens)
    assert done.usage.input_tokens > 0 and done.usage.output_tokens > 0
    assert done.latency > 0
    seen = sim.requests[0]
    assert seen.system == "Be brief."
    assert seen.messages == (("user", "Capital of France?"),)
    assert seen.stream is False


async def test_request_body_carries_settings_and_params(sim: ProviderSimulator) -> None:
    b = OpenAIBackend(
        "gpt-4o-mini",
        api_key="k",
        base_url=sim.openai_base_url,
        temperature=0.3,
        max_tokens=50,
        params={"seed": 7, "top_p": 0.9},
    )
    try:
        await b.complete(ask("hi", extra={"top_p": 0.5}))
        await b.complete(ask("hi", temperature=0.9, max_tokens=10, model="gpt-4.1"))
    finally:
        await b.aclose()
    first, second = (r.body for r in sim.requests)
    assert first["temperature"] == 0.3
    assert first["max_completion_tokens"] == 50 and "max_tokens" not in first
    assert first["seed"] == 7
    assert first["top_p"] == 0.5  # the request's extra wins over the backend's params
    assert second["temperature"] == 0.9
    assert second["max_completion_tokens"] == 10
    assert second["model"] == "gpt-4.1"


async def test_truncated_answer_finishes_with_length(
    sim: ProviderSimulator, backend: OpenAIBackend
) -> None:
    sim.script([Text("cut off", truncated=True)])
    assert (await backend.complete(ask("x"))).finish_reason == "length"


async def test_stream_yields_deltas_then_one_final_completion(
    sim: ProviderSimulator, backend: OpenAIBackend
) -> None:
    sim.script([Text("Paris is the capital of France.")])
    chunks = [c async for c in backend.stream(ask("Capital?"))]
    deltas = [c.delta for c in chunks if c.completion is None]
    final = chunks[-1].completion
    assert len(deltas) > 1
    assert "".join(deltas) == "Paris is the capital of France."
    assert [c for c in chunks if c.completion is not None] == [chunks[-1]]
    assert final is not None
    assert final.text == "Paris is the capital of France."
    assert final.usage == Usage(sim.stats.prompt_tokens, sim.stats.completion_tokens)
    assert final.usage.output_tokens > 0
    assert final.finish_reason == "stop"
    body = sim.requests[0].body
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}


async def test_tools_and_tool_choice_are_sent_in_openai_format(
    sim: ProviderSimulator, backend: OpenAIBackend
) -> None:
    for choice in ("auto", "required", "none", "lookup"):
        await backend.complete(ask("x", tools=(LOOKUP,), tool_choice=choice))
    await backend.complete(ask("no tools"))
    bodies = [r.body for r in sim.requests]
    assert bodies[0]["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "lookup",
                "description": "Look a word up.",
                "parameters": dict(LOOKUP.parameters),
            },
        }
    ]
    assert [b["tool_choice"] for b in bodies[:3]] == ["auto", "required", "none"]
    assert bodies[3]["tool_choice"] == {"type": "function", "function": {"name": "lookup"}}
    assert "tools" not in bodies[4] and "tool_choice" not in bodies[4]
    assert sim.requests[0].tools == ("lookup",)


async def test_tool_calls_are_parsed(sim: ProviderSimulator, backend: OpenAIBackend) -> None:
    calls = [
        ToolCallSpec("lookup", {"q": "paris"}, id="call_1"),
        ToolCallSpec("lookup", {"q": "rome"}),
    ]
    sim.script([ToolCalls(calls)])
    done = await backend.complete(ask("x", tools=(LOOKUP,)))
    assert done.finish_reason == "tool_calls"
    assert done.tool_calls[0] == ToolCall("call_1", "lookup", {"q": "paris"})
    assert done.tool_calls[1].name == "lookup"
    assert done.tool_calls[1].arguments == {"q": "rome"}
    assert done.tool_calls[1].id  # the provider's id is kept


async def test_streamed_tool_call_arguments_are_assembled(
    sim: ProviderSimulator, backend: OpenAIBackend
) -> None:
    args = {"q": "a fairly long query so the JSON arrives in pieces", "n": 3}
    sim.script([ToolCalls([ToolCallSpec("lookup", args, id="call_9")], text="Let me check.")])
    chunks = [c async for c in backend.stream(ask("x", tools=(LOOKUP,)))]
    final = chunks[-1].completion
    assert final is not None
    assert final.tool_calls == (ToolCall("call_9", "lookup", args),)
    assert final.text == "Let me check."
    assert final.finish_reason == "tool_calls"


async def test_tool_results_go_back_as_tool_messages(
    sim: ProviderSimulator, backend: OpenAIBackend
) -> None:
    call = ToolCall("call_1", "lookup", {"q": "paris"})
    history = CompletionRequest(
        messages=(
            ChatMessage("user", "Look up paris"),
            ChatMessage("assistant", "", tool_calls=(call,)),
            ChatMessage("tool", "Paris: capital of France", tool_call_id="call_1", name="lookup"),
        ),
        tools=(LOOKUP,),
    )
    await backend.complete(history)
    seen = sim.requests[0]
    assert seen.tool_results == (ToolResult("call_1", "lookup", "Paris: capital of France"),)
    assistant, tool = seen.body["messages"][1:]
    assert assistant["tool_calls"][0]["id"] == "call_1"
    assert json.loads(assistant["tool_calls"][0]["function"]["arguments"]) == {"q": "paris"}
    assert tool == {"role": "tool", "tool_call_id": "call_1", "content": "Paris: capital of France"}


async def test_one_client_is_made_lazily_reused_and_closed(sim: ProviderSimulator) -> None:
    b = OpenAIBackend("gpt-4o-mini", api_key="k", base_url=sim.openai_base_url)
    assert b._client is None  # nothing is opened until the first request
    await b.complete(ask("one"))
    client = b._client
    await b.complete(ask("two"))
    assert b._client is client is not None
    await b.aclose()
    assert client.is_closed()
    assert b._client is None
    await b.aclose()  # closing twice is harmless


def test_key_comes_from_the_environment_and_a_missing_one_fails_early(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(AuthenticationError) as info:
        OpenAIBackend("gpt-4o")
    assert "OPENAI_API_KEY" in str(info.value)
    assert info.value.retryable is False
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-env")
    assert OpenAIBackend("gpt-4o")._api_key == "sk-from-env"
    assert OpenAIBackend("gpt-4o", api_key="sk-explicit")._api_key == "sk-explicit"


def test_a_model_is_required() -> None:
    with pytest.raises(ConfigError):
        OpenAIBackend("", api_key="k")


@pytest.mark.parametrize(
    ("kind", "cls", "url", "env"),
    [
        ("xai", XAIBackend, "https://api.x.ai/v1", "XAI_API_KEY"),
        ("openrouter", OpenRouterBackend, "https://openrouter.ai/api/v1", "OPENROUTER_API_KEY"),
    ],
)
def test_hosted_presets_use_their_url_and_key_variable(
    monkeypatch: pytest.MonkeyPatch, kind: str, cls: type[OpenAIBackend], url: str, env: str
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-openai-must-not-be-used")
    monkeypatch.delenv(env, raising=False)
    with pytest.raises(ConfigError) as info:
        create_backend(kind, model="m")
    assert env in str(info.value)
    monkeypatch.setenv(env, "preset-key")
    b = create_backend(kind, model="m")
    assert type(b) is cls and b.provider == kind
    assert b.base_url == url
    assert b._api_key == "preset-key"
    assert b.supports_tools


@pytest.mark.parametrize(
    ("kind", "cls", "url"),
    [
        ("lmstudio", LMStudioBackend, "http://localhost:1234/v1"),
        ("ollama", OllamaBackend, "http://localhost:11434/v1"),
        ("vllm", VLLMBackend, "http://localhost:8000/v1"),
    ],
)
def test_local_presets_need_no_key(
    monkeypatch: pytest.MonkeyPatch, kind: str, cls: type[OpenAIBackend], url: str
) -> None:
    for var in ("OPENAI_API_KEY", "VLLM_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    b = create_backend(kind, model="llama3.1:8b")
    assert type(b) is cls
    assert b.base_url == url
    assert b._api_key == "not-needed"
    moved = create_backend(kind, model="m", base_url="http://gpu-box:9000/v1")
    assert isinstance(moved, cls)
    assert moved.base_url == "http://gpu-box:9000/v1"


async def test_a_local_preset_talks_to_its_server_with_max_tokens(sim: ProviderSimulator) -> None:
    b = create_backend("vllm", model="qwen", base_url=sim.openai_base_url, max_tokens=20)
    try:
        sim.script([Text("hello")])
        assert (await b.complete(ask("hi"))).text == "hello"
    finally:
        await b.aclose()
    body = sim.requests[0].body
    assert body["max_tokens"] == 20 and "max_completion_tokens" not in body


async def test_explicit_base_url_wins_over_openai_base_url(
    sim: ProviderSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")  # nothing listens there
    b = OpenAIBackend("gpt-4o", api_key="k", base_url=sim.openai_base_url)
    try:
        await b.complete(ask("hi"))
    finally:
        await b.aclose()
    assert sim.stats.requests == 1


async def test_openai_base_url_is_honoured_when_no_url_is_configured(
    sim: ProviderSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", sim.openai_base_url)
    b = OpenAIBackend("gpt-4o", api_key="k")
    try:
        await b.complete(ask("hi"))
    finally:
        await b.aclose()
    assert sim.stats.requests == 1
