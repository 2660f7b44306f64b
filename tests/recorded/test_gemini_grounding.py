"""Google Search grounding in real Gemini traffic: the pages become sources, each query a
reported search, and the tokens the search results cost are counted (and priced) as input."""

from __future__ import annotations

from typing import Any

import pytest

from massgen.backends._common import MAX_SOURCES
from massgen.backends.pricing import cost, price_of
from tests.recorded.facts import gemini_chunks, gemini_usage, gemini_variants, recording
from tests.recorded.harness import Recorded
from tests.recorded.replay_backends import answer, ask, gemini

GROUNDED = [
    (rec, variant)
    for name in (
        "pydantic-ai__test_google_model_web_search_tool.yaml",
        "pydantic-ai__test_google_model_web_search_tool_stream.yaml",
        "firebase__googleai-unary-success-google-search-grounding.http",
    )
    for rec in recording("gemini", name)
    for variant in gemini_variants(rec)
]


def grounding(rec: Recorded) -> dict[str, Any]:
    """The last non-empty grounding metadata (a stream sends ``{}`` until the end)."""
    found: dict[str, Any] = {}
    for chunk in gemini_chunks(rec):
        for candidate in chunk.get("candidates", [])[:1]:
            found = candidate.get("groundingMetadata") or found
    return found


@pytest.mark.parametrize("case", GROUNDED, ids=lambda c: f"{c[0].name}-{c[1]}")
async def test_grounding_pages_queries_and_search_tokens(case: tuple[Recorded, str]) -> None:
    rec, variant = case
    meta = grounding(rec)
    pages = [c["web"]["uri"] for c in meta["groundingChunks"]]
    async with gemini([rec], variant) as (backend, _):
        done, _ = await answer(backend, ask(native=True), stream=rec.is_stream)
    assert [s.url for s in done.sources] == list(dict.fromkeys(pages))[:MAX_SOURCES]
    assert [dict(c.arguments) for c in done.server_calls] == [
        {"query": q} for q in meta.get("webSearchQueries", [])
    ]
    assert all(c.name == "web_search" and c.ok for c in done.server_calls)
    usage = gemini_usage(rec)
    searched = usage.get("toolUsePromptTokenCount", 0)
    assert done.usage.input_tokens == usage["promptTokenCount"] + searched
    price = price_of(done.model)
    assert price is not None
    billed_out = usage.get("candidatesTokenCount", 0) + usage.get("thoughtsTokenCount", 0)
    assert cost(done.model, done.usage) == pytest.approx(
        ((usage["promptTokenCount"] + searched) * price.input + billed_out * price.output) / 1e6
    )
