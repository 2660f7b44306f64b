"""Gemini thought parts (``thought: true``, the thought summaries) in real traffic: kept as
reasoning, never in the answer, streamed or not."""

from __future__ import annotations

import pytest

from tests.recorded.facts import gemini_parts, gemini_variants, recording
from tests.recorded.harness import Recorded
from tests.recorded.replay_backends import answer, ask, gemini

THINKING = [
    (rec, variant)
    for name in (
        "pydantic-ai__test_google_model_thinking_part.yaml",
        "pydantic-ai__test_google_model_thinking_part_iter.yaml",
        "firebase__googleai-streaming-success-thinking-reply-thought-summary.http",
        "firebase__googleai-unary-success-thinking-function-call-thought-summary-signature.http",
    )
    for rec in recording("gemini", name)
    for variant in gemini_variants(rec)
]


@pytest.mark.parametrize("case", THINKING, ids=lambda c: f"{c[0].name}-{c[1]}")
async def test_thought_parts_are_reasoning_not_answer(case: tuple[Recorded, str]) -> None:
    rec, variant = case
    parts = gemini_parts(rec)
    thoughts = "".join(p["text"] for p in parts if p.get("thought"))
    assert thoughts
    async with gemini([rec], variant) as (backend, _):
        done, deltas = await answer(backend, ask(), stream=rec.is_stream)
    assert done.reasoning == thoughts
    assert done.text == "".join(p.get("text", "") for p in parts if not p.get("thought"))
    for p in parts:
        if p.get("thought"):
            assert p["text"] not in done.text and p["text"] not in "".join(deltas)


async def test_no_thoughts_no_reasoning() -> None:
    (rec,) = recording("gemini", "pydantic-ai__test_google_model_stream.yaml")
    async with gemini([rec]) as (backend, _):
        done, _ = await answer(backend, ask(), stream=True)
    assert done.text and done.reasoning == ""
