"""Cached and reasoning tokens from recorded traffic, through to what a run reports and what
it costs: the result, its ``--json`` form, the run record, and the price from genai-prices'
table (the cache-read price for cached tokens, the cache-write price for Anthropic's writes,
the one-hour cache-write price for those it keeps an hour)."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from massgen.agents.agent import Agent
from massgen.backends.anthropic import AnthropicBackend
from massgen.backends.base import Backend
from massgen.backends.openai import OpenAIBackend
from massgen.backends.pricing import cost
from massgen.config.models import ObservabilityConfig
from massgen.observability.metrics import Metrics
from massgen.orchestrator import Orchestrator
from massgen.record import RunRecorder
from massgen.result import RunResult
from massgen.types import Usage
from tests.otlp import Receiver, Span, named
from tests.recorded import openai_facts
from tests.recorded.facts import (
    anthropic_blocks,
    anthropic_input_tokens,
    body,
    gemini_usage,
    recording,
)
from tests.recorded.harness import HERE, VARIANTS, Recorded, ReplayServer, load
from tests.recorded.replay_backends import KEY, answer, anthropic, ask, gemini

DEEPSEEK = (
    HERE / "openai_compat" / "pydantic_ai-test_deepseek_deferred_capability_with_thinking.yaml"
)
SEARCH = HERE / "openai" / "pydantic_ai-test_openai_responses_model_web_search_tool.yaml"


def table(model: str, prompt: int) -> tuple[float, float, float]:
    """Input, cache-read and output USD per 1M tokens of ``model`` for a prompt this short
    (the base tier: no prompt here is past one), from genai-prices."""
    from genai_prices.data_snapshot import get_snapshot

    info = get_snapshot().find_provider_model(model, None, None, None)[1]
    prices = info.get_prices(datetime.now(UTC))
    out: list[float] = []
    for price in (prices.input_mtok, prices.cache_read_mtok, prices.output_mtok):
        tiers = getattr(price, "tiers", None)
        assert tiers is None or all(prompt <= t.start for t in tiers)
        out.append(float(price.base if tiers is not None else price))
    assert out[1] < out[0], "a model whose cache reads cost less, or the test shows nothing"
    return out[0], out[1], out[2]


def priced(model: str, prompt: int, output: int, cached: int) -> float:
    fresh, read, out = table(model, prompt)
    return ((prompt - cached) * fresh + cached * read + output * out) / 1e6


async def observed_run(
    backend: Backend, record: Path, *, stream: bool = False
) -> tuple[RunResult, Metrics, list[Span]]:
    """One agent's run of "Hello" on ``backend``, recorded to ``record``, with metrics and
    traces on (a loopback collector): its result, metrics and spans. ``stream``: a subscriber
    hears token deltas too, so the run asks for its answers streamed."""
    metrics = Metrics(process=False)
    heard: list[object] = []
    with Receiver() as collector:
        orchestrator = Orchestrator(
            [Agent("ada", backend)],
            strategy="parallel",
            subscribers=[RunRecorder(path=record), metrics, *([heard.append] if stream else [])],
            observability=ObservabilityConfig(otlp=collector.url),
        )
        result = await orchestrator.arun("Hello")
        await orchestrator.aclose()
        spans = collector.wait(lambda got: len(got) >= 3)
    return result, metrics, spans


@pytest.mark.parametrize("client", ["http", "sdk"])
async def test_a_run_reports_and_records_cached_and_reasoning_tokens(
    tmp_path: Path, client: str
) -> None:
    """DeepSeek's reasoner read 512 of 563 prompt tokens from its cache and thought for 60 of
    its 116 answer tokens (pydantic-ai's recording), through a whole run: its result, record,
    spans (decoded by the official OTLP messages) and Prometheus counters."""
    rec = load(DEEPSEEK)[0]
    facts = openai_facts.read(rec)
    assert facts.usage == (563, 116, 512, 60)
    expected = Usage(*facts.usage)
    record = tmp_path / "run.json"
    with ReplayServer([rec]) as server:
        backend = OpenAIBackend(
            "deepseek-reasoner", api_key="sk-test", base_url=f"{server.url}/v1", client=client
        )
        result, metrics, spans = await observed_run(backend, record)
    turn_and_request = [*named(spans, "invoke_agent ada"), *named(spans, "chat deepseek-reasoner")]
    assert len(turn_and_request) == 2
    for span in turn_and_request:
        assert span.attributes["gen_ai.usage.cache_read.input_tokens"] == 512
        assert span.attributes["gen_ai.usage.reasoning.output_tokens"] == 60
        assert span.attributes["gen_ai.usage.input_tokens"] == 563
    labels = {"provider": "openai", "model": "deepseek-reasoner", "agent": "ada"}  # as asked
    sample = metrics.registry.get_sample_value
    assert sample("massgen_cached_input_tokens_total", labels) == 512
    assert sample("massgen_reasoning_output_tokens_total", labels) == 60
    assert result.requests == 1
    assert result.usage == expected
    model = result.answers[0].model  # the one the answer names (deepseek-v4-flash)
    assert model == facts.model
    assert result.cost == pytest.approx(priced(model, 563, 116, 512), rel=1e-12)
    as_json: dict[str, Any] = json.loads(json.dumps(result.to_dict()))  # what `--json` prints
    written = json.loads(record.read_text())
    for data in (as_json, written):
        assert data["usage"] == {
            "input_tokens": 563,
            "output_tokens": 116,
            "cached_tokens": 512,
            "reasoning_tokens": 60,
            "cache_write_tokens": 0,
            "cache_write_1h_tokens": 0,
            "total_tokens": 679,
        }
        assert data["usage_by_agent"]["ada"]["cached_tokens"] == 512
        assert data["answers"][0]["usage"]["reasoning_tokens"] == 60


@pytest.mark.parametrize("client", ["http", "sdk"])
async def test_a_responses_answer_costs_its_cache_read_price(client: str) -> None:
    """gpt-5 on the Responses API: 8448 of 9299 prompt tokens read from the cache."""
    rec = load(SEARCH)[0]
    facts = openai_facts.read(rec)
    assert facts.usage == (9299, 577, 8448, 512)
    with ReplayServer([rec]) as server:
        backend = OpenAIBackend(
            "gpt-5", api_key="sk-test", base_url=f"{server.url}/v1", client=client
        )
        done = await backend.complete(ask(native=True))
        await backend.aclose()
    assert done.usage == Usage(9299, 577, 8448, 512)
    assert cost(done.model, done.usage) == pytest.approx(priced(done.model, 9299, 577, 8448))

    from genai_prices import Usage as Tokens
    from genai_prices import calc_price

    theirs = calc_price(
        Tokens(input_tokens=9299, output_tokens=577, cache_read_tokens=8448), done.model
    )
    assert cost(done.model, done.usage) == pytest.approx(float(theirs.total_price))


CACHE = "pydantic-ai__test_anthropic_cache_real_api.yaml"


def cache_write_price(model: str, prompt: int) -> float:
    """USD per 1M tokens written to ``model``'s prompt cache (the 5-minute one, Anthropic's
    default) for a prompt this short, from genai-prices; above its input price."""
    from genai_prices.data_snapshot import get_snapshot

    info = get_snapshot().find_provider_model(model, None, None, None)[1]
    price = info.get_prices(datetime.now(UTC)).cache_write_mtok
    tiers = getattr(price, "tiers", None)
    assert tiers is None or all(prompt <= t.start for t in tiers)
    write = float(price.base if tiers is not None else price)
    assert write > table(model, prompt)[0], "a write dearer than input, or the test shows nothing"
    return write


def anthropic_priced(model: str, prompt: int, output: int, cached: int, written: int) -> float:
    fresh, read, out = table(model, prompt)
    write = cache_write_price(model, prompt)
    rest = prompt - cached - written
    return (rest * fresh + cached * read + written * write + output * out) / 1e6


async def test_an_anthropic_answer_costs_its_cache_read_and_write_prices() -> None:
    """Claude read 1111 prompt tokens from the cache and wrote 418 to it: the reads pay the
    cache-read price, the writes the cache-write price (25% above the input price), as
    genai-prices' own calculation prices them too."""
    rec = recording("anthropic", CACHE)[1]
    _, usage, _ = anthropic_blocks(rec)
    read, written = usage["cache_read_input_tokens"], usage["cache_creation_input_tokens"]
    assert (read, written) == (1111, 418)
    async with anthropic([rec]) as (backend, _):
        done = await backend.complete(ask())
    prompt = usage["input_tokens"] + written + read
    assert done.usage == Usage(prompt, usage["output_tokens"], read, cache_write_tokens=418)
    ours = cost(done.model, done.usage)
    assert ours == pytest.approx(
        anthropic_priced(done.model, prompt, usage["output_tokens"], read, written), rel=1e-12
    )
    # the same tokens as plain input would cost less: the write surcharge is counted
    assert ours > cost(done.model, Usage(prompt, usage["output_tokens"], read))

    from genai_prices import Usage as Tokens
    from genai_prices import calc_price

    theirs = calc_price(
        Tokens(
            input_tokens=prompt,
            output_tokens=usage["output_tokens"],
            cache_read_tokens=read,
            cache_write_tokens=written,
        ),
        done.model,
    )
    assert ours == pytest.approx(float(theirs.total_price))


