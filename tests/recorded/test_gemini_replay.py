"""Real Gemini generateContent / streamGenerateContent traffic, replayed byte for byte
through google-genai. Expectations are read from the recording itself (``facts.py``)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.recorded.facts import (
    gemini_chunks,
    gemini_parts,
    gemini_usage,
    gemini_variants,
    recording,
)
from tests.recorded.harness import HERE, Recorded, origins, recordings
from tests.recorded.replay_backends import answer, ask, gemini

FINISH = {"STOP": "stop", "MAX_TOKENS": "length", "SAFETY": "content_filter"}

NAMES = (
    "pydantic-ai__test_google_model_stream.yaml",
    "pydantic-ai__test_google_model_thinking_part.yaml",
    "pydantic-ai__test_google_model_thinking_part_iter.yaml",
    "pydantic-ai__test_google_model_web_search_tool.yaml",
    "pydantic-ai__test_google_model_web_search_tool_stream.yaml",
    "pydantic-ai__test_google_streaming_tool_call_thought_signature.yaml",
    "pydantic-ai__test_google_model_mobile_youtube_video_url_input.yaml",
    "firebase__googleai-streaming-success-thinking-reply-thought-summary.http",
    "firebase__googleai-unary-success-thinking-function-call-thought-summary-signature.http",
    "firebase__googleai-unary-success-google-search-grounding.http",
    "firebase__googleai-unary-failure-finish-reason-safety.http",
)
CASES = [
    (rec, variant)
    for name in NAMES
    for rec in recording("gemini", name)
    for variant in gemini_variants(rec)
]


def finish_reason(rec: Recorded) -> str:
    reason = ""
    for chunk in gemini_chunks(rec):
        for candidate in chunk.get("candidates", [])[:1]:
            reason = candidate.get("finishReason") or reason
    return reason


def model_version(rec: Recorded) -> Any:
    return gemini_chunks(rec)[-1].get("modelVersion")


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0].name}-{c[1]}")
async def test_text_calls_usage_and_finish_as_recorded(case: tuple[Recorded, str]) -> None:
    rec, variant = case
    parts = gemini_parts(rec)
    usage = gemini_usage(rec)
    async with gemini([rec], variant) as (backend, _):
        done, deltas = await answer(backend, ask(), stream=rec.is_stream)
    text = "".join(p.get("text", "") for p in parts if not p.get("thought"))
    assert done.text == text
    if rec.is_stream:
        assert "".join(deltas) == text
    calls = [p["functionCall"] for p in parts if "functionCall" in p]
    assert [(c.name, dict(c.arguments)) for c in done.tool_calls] == [
        (c["name"], c.get("args", {})) for c in calls
    ]
    assert done.model == model_version(rec)
    # Google bills the prompt, and the tool results it read (grounding), as input; thinking
    # as output.
    assert done.usage.input_tokens == usage["promptTokenCount"] + usage.get(
        "toolUsePromptTokenCount", 0
    )
    assert done.usage.output_tokens == usage.get("candidatesTokenCount", 0) + usage.get(
        "thoughtsTokenCount", 0
    )
    # Both counts are parts: the prompt count holds the cached tokens, and output the thoughts.
    assert done.usage.cached_tokens == usage.get("cachedContentTokenCount", 0)
    assert done.usage.reasoning_tokens == usage.get("thoughtsTokenCount", 0)
    expected = "tool_calls" if calls else FINISH[finish_reason(rec)]
    assert done.finish_reason == expected


def test_every_recording_names_its_origin() -> None:
    listed = origins(HERE / "gemini")
    assert sorted(listed) == sorted(p.name for p in recordings("gemini"))
    for name, origin in listed.items():
        assert origin["repo"] and origin["note"], name
        if name.endswith(".yaml"):  # a cassette copied from a repository, at a commit
            assert len(origin["commit"]) == 40 and origin["path"], name


def test_thoughts_are_counted_on_both_paths_and_a_cache_hit_unstreamed() -> None:
    """The checks above meet thoughts streamed and not, and a cache hit (gemini-2.5-flash read
    17379 of its 17713 prompt tokens from Google's implicit cache); no recording here has a
    cache hit in a stream."""
    thinking = {rec.is_stream for rec, _ in CASES if gemini_usage(rec).get("thoughtsTokenCount")}
    assert thinking == {False, True}
    cached = {rec.is_stream for rec, _ in CASES if gemini_usage(rec).get("cachedContentTokenCount")}
    assert cached == {False}


async def test_a_cache_hit_is_part_of_the_prompt_and_thoughts_part_of_the_output() -> None:
    rec = recording("gemini", "pydantic-ai__test_google_model_mobile_youtube_video_url_input.yaml")[
        0
    ]
    usage = gemini_usage(rec)
    async with gemini([rec], model="gemini-2.5-flash") as (backend, _):
        done = await backend.complete(ask())
    assert (done.usage.input_tokens, done.usage.cached_tokens) == (17713, 17379)
    assert (done.usage.output_tokens, done.usage.reasoning_tokens) == (68 + 821, 821)
    assert done.usage.total_tokens == usage["totalTokenCount"] == 18602
