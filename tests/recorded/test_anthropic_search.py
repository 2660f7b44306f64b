"""Anthropic's server-side web search in real traffic: each search the API ran is reported
once, with its own result, and the pages it found or cited become sources.

The ``pause_turn`` recordings are a long research turn the API paused after ten searches and
finished after five more; the search in flight when it paused got its result in the second
response.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from massgen.backends._common import MAX_SOURCES
from tests.recorded.facts import anthropic_blocks, anthropic_input_tokens, recording, wire_variants
from tests.recorded.harness import Recorded
from tests.recorded.replay_backends import answer, anthropic, ask


def searches(responses: list[Recorded]) -> dict[str, dict[str, Any]]:
    """Every search the recording shows, by id: its query, and its result block (if any)."""
    out: dict[str, dict[str, Any]] = {}
    for rec in responses:
        blocks, _, _ = anthropic_blocks(rec)
        for block in blocks:
            if block["type"] == "server_tool_use":
                out[block["id"]] = {"input": block["input"], "result": None}
            elif block["type"] == "web_search_tool_result":
                out[block["tool_use_id"]]["result"] = block["content"]
    return out


def pages(responses: list[Recorded]) -> list[str]:
    """Every URL the recording cites or finds, in order, first occurrence kept."""
    urls: dict[str, None] = {}
    for rec in responses:
        blocks, _, _ = anthropic_blocks(rec)
        for block in blocks:
            for c in block.get("citations") or ():
                urls.setdefault(c["url"])
    for rec in responses:
        blocks, _, _ = anthropic_blocks(rec)
        for block in blocks:
            if block["type"] == "web_search_tool_result" and isinstance(block["content"], list):
                for r in block["content"]:
                    urls.setdefault(r["url"])
    return list(urls)


SINGLE = [
    (rec, v)
    for name in (
        "pydantic-ai__test_anthropic_web_search_tool.yaml",
        "pydantic-ai__test_anthropic_web_search_tool_stream.yaml",
    )
    for rec in recording("anthropic", name)
    for v in wire_variants(rec)
]


@pytest.mark.parametrize("case", SINGLE, ids=lambda c: f"{c[0].name}-{c[1]}")
async def test_each_search_reported_with_its_query_and_results(case: tuple[Recorded, str]) -> None:
    rec, variant = case
    expected = searches([rec])
    blocks, usage, _ = anthropic_blocks(rec)
    assert expected
    async with anthropic([rec], variant) as (backend, _):
        done, _ = await answer(backend, ask(native=True), stream=rec.is_stream)
    assert [c.id for c in done.server_calls] == list(expected)
    for call in done.server_calls:
        seen = expected[call.id]
        assert call.name == "web_search"
        assert dict(call.arguments) == seen["input"]
        assert call.ok
        assert seen["result"][0]["url"] in call.output
    assert [s.url for s in done.sources] == pages([rec])[:MAX_SOURCES]
    assert done.text == "".join(b["text"] for b in blocks if b["type"] == "text")
    assert done.usage.input_tokens == anthropic_input_tokens(usage)
    assert done.requests == 1


PAUSED = [
    (name, v)
    for name in (
        "pydantic-ai__test_pause_turn_web_search_vcr.yaml",
        "pydantic-ai__test_pause_turn_web_search_streaming_vcr.yaml",
    )
    for v in wire_variants(recording("anthropic", name)[0])
]


@pytest.mark.parametrize("case", PAUSED, ids=lambda c: f"{c[0]}-{c[1]}")
async def test_pause_turn_reports_the_search_in_flight_once_with_its_result(
    case: tuple[str, str],
) -> None:
    name, variant = case
    responses = recording("anthropic", name)
    paused, finished = (anthropic_blocks(r) for r in responses)
    assert paused[2] == "pause_turn" and finished[2] == "end_turn"
    in_flight = paused[0][-1]  # the paused response ends with a search whose result is pending
    assert in_flight["type"] == "server_tool_use"
    expected = searches(responses)
    async with anthropic(responses, variant) as (backend, server):
        done, _ = await answer(backend, ask(native=True), stream=responses[0].is_stream)
    assert len(server.received) == 2
    assert done.requests == 2
    # The continuation carries the paused content back as the assistant's turn, thinking
    # (with its signature) included, as the request the API accepted in the recording did.
    assert responses[1].request is not None
    accepted = responses[1].request["parsed_body"]["messages"][1]["content"]
    sent = json.loads(server.received[1].body)["messages"][1]["content"]
    assert [b["type"] for b in sent] == [b["type"] for b in accepted]
    assert [(b["thinking"], b["signature"]) for b in sent if b["type"] == "thinking"] == [
        (b["thinking"], b["signature"]) for b in accepted if b["type"] == "thinking"
    ]
    ids = [c.id for c in done.server_calls]
    assert ids == list(expected)  # each search once, in the order the API ran them
    ran = sum(u["server_tool_use"]["web_search_requests"] for _, u, _ in (paused, finished))
    assert len(done.server_calls) == ran  # as many as the API says it ran
    (call,) = [c for c in done.server_calls if c.id == in_flight["id"]]
    assert call.ok
    assert dict(call.arguments) == in_flight["input"]
    assert expected[call.id]["result"][0]["url"] in call.output
    assert all(c.ok for c in done.server_calls)
    assert done.finish_reason == "stop"
    assert done.usage.input_tokens == sum(
        anthropic_input_tokens(u) for _, u, _ in (paused, finished)
    )
    assert done.usage.output_tokens == paused[1]["output_tokens"] + finished[1]["output_tokens"]
    assert [s.url for s in done.sources] == pages(responses)[:MAX_SOURCES]
