"""Real Anthropic Messages traffic, replayed byte for byte through the anthropic SDK.

Each expectation is read from the recording itself (see ``facts.py``): the text blocks, the
tool_use blocks, the usage and stop reason the API sent.
"""

from __future__ import annotations

import pytest

from tests.recorded.facts import (
    anthropic_blocks,
    anthropic_input_tokens,
    recording,
    wire_variants,
)
from tests.recorded.harness import HERE, Recorded, origins, recordings
from tests.recorded.replay_backends import answer, anthropic, ask

FINISH = {"end_turn": "stop", "tool_use": "tool_calls", "max_tokens": "length"}


def cases(name: str, index: int = 0) -> list[tuple[Recorded, str]]:
    rec = recording("anthropic", name)[index]
    return [(rec, v) for v in wire_variants(rec)]


def ids(case: tuple[Recorded, str]) -> str:
    return f"{case[0].name}-{case[1]}"


PLAIN = [
    *cases("crewai__test_anthropic_async_basic_call.yaml"),
    *cases("pydantic-ai__test_multiple_parallel_tool_calls.yaml"),
    *cases("pydantic-ai__test_multiple_parallel_tool_calls.yaml", 1),
    *cases("pydantic-ai__test_anthropic_cache_real_api.yaml"),
    *cases("pydantic-ai__test_anthropic_cache_real_api.yaml", 1),
    *cases("pydantic-ai__test_anthropic_model_thinking_part.yaml"),
    *cases("pydantic-ai__test_anthropic_model_thinking_part_stream.yaml"),
    *cases("pydantic-ai__test_anthropic_model_thinking_part_redacted.yaml"),
    *cases("pydantic-ai__test_anthropic_model_thinking_part_redacted_stream.yaml"),
    *cases("pydantic-ai__test_anthropic_tool_with_thinking.yaml"),
    *cases("pydantic-ai__test_anthropic_cache_earlier_breakpoint_raised_to_later_longer_ttl.http"),
]


@pytest.mark.parametrize("case", PLAIN, ids=ids)
async def test_text_tool_calls_usage_and_finish_as_recorded(case: tuple[Recorded, str]) -> None:
    rec, variant = case
    blocks, usage, stop = anthropic_blocks(rec)
    async with anthropic([rec], variant) as (backend, _):
        done, deltas = await answer(backend, ask(), stream=rec.is_stream)
    text = "".join(b["text"] for b in blocks if b["type"] == "text")
    assert done.text == text
    if rec.is_stream:
        assert "".join(deltas) == text
    uses = [b for b in blocks if b["type"] == "tool_use"]
    assert [(c.id, c.name, dict(c.arguments)) for c in done.tool_calls] == [
        (b["id"], b["name"], b["input"]) for b in uses
    ]
    assert done.usage.input_tokens == anthropic_input_tokens(usage)
    assert done.usage.output_tokens == usage["output_tokens"]
    assert done.usage.cached_tokens == (usage.get("cache_read_input_tokens") or 0)
    assert done.usage.cache_write_tokens == (usage.get("cache_creation_input_tokens") or 0)
    by_ttl = usage.get("cache_creation") or {}  # not in answers older than it
    assert done.usage.cache_write_1h_tokens == by_ttl.get("ephemeral_1h_input_tokens", 0)
    assert done.usage.reasoning_tokens == 0  # thinking is in output_tokens, not counted apart
    assert done.finish_reason == FINISH[stop or ""]
    assert done.server_calls == () and done.sources == ()


async def test_parallel_tool_calls_keep_their_order_and_ids() -> None:
    rec = recording("anthropic", "pydantic-ai__test_multiple_parallel_tool_calls.yaml")[0]
    blocks, _, _ = anthropic_blocks(rec)
    async with anthropic([rec]) as (backend, _):
        done = await backend.complete(ask())
    assert len(done.tool_calls) == 4
    assert len({c.id for c in done.tool_calls}) == 4
    assert [c.arguments["name"] for c in done.tool_calls] == [
        b["input"]["name"] for b in blocks if b["type"] == "tool_use"
    ]


@pytest.mark.parametrize("variant", ["exact", "split", "gzip"])
async def test_cache_reads_and_writes_count_as_input(variant: str) -> None:
    """The second call of the recording read 1111 tokens from the cache and wrote 418: all
    of them were prompt tokens, billed as input; the 1111 read are the cached ones."""
    rec = recording("anthropic", "pydantic-ai__test_anthropic_cache_real_api.yaml")[1]
    _, usage, _ = anthropic_blocks(rec)
    assert usage["cache_read_input_tokens"] and usage["cache_creation_input_tokens"]
    async with anthropic([rec], variant) as (backend, _):
        done = await backend.complete(ask())
    assert done.usage.input_tokens == (
        usage["input_tokens"]
        + usage["cache_creation_input_tokens"]
        + usage["cache_read_input_tokens"]
    )
    assert done.usage.cached_tokens == usage["cache_read_input_tokens"] == 1111
    assert done.usage.cached_tokens < done.usage.input_tokens


def test_every_recording_names_its_origin() -> None:
    listed = origins(HERE / "anthropic")
    assert sorted(listed) == sorted(p.name for p in recordings("anthropic"))
    for name, origin in listed.items():
        assert origin["repo"] and origin["note"], name
        if name.endswith(".yaml"):  # a cassette copied from a repository, at a commit
            assert len(origin["commit"]) == 40 and origin["path"], name
