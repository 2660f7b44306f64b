"""OpenAIBackend and its presets against the simulator's Chat Completions endpoint.

Every wire test runs through both clients (massgen's own ``http`` one and the ``openai``
SDK), so one suite proves they behave the same.
"""

from __future__ import annotations

import json
import ssl
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from massgen.backends import create_backend
from massgen.backends.openai import (
    CLIENTS,
    LMStudioBackend,
    OllamaBackend,
    OpenAIBackend,
    OpenRouterBackend,
    VLLMBackend,
    XAIBackend,
)
from massgen.backends.openai_http import HTTPChatClient
from massgen.errors import AuthenticationError, ConfigError, ProviderError
from massgen.types import ChatMessage, CompletionRequest, ToolCall, ToolSpec, Usage
from tests.recorded.harness import Recorded, ReplayServer
from tests.sim.sim_types import Text, ToolCalls, ToolCallSpec, ToolResult
from tests.sim.simulator import ProviderSimulator

LOOKUP = ToolSpec(
    "lookup",
    "Look a word up.",
    {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]},
)


@pytest.fixture(params=CLIENTS)
def client(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def backend(sim: ProviderSimulator, client: str) -> AsyncIterator[OpenAIBackend]:
    b = OpenAIBackend("gpt-4o-mini", api_key="sk-test", base_url=sim.openai_base_url, client=client)
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


async def test_request_body_carries_settings_and_params(
    sim: ProviderSimulator, client: str
) -> None:
    b = OpenAIBackend(
        "gpt-4o-mini",
        api_key="k",
        base_url=sim.openai_base_url,
        temperature=0.3,
        max_tokens=50,
        params={"seed": 7, "top_p": 0.9, "top_k": 40},
        client=client,
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
    assert first["top_k"] == 40  # a server's own option, which the SDK does not name
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


def chat(b: OpenAIBackend) -> Any:
    """The backend's client (either kind), for white-box checks."""
    return b._chat


def http_chat(b: OpenAIBackend) -> HTTPChatClient:
    assert isinstance(b._chat, HTTPChatClient)
    return b._chat


def is_closed(http_client: Any) -> bool:
    if hasattr(http_client, "is_closed"):
        return bool(http_client.is_closed())  # the SDK's
    return bool(http_client.closed)  # aiohttp's session


async def test_one_client_is_made_lazily_reused_and_closed(
    sim: ProviderSimulator, client: str
) -> None:
    b = OpenAIBackend("gpt-4o-mini", api_key="k", base_url=sim.openai_base_url, client=client)
    assert b.client == client
    assert chat(b)._client is None  # nothing is opened until the first request
    await b.complete(ask("one"))
    made = chat(b)._client
    await b.complete(ask("two"))
    assert chat(b)._client is made is not None
    await b.aclose()
    assert is_closed(made)
    assert chat(b)._client is None  # the next request (maybe on a new loop) makes a new one
    await b.aclose()  # closing twice is harmless
    sim.script([Text("again")])
    assert (await b.complete(ask("three"))).text == "again"
    assert chat(b)._client is not None and chat(b)._client is not made
    await b.aclose()


async def test_connections_are_kept_alive_across_plain_and_streamed_requests(
    sim: ProviderSimulator, backend: OpenAIBackend
) -> None:
    for _ in range(3):
        await backend.complete(ask("plain"))
        _ = [c async for c in backend.stream(ask("streamed"))]
    assert sim.stats.requests == 6
    assert sim.stats.connections == 1  # streams are read to the end, so the socket is reused


def test_an_unknown_client_is_a_config_error() -> None:
    with pytest.raises(ConfigError) as info:
        OpenAIBackend("gpt-4o", api_key="k", client="curl")
    assert info.value.key == "client"
    assert "curl" in info.value.message
    assert OpenAIBackend("gpt-4o", api_key="k").client == "http"  # the default


RICH = CompletionRequest(
    messages=(
        ChatMessage("system", "Be brief."),
        ChatMessage("user", "Look up Paris, café and 東京"),
        ChatMessage("assistant", "", tool_calls=(ToolCall("call_1", "lookup", {"q": "paris"}),)),
        ChatMessage("tool", "Paris: capital of France", tool_call_id="call_1", name="lookup"),
        ChatMessage("assistant", "Anything else?"),
        ChatMessage("user", "No."),
    ),
    model="gpt-4.1",
    temperature=0.2,
    max_tokens=64,
    tools=(LOOKUP,),
    tool_choice="lookup",
    extra={"seed": 3, "logit_bias": {"50256": -100}, "metadata": None},
)


@pytest.mark.parametrize("stream", [False, True])
async def test_both_clients_send_the_same_body(sim: ProviderSimulator, stream: bool) -> None:
    for client in CLIENTS:
        b = OpenAIBackend(
            "gpt-4o-mini",
            api_key="k",
            base_url=sim.openai_base_url,
            params={"top_p": 0.9, "user": "u-1"},
            client=client,
        )
        try:
            if stream:
                _ = [c async for c in b.stream(RICH)]
            else:
                await b.complete(RICH)
        finally:
            await b.aclose()
    http_body, sdk_body = (r.body for r in sim.requests)
    assert http_body == sdk_body
    assert http_body["tool_choice"] == {"type": "function", "function": {"name": "lookup"}}
    assert http_body["messages"][1]["content"] == "Look up Paris, café and 東京"
    assert ("stream" in http_body) is stream


async def test_the_default_client_sends_the_key_and_json(sim: ProviderSimulator) -> None:
    b = OpenAIBackend("gpt-4o-mini", api_key="sk-secret-abcdefgh", base_url=sim.openai_base_url)
    try:
        await b.complete(ask("hi"))
    finally:
        await b.aclose()
    seen = sim.requests[0]
    assert seen.path == "/v1/chat/completions"
    assert seen.headers["authorization"] == "<redacted>"  # sent, and hidden by the simulator
    assert seen.headers["content-type"] == "application/json"
    assert http_chat(b)._headers["Authorization"] == "Bearer sk-secret-abcdefgh"


def test_the_default_client_does_not_import_the_sdk() -> None:
    """The SDK costs ~0.9 s of CPU to import: a whole run may not pay it by default."""
    code = textwrap.dedent(
        """
        import asyncio, sys
        from massgen.backends import create_backend
        from tests.sim.simulator import ProviderSimulator
        from massgen.types import ChatMessage, CompletionRequest

        async def main(url):
            b = create_backend("openai", model="gpt-4o-mini", api_key="k", base_url=url)
            try:
                done = await b.complete(CompletionRequest(messages=(ChatMessage("user", "hi"),)))
            finally:
                await b.aclose()
            assert done.text, done
            assert "openai" not in sys.modules, "the default client imported the SDK"
            create_backend("openai", model="m", api_key="k", client="sdk")
            assert "openai" in sys.modules
            print("ok")

        with ProviderSimulator() as sim:
            asyncio.run(main(sim.openai_base_url))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=False
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_the_tls_context_loads_no_http_stack() -> None:
    """An https endpoint needs a TLS context; building it must not import httpx (or the
    SDKs' fork of it), which the default client otherwise never loads."""
    code = textwrap.dedent(
        """
        import ssl, sys
        from massgen.backends._common import tls_context
        context = tls_context()
        assert isinstance(context, ssl.SSLContext) and context.verify_mode == ssl.CERT_REQUIRED
        assert context.check_hostname and context.cert_store_stats()["x509_ca"] > 0
        loaded = {"httpx", "httpx2", "httpcore", "httpcore2", "anyio"} & set(sys.modules)
        print(sorted(loaded))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=False
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


async def test_plain_http_loads_no_tls_context_and_https_shares_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from massgen.backends import openai_http

    shared = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    asked: list[str] = []

    def fake_tls_context() -> ssl.SSLContext:
        asked.append("tls")
        return shared

    monkeypatch.setattr(openai_http, "tls_context", fake_tls_context)
    local = OpenAIBackend("m", api_key="k", base_url="http://127.0.0.1:9/v1")
    hosted = OpenAIBackend("m", api_key="k", base_url="https://api.example.invalid/v1")
    assert "ssl" not in http_chat(local)._request_options()
    assert asked == []  # no CA bundle loaded for plain http
    assert http_chat(hosted)._request_options()["ssl"] is shared
    assert asked == ["tls"]


@asynccontextmanager
async def sse_backend(
    body: bytes, status: int = 200, content_type: str = "text/event-stream"
) -> AsyncIterator[OpenAIBackend]:
    """A default-client backend answered with ``body`` as it is, from loopback."""
    canned = Recorded("canned", status, (("Content-Type", content_type),), body)
    with ReplayServer([canned]) as server:
        b = OpenAIBackend("gpt-4o-mini", api_key="sk-canary-0123456789", base_url=server.url)
        try:
            yield b
        finally:
            await b.aclose()


def sse(*events: str) -> bytes:
    return "".join(f"{e}\n\n" for e in events).encode()


CHUNK = '{"model":"m-1","choices":[{"index":0,"delta":{"content":"%s"},"finish_reason":%s}]}'


@pytest.mark.parametrize("newline", ["\n", "\r\n"], ids=["lf", "crlf"])
async def test_server_sent_events_are_parsed_as_the_spec_says(newline: str) -> None:
    body = sse(
        ": a comment, then a keep-alive",
        "event: message\nid: 1\n" + "data: " + CHUNK % ("Hel", "null"),
        # one event's JSON split over two data lines, and no space after the colon
        'data:{"model":"m-1","choices":[{"index":0,\ndata:"delta":{"content":"lo"},"finish_reason":"stop"}]}',
        'data: {"choices":[],"usage":{"prompt_tokens":5,"completion_tokens":2}}',
        "data: [DONE]",
    ).replace(b"\n", newline.encode())
    async with sse_backend(body) as b:
        chunks = [c async for c in b.stream(ask("hi"))]
    assert [c.delta for c in chunks[:-1]] == ["Hel", "lo"]
    final = chunks[-1].completion
    assert final is not None
    assert (final.text, final.model, final.finish_reason) == ("Hello", "m-1", "stop")
    assert final.usage == Usage(5, 2)


async def test_a_stream_without_its_last_blank_line_still_ends() -> None:
    async with sse_backend(("data: " + CHUNK % ("ok", '"stop"')).encode()) as b:
        chunks = [c async for c in b.stream(ask("hi"))]
    assert chunks[-1].completion is not None and chunks[-1].completion.text == "ok"


async def test_an_error_event_inside_a_stream_is_a_provider_error() -> None:
    body = sse(
        "data: " + CHUNK % ("partial", "null"),
        'data: {"error":{"message":"overloaded, key sk-canary-0123456789","type":"server"}}',
    )
    async with sse_backend(body) as b:
        with pytest.raises(ProviderError) as info:
            _ = [c async for c in b.stream(ask("hi"))]
    assert "overloaded" in str(info.value)
    assert "sk-canary-0123456789" not in str(info.value)
    assert info.value.retryable


@pytest.mark.parametrize(
    ("status", "body", "words"),
    [
        (502, b"<html>Bad gateway</html>", "Bad gateway"),  # a proxy's page, not JSON
        (400, b'{"error": "plain text error"}', "plain text error"),  # some local servers
        (500, b"", "HTTP 500"),
    ],
)
async def test_error_bodies_that_are_not_openai_shaped(
    status: int, body: bytes, words: str
) -> None:
    async with sse_backend(body, status, "text/html") as b:
        with pytest.raises(ProviderError) as info:
            await b.complete(ask("hi"))
    assert info.value.status == status
    assert words in str(info.value)


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (b"<html>not json</html>", "not JSON"),
        (b"[1, 2]", "not an object"),
        (b'{"choices": []}', "no choices"),
    ],
)
async def test_a_success_that_is_not_a_completion_is_a_provider_error(
    body: bytes, words: str
) -> None:
    async with sse_backend(body, 200, "application/json") as b:
        with pytest.raises(ProviderError) as info:
            await b.complete(ask("hi"))
    assert type(info.value) is ProviderError and info.value.retryable
    assert info.value.provider == "openai"
    assert words in str(info.value)


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


async def test_a_local_preset_talks_to_its_server_with_max_tokens(
    sim: ProviderSimulator, client: str
) -> None:
    b = create_backend(
        "vllm", model="qwen", base_url=sim.openai_base_url, max_tokens=20, client=client
    )
    try:
        sim.script([Text("hello")])
        assert (await b.complete(ask("hi"))).text == "hello"
    finally:
        await b.aclose()
    body = sim.requests[0].body
    assert body["max_tokens"] == 20 and "max_completion_tokens" not in body


async def test_explicit_base_url_wins_over_openai_base_url(
    sim: ProviderSimulator, monkeypatch: pytest.MonkeyPatch, client: str
) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")  # nothing listens there
    b = OpenAIBackend("gpt-4o", api_key="k", base_url=sim.openai_base_url, client=client)
    try:
        await b.complete(ask("hi"))
    finally:
        await b.aclose()
    assert sim.stats.requests == 1


async def test_openai_base_url_is_honoured_when_no_url_is_configured(
    sim: ProviderSimulator, monkeypatch: pytest.MonkeyPatch, client: str
) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", sim.openai_base_url)
    b = OpenAIBackend("gpt-4o", api_key="k", client=client)
    try:
        await b.complete(ask("hi"))
    finally:
        await b.aclose()
    assert sim.stats.requests == 1


def test_without_a_url_or_openai_base_url_the_default_is_openai(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    b = OpenAIBackend("gpt-4o", api_key="k")
    assert b.base_url == "https://api.openai.com/v1"
    assert http_chat(b).base_url == "https://api.openai.com/v1"
