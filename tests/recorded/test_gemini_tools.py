"""A Gemini 3 function call in real streamed traffic, and the turn that answers it: the call's
thought signature goes back with the call, as the recording's own accepted request sent it."""

from __future__ import annotations

import base64
import json

from massgen.types import ChatMessage, ToolSpec
from tests.recorded.facts import gemini_parts, recording
from tests.recorded.replay_backends import answer, ask, gemini

COUNTRY = ToolSpec("get_country", "The user's country.", {"type": "object", "properties": {}})
NAME = "pydantic-ai__test_google_streaming_tool_call_thought_signature.yaml"


def signature(text: str) -> bytes:
    """A thought signature as bytes, whichever base64 alphabet carried it."""
    return base64.b64decode(text.replace("-", "+").replace("_", "/") + "==")


async def test_thought_signature_goes_back_with_its_call() -> None:
    first, second = recording("gemini", NAME)
    assert second.request is not None
    accepted = second.request["parsed_body"]["contents"][1]["parts"][0]
    (called,) = [p for p in gemini_parts(first) if "functionCall" in p]
    question = ChatMessage("user", "What is the capital of the user country? Call the tool")
    async with gemini([first, second], model="gemini-3-pro-preview") as (backend, server):
        turn, _ = await answer(backend, ask(messages=[question], tools=[COUNTRY]), stream=True)
        (call,) = turn.tool_calls
        assert (call.name, dict(call.arguments)) == (
            called["functionCall"]["name"],
            called["functionCall"]["args"],
        )
        followup = [
            question,
            ChatMessage("assistant", turn.text, tool_calls=turn.tool_calls),
            ChatMessage("tool", "Mexico", tool_call_id=call.id, name=call.name),
        ]
        done, _ = await answer(backend, ask(messages=followup, tools=[COUNTRY]), stream=True)
    sent = json.loads(server.received[1].body)["contents"][1]["parts"][0]
    assert sent["functionCall"]["name"] == accepted["functionCall"]["name"]
    assert signature(sent["thoughtSignature"]) == signature(called["thoughtSignature"])
    assert signature(sent["thoughtSignature"]) == signature(accepted["thoughtSignature"])
    assert done.text == "".join(p.get("text", "") for p in gemini_parts(second))
    assert done.finish_reason == "stop"