async def test_an_anthropic_run_reports_records_and_exports_cache_writes(tmp_path: Path) -> None:
    """The same recorded Claude turn through a whole run: its result, ``--json`` form and
    record, spans (decoded by the official OTLP messages) and Prometheus counters."""
    rec = recording("anthropic", CACHE)[1]
    _, usage, _ = anthropic_blocks(rec)
    prompt, output = usage["input_tokens"] + 418 + 1111, usage["output_tokens"]
    record = tmp_path / "run.json"
    with ReplayServer([rec]) as server:
        backend = AnthropicBackend("claude-sonnet-4-5", api_key=KEY, base_url=server.url)
        result, metrics, spans = await observed_run(backend, record)
    model = result.answers[0].model  # the one the answer names (claude-sonnet-4-5-20250929)
    assert model == body(rec)["model"]
    turn_and_request = [*named(spans, "invoke_agent ada"), *named(spans, "chat claude-sonnet-4-5")]
    assert len(turn_and_request) == 2
    for span in turn_and_request:
        assert span.attributes["gen_ai.usage.cache_creation.input_tokens"] == 418
        assert span.attributes["gen_ai.usage.cache_read.input_tokens"] == 1111
        assert span.attributes["gen_ai.usage.input_tokens"] == prompt
        assert "gen_ai.usage.reasoning.output_tokens" not in span.attributes  # none reported
    labels = {"provider": "anthropic", "model": "claude-sonnet-4-5", "agent": "ada"}  # as asked
    sample = metrics.registry.get_sample_value
    assert sample("massgen_cache_write_input_tokens_total", labels) == 418
    assert sample("massgen_cached_input_tokens_total", labels) == 1111
    assert result.requests == 1
    assert result.usage == Usage(prompt, output, 1111, cache_write_tokens=418)
    expected = anthropic_priced(model, prompt, output, 1111, 418)
    assert result.cost == pytest.approx(expected, rel=1e-12)
    as_json: dict[str, Any] = json.loads(json.dumps(result.to_dict()))  # what `--json` prints
    written = json.loads(record.read_text())
    for data in (as_json, written):
        assert data["usage"]["cache_write_tokens"] == 418
        assert data["usage"]["total_tokens"] == prompt + output
        assert data["usage_by_agent"]["ada"]["cache_write_tokens"] == 418
        assert data["answers"][0]["usage"]["cache_write_tokens"] == 418
        assert data["cost"] == pytest.approx(expected, rel=1e-12)


