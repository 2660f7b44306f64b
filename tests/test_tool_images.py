"""Images in tool results: the toolbox attaches them where the model takes them and notes
them in their place otherwise; the loop carries them on the tool message; token estimates
and cache keys count them. Fakes at the Backend interface (the wire formats are tested
against the simulator in tests/test_tools_mcp.py)."""

from __future__ import annotations

import base64

from massgen.agents.agent import Agent
from massgen.backends.function import FunctionBackend
from massgen.resilience.cache import cache_key
from massgen.serialize import from_dict, to_dict
from massgen.tokens import IMAGE_TOKENS, estimate_message
from massgen.tools import ToolBox, ToolOutput, tool
from massgen.tools.images import MAX_IMAGE_BYTES, attach
from massgen.types import ChatMessage, Completion, CompletionRequest, Image, ToolCall, Turn

PNG = Image("image/png", base64.b64encode(b"\x89PNG fake pixels").decode())


def test_an_image_is_attached_and_noted_in_its_place() -> None:
    out = ToolOutput(("before", PNG, "after"))
    text, images = attach(out, images=True)
    assert images == (PNG,)
    assert text == "before\n[image image/png, 16 bytes: attached as image 1]\nafter"
    text, images = attach(out, images=False)
    assert images == ()
    assert text == "before\n[image image/png, 16 bytes: not shown to the model]\nafter"
    assert attach("plain text", images=True) == ("plain text", ())


def test_images_too_large_or_of_another_type_are_left_out_with_a_note() -> None:
    big = Image("image/png", "A" * (MAX_IMAGE_BYTES * 4 // 3 + 8))
    svg = Image("image/svg+xml", base64.b64encode(b"<svg/>").decode())
    text, images = attach(ToolOutput((big, svg, PNG)), images=True)
    assert images == (PNG,)
    first, second, third = text.splitlines()
    assert f"{big.size} bytes: not shown: over 5 MB" in first
    assert "image/svg+xml, 6 bytes: not shown: a type" in second
    assert third.endswith("attached as image 1]")


class Seeing(FunctionBackend):
    tool_images = True


def scripted(backend_type: type[FunctionBackend]) -> FunctionBackend:
    replies = [
        Completion("", "m", tool_calls=(ToolCall("c1", "snap", {}),), finish_reason="tool_calls"),
        Completion("a tiny picture", "m"),
    ]
    return backend_type(lambda _: replies.pop(0), tools=True)


@tool
def snap() -> ToolOutput:
    """Take a picture."""
    return ToolOutput(("Here it is:", PNG))


async def test_the_loop_carries_the_images_on_the_tool_message_when_the_backend_takes_them() -> (
    None
):
    backend = scripted(Seeing)
    done = await Agent("ada", backend, tools=[snap]).respond(Turn("answer", "Show me."))
    assert done.text == "a tiny picture"
    result = backend.calls[1].messages[-1]
    assert (result.role, result.tool_call_id, result.images) == ("tool", "c1", (PNG,))
    assert "[image image/png, 16 bytes: attached as image 1]" in result.content


async def test_a_backend_that_takes_no_images_gets_the_note_only() -> None:
    backend = scripted(FunctionBackend)
    await Agent("ada", backend, tools=[snap]).respond(Turn("answer", "Show me."))
    result = backend.calls[1].messages[-1]
    assert result.images == ()
    assert "[image image/png, 16 bytes: not shown to the model]" in result.content


async def test_a_failing_call_sends_no_image() -> None:
    box = ToolBox([snap])
    outcome = await box.call(ToolCall("c1", "snap", {"extra": 1}), images=True)
    assert not outcome.ok and outcome.images == ()


def test_images_count_in_the_token_estimate() -> None:
    plain = ChatMessage("tool", "x", tool_call_id="c1")
    seen = ChatMessage("tool", "x", tool_call_id="c1", images=(PNG, PNG))
    assert estimate_message(seen) == estimate_message(plain) + 2 * IMAGE_TOKENS


def test_a_message_with_images_round_trips_through_the_serializer() -> None:
    message = ChatMessage("tool", "x", tool_call_id="c1", name="snap", images=(PNG,))
    data = to_dict(message)
    assert data["images"] == [{"mime_type": "image/png", "data": PNG.data}]
    assert from_dict(ChatMessage, data) == message
    assert from_dict(ChatMessage, {"role": "user", "content": "hi"}).images == ()  # older data


def test_cache_keys_tell_images_apart_and_keep_image_less_keys() -> None:
    def ask(*images: Image) -> CompletionRequest:
        result = ChatMessage("tool", "5", tool_call_id="c1", name="add", images=images)
        return CompletionRequest(messages=(ChatMessage("user", "Add."), result))

    other = Image("image/png", base64.b64encode(b"other pixels").decode())
    keys = {cache_key(ask(*i), "openai", "m") for i in [(), (PNG,), (other,), (PNG, PNG)]}
    assert len(keys) == 4  # and without images, the key as before: tests/test_cache.py
