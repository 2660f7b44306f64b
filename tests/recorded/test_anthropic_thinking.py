"""Extended thinking in real Anthropic traffic: kept as reasoning, never in the answer, and
sent back with its signature when a tool loop replays the assistant's turn."""

from __future__ import annotations

import json

import pytest

from massgen.types import ChatMessage, ToolSpec
from tests.recorded.facts import anthropic_blocks, body, recording, wire_variants
from tests.recorded.harness import Recorded
from tests.recorded.replay_backends import answer, anthropic, ask

THINKING = [
    (rec, v)
    for name in (
        "pydantic-ai__test_anthropic_model_thinking_part.yaml",
        "pydantic-ai__test_anthropic_model_thinking_part_stream.yaml",
        "pydantic-ai__test_anthropic_tool_with_thinking.yaml",
    )
    for rec in recording("anthropic", name)[:1]
    for v in wire_variants(rec)
]


@pytest.mark.parametrize("case", THINKING, ids=lambda c: f"{c[0].name}-{c[1]}")
async def test_thinking_is_reasoning_not_answer(case: tuple[Recorded, str]) -> None:
    rec, variant = case
    blocks, _, _ = anthropic_blocks(rec)
    thinking = "\n\n".join(b["thinking"] for b in blocks if b["type"] == "thinking")
    assert thinking
    async with anthropic([rec], variant) as (backend, _):
        done, deltas = await answer(backend, ask(), stream=rec.is_stream)
    assert done.reasoning == thinking
    assert thinking not in done.text
    assert thinking not in "".join(deltas)


REDACTED = [
    (rec, v)
    for name in (
        "pydantic-ai__test_anthropic_model_thinking_part_redacted.yaml",
        "pydantic-ai__test_anthropic_model_thinking_part_redacted_stream.yaml",
    )
    for rec in recording("anthropic", name)[:1]
    for v in wire_variants(rec)
]


@pytest.mark.parametrize("case", REDACTED, ids=lambda c: f"{c[0].name}-{c[1]}")
async def test_redacted_thinking_stays_out_of_answer_and_reasoning(
    case: tuple[Recorded, str],
) -> None:
    """Redacted thinking is encrypted: there is nothing to read, so nothing is kept as text."""
    rec, variant = case
    blocks, _, _ = anthropic_blocks(rec)
    secret = [b["data"] for b in blocks if b["type"] == "redacted_thinking"]
    assert secret
    async with anthropic([rec], variant) as (backend, _):
        done, _ = await answer(backend, ask(), stream=rec.is_stream)
    assert done.text == "".join(b["text"] for b in blocks if b["type"] == "text")
    for data in secret:
        assert data not in done.text and data not in done.reasoning


COUNTRY = ToolSpec("get_user_country", "The user's country.", {"type": "object", "properties": {}})


async def test_tool_loop_sends_thinking_back_with_its_signature() -> None:
    """With thinking on, the API wants the assistant turn that called a tool sent back with
    its thinking block, signature intact. The recording's own second request (the one the API
    accepted) is the reference."""
    first, second = recording("anthropic", "pydantic-ai__test_anthropic_tool_with_thinking.yaml")
    accepted = first.request and first.request.get("parsed_body")
    assert second.request is not None
    reference = second.request["parsed_body"]["messages"][1]["content"]
    question = ChatMessage("user", "What is the largest city in the user country?")
    async with anthropic([first, second]) as (backend, server):
        turn = await backend.complete(ask(messages=[question], tools=[COUNTRY]))
        (call,) = turn.tool_calls
        followup = [
            question,
            ChatMessage("assistant", turn.text, tool_calls=turn.tool_calls),
            ChatMessage("tool", "Mexico", tool_call_id=call.id, name=call.name),
        ]
        done = await backend.complete(ask(messages=followup, tools=[COUNTRY]))
    assert accepted is not None
    assert done.text == body(second)["content"][0]["text"]
    sent = json.loads(server.received[1].body)["messages"][1]["content"]
    thinking = [b for b in sent if b["type"] == "thinking"]
    assert thinking == [
        {"type": "thinking", "thinking": b["thinking"], "signature": b["signature"]}
        for b in reference
        if b["type"] == "thinking"
    ]
    assert sent[0]["type"] == "thinking"  # the API wants thinking first in the turn
    assert [b["type"] for b in sent] == [b["type"] for b in reference]