async def test_a_gemini_cache_hit_costs_its_cache_read_price() -> None:
    """gemini-2.5-flash read 17379 of 17713 prompt tokens from Google's implicit cache and
    thought for 821 tokens outside its 68 answer tokens: output is both, at the output price."""
    rec = recording("gemini", "pydantic-ai__test_google_model_mobile_youtube_video_url_input.yaml")[
        0
    ]
    usage = gemini_usage(rec)
    async with gemini([rec], model="gemini-2.5-flash") as (backend, _):
        done = await backend.complete(ask())
    output = usage["candidatesTokenCount"] + usage["thoughtsTokenCount"]
    assert done.usage == Usage(
        usage["promptTokenCount"],
        output,
        usage["cachedContentTokenCount"],
        usage["thoughtsTokenCount"],
    )
    assert cost(done.model, done.usage) == pytest.approx(
        priced(done.model, usage["promptTokenCount"], output, usage["cachedContentTokenCount"])
    )


HOUR = "pydantic-ai__test_anthropic_cache_earlier_breakpoint_raised_to_later_longer_ttl.http"


def one_hour_write_price(model: str, prompt: int) -> float:
    """USD per 1M tokens written to ``model``'s one-hour prompt cache for a prompt this short,
    from genai-prices; above its five-minute write price."""
    from genai_prices.data_snapshot import get_snapshot

    info = get_snapshot().find_provider_model(model, None, None, None)[1]
    price = info.get_prices(datetime.now(UTC)).cache_write_1h_mtok
    tiers = getattr(price, "tiers", None)
    assert tiers is None or all(prompt <= t.start for t in tiers)
    hourly = float(price.base if tiers is not None else price)
    assert hourly > cache_write_price(model, prompt), "or the test shows nothing"
    return hourly


