"""GoogleBackend (google-genai) against the simulator's generateContent endpoints."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator

import pytest

from massgen.backends import create_backend
from massgen.backends.google import SKIP_SIGNATURE, GoogleBackend
from massgen.errors import BadRequestError, ConfigError
from massgen.types import ChatMessage, CompletionRequest, ToolCall, ToolSpec, Usage
from tests.sim.sim_types import Text, ToolCalls, ToolCallSpec
from tests.sim.simulator import ProviderSimulator

MODEL = "gemini-2.5-flash"
LOOKUP = ToolSpec(
    "lookup",
    "Look a word up.",
    {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]},
)


@pytest.fixture
async def backend(sim: ProviderSimulator) -> AsyncIterator[GoogleBackend]:
    b = GoogleBackend(MODEL, api_key="g-test", base_url=sim.gemini_base_url)
    yield b
    await b.aclose()


def ask(text: str, **kw: object) -> CompletionRequest:
    return CompletionRequest(
        messages=(ChatMessage("system", "Be brief."), ChatMessage("user", text)),
        **kw,  # type: ignore[arg-type]
    )


async def test_complete_maps_system_text_usage(
    sim: ProviderSimulator, backend: GoogleBackend
) -> None:
    sim.script([Text("Paris.")])
    done = await backend.complete(ask("Capital of France?"))
    assert done.text == "Paris."
    assert done.finish_reason == "stop"
    assert done.model == MODEL
    assert done.usage == Usage(sim.stats.prompt_tokens, sim.stats.completion_tokens)
    assert done.usage.input_tokens > 0
    seen = sim.requests[0]
    assert seen.path.endswith(f"/models/{MODEL}:generateContent")
    assert seen.system == "Be brief."
    assert seen.body["contents"] == [{"role": "user", "parts": [{"text": "Capital of France?"}]}]


async def test_settings_and_params_go_into_the_generation_config(sim: ProviderSimulator) -> None:
    b = GoogleBackend(
        MODEL,
        api_key="k",
        base_url=sim.gemini_base_url,
        temperature=0.2,
        max_tokens=30,
        params={"top_p": 0.5, "seed": 3},
    )
    try:
        await b.complete(ask("hi"))
    finally:
        await b.aclose()
    config = sim.requests[0].body["generationConfig"]
    assert config["temperature"] == 0.2
    assert config["maxOutputTokens"] == 30
    assert config["topP"] == 0.5 and config["seed"] == 3


async def test_unknown_params_are_a_bad_request_before_any_call(sim: ProviderSimulator) -> None:
    b = GoogleBackend(MODEL, api_key="k", base_url=sim.gemini_base_url, params={"no_such": 1})
    try:
        with pytest.raises(BadRequestError, match="invalid Gemini parameters"):
            await b.complete(ask("hi"))
    finally:
        await b.aclose()
    assert sim.stats.requests == 0


async def test_truncated_answer_finishes_with_length(
    sim: ProviderSimulator, backend: GoogleBackend
) -> None:
    sim.script([Text("cut", truncated=True)])
    assert (await backend.complete(ask("x"))).finish_reason == "length"


async def test_stream_yields_deltas_then_the_completion_with_usage(
    sim: ProviderSimulator, backend: GoogleBackend
) -> None:
    sim.script([Text("Paris is the capital of France.")])
    chunks = [c async for c in backend.stream(ask("Capital?"))]
    final = chunks[-1].completion
    deltas = [c.delta for c in chunks[:-1]]
    assert len(deltas) > 1 and all(c.completion is None for c in chunks[:-1])
    assert "".join(deltas) == "Paris is the capital of France."
    assert final is not None
    assert final.text == "Paris is the capital of France."
    assert final.usage == Usage(sim.stats.prompt_tokens, sim.stats.completion_tokens)
    assert final.finish_reason == "stop"
    assert sim.requests[0].path.endswith(":streamGenerateContent")


async def test_tools_and_tool_choice_use_gemini_shapes(
    sim: ProviderSimulator, backend: GoogleBackend
) -> None:
    for choice in ("auto", "required", "none", "lookup"):
        await backend.complete(ask("x", tools=(LOOKUP,), tool_choice=choice))
    bodies = [r.body for r in sim.requests]
    declarations = bodies[0]["tools"][0]["functionDeclarations"]
    assert [d["name"] for d in declarations] == ["lookup"]
    assert declarations[0]["description"] == "Look a word up."
    assert sim.requests[0].tools == ("lookup",)
    modes = [b["toolConfig"]["functionCallingConfig"] for b in bodies]
    assert modes == [
        {"mode": "AUTO"},
        {"mode": "ANY"},
        {"mode": "NONE"},
        {"mode": "ANY", "allowedFunctionNames": ["lookup"]},
    ]


async def test_function_calls_are_parsed_in_both_modes(
    sim: ProviderSimulator, backend: GoogleBackend
) -> None:
    # Gemini sends calls without ids (as the simulator does): the backend makes unique ones
    sim.script([ToolCalls([ToolCallSpec("lookup", {"q": "paris"}), ToolCallSpec("lookup", {})])])
    done = await backend.complete(ask("x", tools=(LOOKUP,)))
    chunks = [c async for c in backend.stream(ask("x", tools=(LOOKUP,)))]
    streamed = chunks[-1].completion
    assert streamed is not None
    ids = set()
    for result in (done, streamed):
        assert [(c.name, c.arguments) for c in result.tool_calls] == [
            ("lookup", {"q": "paris"}),
            ("lookup", {}),
        ]
        assert result.finish_reason == "tool_calls"
        ids |= {c.id for c in result.tool_calls}
    assert len(ids) == 4 and all(i.startswith("mg-call-") for i in ids)


async def test_function_responses_go_back_named_and_unmade_ids_stay_home(
    sim: ProviderSimulator, backend: GoogleBackend
) -> None:
    calls = (ToolCall("fc_1", "lookup", {"q": "x"}), ToolCall("mg-call-abc", "lookup", {"q": "y"}))
    history = CompletionRequest(
        messages=(
            ChatMessage("user", "Look both up"),
            ChatMessage("assistant", "", tool_calls=calls),
            ChatMessage("tool", "res1", tool_call_id="fc_1"),
            ChatMessage("tool", "res2", tool_call_id="mg-call-abc"),
        ),
        tools=(LOOKUP,),
    )
    await backend.complete(history)
    seen = sim.requests[0]
    assert [(r.call_id, r.name) for r in seen.tool_results] == [("fc_1", "lookup"), ("", "lookup")]
    model_turn, user_turn = seen.body["contents"][1:]
    assert model_turn["role"] == "model"
    assert [p["functionCall"].get("id") for p in model_turn["parts"]] == ["fc_1", None]
    assert user_turn["role"] == "user"  # both results in one turn
    assert user_turn["parts"][0]["functionResponse"] == {
        "id": "fc_1",
        "name": "lookup",
        "response": {"result": "res1"},
    }
    # Gemini 2.x needs no thought signature
    assert all("thoughtSignature" not in p for p in model_turn["parts"])


async def test_gemini_3_gets_remembered_or_placeholder_thought_signatures(
    sim: ProviderSimulator,
) -> None:
    from google.genai import types

    b = GoogleBackend("gemini-3-flash", api_key="k", base_url=sim.gemini_base_url)
    # A call this backend received, with its signature (the simulator sends none, so we feed
    # the parser the part a real Gemini 3 response would hold).
    (seen_call,) = b._calls(
        [
            types.Part(
                function_call=types.FunctionCall(id="fc_7", name="lookup", args={"q": "a"}),
                thought_signature=b"real-signature",
            )
        ]
    )
    foreign = ToolCall("call_other", "lookup", {"q": "b"})  # made by another backend
    history = CompletionRequest(
        messages=(
            ChatMessage("user", "go"),
            ChatMessage("assistant", "", tool_calls=(seen_call, foreign)),
            ChatMessage("tool", "a", tool_call_id="fc_7"),
            ChatMessage("tool", "b", tool_call_id="call_other"),
        )
    )
    try:
        await b.complete(history)
    finally:
        await b.aclose()
    parts = sim.requests[0].body["contents"][1]["parts"]
    signatures = [base64.b64decode(p["thoughtSignature"]) for p in parts]
    assert signatures == [b"real-signature", SKIP_SIGNATURE]


async def test_one_request_per_call_even_with_tools(
    sim: ProviderSimulator, backend: GoogleBackend
) -> None:
    # automatic function calling and continuation are off: a tool call comes back to us
    sim.script([ToolCalls([ToolCallSpec("lookup", {"q": "x"})])])
    await backend.complete(ask("x", tools=(LOOKUP,)))
    assert sim.stats.requests == 1


def test_key_from_gemini_then_google_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GEMINI_API_KEY", raising=False)
    monkeypatch.delenv("GOOGLE_API_KEY", raising=False)
    with pytest.raises(ConfigError, match="GEMINI_API_KEY"):
        create_backend("gemini", model=MODEL)
    monkeypatch.setenv("GOOGLE_API_KEY", "google-key")
    assert GoogleBackend(MODEL)._api_key == "google-key"
    monkeypatch.setenv("GEMINI_API_KEY", "gemini-key")
    b = create_backend("gemini", model=MODEL)
    assert isinstance(b, GoogleBackend)
    assert b._api_key == "gemini-key"