def hour_facts(rec: Recorded) -> tuple[int, int, int, int]:
    """Prompt and output tokens of a recorded answer, the prompt tokens it wrote to the cache
    and, of those, the ones written to the one-hour cache."""
    _, usage, _ = anthropic_blocks(rec)
    by_ttl = usage["cache_creation"]
    written, hour = usage["cache_creation_input_tokens"], by_ttl["ephemeral_1h_input_tokens"]
    assert hour + by_ttl["ephemeral_5m_input_tokens"] == written
    return anthropic_input_tokens(usage), usage["output_tokens"], written, hour


@pytest.mark.parametrize("variant", VARIANTS)
async def test_an_anthropic_one_hour_cache_write_costs_its_one_hour_price(variant: str) -> None:
    """claude-sonnet-4-6 wrote all 3913 of its cache writes to the one-hour cache (pydantic-ai's
    recording, streamed): they pay the table's one-hour write price (twice the input price),
    not the five-minute one (1.25 times) massgen charged them before it read the split."""
    rec = recording("anthropic", HOUR)[0]
    prompt, output, written, hour = hour_facts(rec)
    assert (prompt, output, written, hour) == (3926, 4, 3913, 3913)
    async with anthropic([rec], variant, model="claude-sonnet-4-6") as (backend, _):
        done, _ = await answer(backend, ask(), stream=True)
    assert done.usage == Usage(prompt, output, 0, 0, written, hour)
    model = done.model
    fresh, _, out = table(model, prompt)
    five, hourly = cache_write_price(model, prompt), one_hour_write_price(model, prompt)
    ours = cost(model, done.usage)
    expected = ((prompt - written) * fresh + hour * hourly + output * out) / 1e6
    assert ours == pytest.approx(expected, rel=1e-12)
    before = cost(model, replace(done.usage, cache_write_1h_tokens=0))  # all at five minutes
    assert ours - before == pytest.approx(hour * (hourly - five) / 1e6, rel=1e-9)

    from genai_prices import Usage as Tokens
    from genai_prices import calc_price

    theirs = calc_price(
        Tokens(
            input_tokens=prompt,
            output_tokens=output,
            cache_write_tokens=written,
            cache_write_1h_tokens=hour,
        ),
        model,
    )
    assert ours == pytest.approx(float(theirs.total_price))


async def test_an_anthropic_run_reports_and_records_its_one_hour_cache_writes(
    tmp_path: Path,
) -> None:
    """The same recorded turn through a whole run: the result, its ``--json`` form and the run
    record carry the one-hour part of the writes and the cost it makes; spans and Prometheus
    count the writes whole, as before (no attribute or series of their own)."""
    rec = recording("anthropic", HOUR)[0]
    prompt, output, written, hour = hour_facts(rec)
    record = tmp_path / "run.json"
    with ReplayServer([rec]) as server:
        backend = AnthropicBackend("claude-sonnet-4-6", api_key=KEY, base_url=server.url)
        result, metrics, spans = await observed_run(backend, record, stream=True)
    model = result.answers[0].model
    expected = cost(model, Usage(prompt, output, 0, 0, written, hour))
    assert expected > cost(model, Usage(prompt, output, 0, 0, written))
    assert result.usage == Usage(prompt, output, 0, 0, written, hour)
    assert result.cost == pytest.approx(expected, rel=1e-12)
    as_json: dict[str, Any] = json.loads(json.dumps(result.to_dict()))  # what `--json` prints
    for data in (as_json, json.loads(record.read_text())):
        assert data["usage"]["cache_write_tokens"] == written
        assert data["usage"]["cache_write_1h_tokens"] == hour
        assert data["usage"]["total_tokens"] == prompt + output
        assert data["usage_by_agent"]["ada"]["cache_write_1h_tokens"] == hour
        assert data["answers"][0]["usage"]["cache_write_1h_tokens"] == hour
        assert data["cost"] == pytest.approx(expected, rel=1e-12)
    for span in [*named(spans, "invoke_agent ada"), *named(spans, "chat claude-sonnet-4-6")]:
        assert span.attributes["gen_ai.usage.cache_creation.input_tokens"] == written
    labels = {"provider": "anthropic", "model": "claude-sonnet-4-6", "agent": "ada"}  # as asked
    sample = metrics.registry.get_sample_value
    assert sample("massgen_cache_write_input_tokens_total", labels) == written
