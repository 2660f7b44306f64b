"""Cost estimates from genai-prices' bundled table: lookup rules, overrides, arithmetic."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from massgen.backends.pricing import Price, cost, price_of
from massgen.errors import ConfigError
from massgen.types import Usage


def test_exact_names_are_priced() -> None:
    assert price_of("gpt-4o") == Price(2.50, 10.00)
    assert price_of("gpt-4o-mini") == Price(0.15, 0.60)
    assert price_of("claude-haiku-4-5") == Price(1.00, 5.00)
    assert price_of("gemini-2.5-flash") == Price(0.30, 2.50)


def test_dated_and_variant_names_are_priced_as_their_model() -> None:
    assert price_of("gpt-4o-mini-2024-07-18") == price_of("gpt-4o-mini")
    assert price_of("gpt-4o-2024-08-06") == price_of("gpt-4o")
    assert price_of("claude-opus-4-5-20251101") == Price(5.00, 25.00)
    assert price_of("claude-opus-4-20250514") == Price(15.00, 75.00)
    assert price_of("gemini-2.5-flash-lite-preview") == price_of("gemini-2.5-flash-lite")
    assert price_of("o3-mini-high") == Price(1.10, 4.40)


def test_routing_prefixes_and_case_are_ignored() -> None:
    assert price_of("openai/gpt-4o") == price_of("gpt-4o")
    assert price_of("models/gemini-2.5-pro") == Price(1.25, 10.00)
    assert price_of("GPT-4o") == price_of("gpt-4o")


def test_unknown_local_and_replay_models_cost_nothing() -> None:
    usage = Usage(1_000_000, 1_000_000)
    assert price_of("llama3.1:8b") is None
    assert cost("llama3.1:8b", usage) == 0.0
    assert cost("replay", usage) == 0.0


def test_cost_is_tokens_times_price_per_million() -> None:
    assert cost("gpt-4o", Usage(1_000_000, 0)) == pytest.approx(2.50)
    assert cost("gpt-4o", Usage(0, 1_000_000)) == pytest.approx(10.00)
    assert cost("gpt-4o-mini", Usage(2000, 500)) == pytest.approx((2000 * 0.15 + 500 * 0.60) / 1e6)


def test_long_prompts_pay_the_providers_higher_tier() -> None:
    # gemini-2.5-pro costs more per token past 200k prompt tokens
    assert cost("gemini-2.5-pro", Usage(100_000, 0)) == pytest.approx(0.125)
    assert cost("gemini-2.5-pro", Usage(400_000, 0)) > 4 * 0.125


@pytest.mark.parametrize(
    "model",
    [
        "gpt-4o-mini",
        "gemini-2.5-pro",
        "gpt-5.5",
        "claude-haiku-5-5",
        "claude-sonnet-4-5",
        "gpt-5.6-sol",  # a cache-write price, no one-hour one
    ],
)
@pytest.mark.parametrize(
    "tokens",
    [
        (1200, 300, 0, 0, 0),
        (150_000, 4000, 0, 0, 0),
        (400_000, 50, 0, 0, 0),
        (9299, 577, 8448, 0, 0),
        (400_000, 50, 350_000, 0, 0),
        (1532, 33, 1111, 418, 0),
        (400_000, 50, 100_000, 250_000, 0),
        (1532, 33, 1111, 418, 300),
        (3926, 4, 0, 3913, 3913),
        (400_000, 50, 100_000, 250_000, 200_000),
    ],
)
def test_cost_agrees_with_genai_prices_own_calculation(
    model: str, tokens: tuple[int, int, int, int, int]
) -> None:
    from genai_prices import Usage as Tokens
    from genai_prices import calc_price

    prompt, output, cached, written, hour = tokens
    usage = Tokens(
        input_tokens=prompt,
        output_tokens=output,
        cache_read_tokens=cached,
        cache_write_tokens=written,
        cache_write_1h_tokens=hour,
    )
    expected = calc_price(usage, model)
    ours = Usage(prompt, output, cached, 0, written, hour)
    assert cost(model, ours) == pytest.approx(float(expected.total_price))


def _table(model: str) -> Any:
    from datetime import UTC, datetime

    from genai_prices.data_snapshot import get_snapshot

    info = get_snapshot().find_provider_model(model, None, None, None)[1]
    return info.get_prices(datetime.now(UTC))


@pytest.mark.parametrize("model", ["gpt-4o", "claude-haiku-4-5"])
def test_cached_tokens_pay_the_tables_cache_read_price(model: str) -> None:
    table = _table(model)
    fresh, read, out = (
        float(p) for p in (table.input_mtok, table.cache_read_mtok, table.output_mtok)
    )
    assert read < fresh  # else this test could not tell the two prices apart
    usage = Usage(9299, 577, cached_tokens=8448, reasoning_tokens=512)
    expected = ((9299 - 8448) * fresh + 8448 * read + 577 * out) / 1e6
    assert cost(model, usage) == pytest.approx(expected, rel=1e-12)
    assert cost(model, usage) < cost(model, Usage(9299, 577))  # the same tokens, none cached
    # Reasoning tokens are output tokens already: they change nothing.
    assert cost(model, usage) == cost(model, Usage(9299, 577, 8448))


@pytest.mark.parametrize("model", ["claude-haiku-4-5", "claude-sonnet-4-5"])
def test_tokens_written_to_the_cache_pay_the_tables_cache_write_price(model: str) -> None:
    table = _table(model)
    fresh, read, write, out = (
        float(getattr(p, "base", p))
        for p in (
            table.input_mtok,
            table.cache_read_mtok,
            table.cache_write_mtok,
            table.output_mtok,
        )
    )
    assert write > fresh  # else this test could not tell the two prices apart
    usage = Usage(1532, 33, cached_tokens=1111, cache_write_tokens=418)
    expected = (3 * fresh + 1111 * read + 418 * write + 33 * out) / 1e6
    assert cost(model, usage) == pytest.approx(expected, rel=1e-12)
    assert cost(model, usage) > cost(model, Usage(1532, 33, 1111))  # the same, none written


def _base(price: Any) -> float:
    return float(getattr(price, "base", price))


@pytest.mark.parametrize("model", ["claude-haiku-4-5", "claude-sonnet-4-5"])
def test_tokens_written_for_an_hour_pay_the_tables_one_hour_price(model: str) -> None:
    """Anthropic bills a one-hour cache write at twice the input price, a five-minute one at
    1.25 times: of 418 tokens written, the 300 kept for an hour pay the table's 1h price."""
    table = _table(model)
    fresh, read, write, hourly, out = (
        _base(p)
        for p in (
            table.input_mtok,
            table.cache_read_mtok,
            table.cache_write_mtok,
            table.cache_write_1h_mtok,
            table.output_mtok,
        )
    )
    assert hourly > write > fresh  # else this test could not tell the prices apart
    usage = Usage(1532, 33, 1111, 0, 418, 300)
    expected = (3 * fresh + 1111 * read + 118 * write + 300 * hourly + 33 * out) / 1e6
    assert cost(model, usage) == pytest.approx(expected, rel=1e-12)
    # priced as five-minute writes (as before the one-hour part was counted), it costs less
    five = cost(model, Usage(1532, 33, 1111, 0, 418))
    assert cost(model, usage) - five == pytest.approx(300 * (hourly - write) / 1e6, rel=1e-9)
    # the one-hour part is a part of the written tokens, never more than they are
    assert cost(model, Usage(1532, 33, 1111, 0, 418, 5000)) == cost(
        model, Usage(1532, 33, 1111, 0, 418, 418)
    )


def test_without_a_one_hour_price_hour_writes_pay_the_cache_write_price() -> None:
    """genai-prices' own calculation falls back the same way (see the agreement test)."""
    five = {"my-local": {"input": 2.0, "output": 4.0, "cache_write": 2.5}}
    usage = Usage(1_000_000, 0, 0, 0, 400_000, 300_000)  # 600k fresh, 400k written
    assert cost("my-local-7b", usage, five) == pytest.approx(1.2 + 1.0)
    hour = {"my-local": {**five["my-local"], "cache_write_1h": 4.0}}
    assert cost("my-local-7b", usage, hour) == pytest.approx(1.2 + 0.25 + 1.2)
    flat = {"my-local": {"input": 2.0, "output": 4.0}}  # no write price at all: the input one
    assert cost("my-local-7b", usage, flat) == pytest.approx(2.0)
    alone = {"my-local": {"input": 2.0, "output": 4.0, "cache_write_1h": 4.0}}
    assert cost("my-local-7b", usage, alone) == pytest.approx(1.2 + 0.2 + 1.2)
    with pytest.raises(ConfigError) as info:
        cost("my-local-7b", usage, {"my-local": {**five["my-local"], "cache_write_1h": "x"}})  # type: ignore[dict-item]
    assert info.value.key == "pricing.my-local"


def test_without_a_cache_write_price_written_tokens_pay_the_input_price() -> None:
    assert _table("gpt-4o").cache_write_mtok is None  # as OpenAI bills: no write surcharge
    assert cost("gpt-4o", Usage(1000, 10, 200, cache_write_tokens=300)) == cost(
        "gpt-4o", Usage(1000, 10, 200)
    )
    flat = {"my-local": {"input": 2.0, "output": 4.0, "cache_read": 0.5}}
    assert cost("my-local-7b", Usage(1_000_000, 0, 0, 0, 400_000), flat) == pytest.approx(2.0)
    dear = {"my-local": {"input": 2.0, "output": 4.0, "cache_read": 0.5, "cache_write": 2.5}}
    # 300k fresh at 2, 300k read at 0.5, 400k written at 2.5
    usage = Usage(1_000_000, 0, 300_000, 0, 400_000)
    assert cost("my-local-7b", usage, dear) == pytest.approx(0.6 + 0.15 + 1.0)
    # Reads and writes past the prompt: the prompt's tokens are paid for once, no more.
    assert cost("my-local-7b", Usage(100, 0, 60, 0, 90), dear) == pytest.approx(
        (60 * 0.5 + 40 * 2.5) / 1e6
    )


def test_without_a_cache_read_price_cached_tokens_pay_the_input_price() -> None:
    flat = {"my-local": {"input": 2.0, "output": 4.0}}
    assert cost("my-local-7b", Usage(1_000_000, 0, 900_000), flat) == pytest.approx(2.0)
    cheap = {"my-local": {"input": 2.0, "output": 4.0, "cache_read": 0.5}}
    assert cost("my-local-7b", Usage(1_000_000, 0, 900_000), cheap) == pytest.approx(0.65)
    # A provider reporting more cached tokens than prompt tokens pays for the prompt, no less.
    assert cost("my-local-7b", Usage(100, 0, 500), cheap) == pytest.approx(100 * 0.5 / 1e6)


def test_overrides_win_by_model_and_by_prefix_for_unknown_models() -> None:
    overrides = {"gpt-4o": {"input": 1.0, "output": 2.0}, "my-local": {"input": 0.5, "output": 0.5}}
    assert cost("gpt-4o-2024-08-06", Usage(1_000_000, 1_000_000), overrides) == pytest.approx(3.0)
    assert cost("my-local-7b", Usage(2_000_000, 0), overrides) == pytest.approx(1.0)
    # gpt-4o-mini is a model of its own, not covered by the gpt-4o override
    assert cost("gpt-4o-mini", Usage(1_000_000, 0), overrides) == pytest.approx(0.15)
    assert price_of("claude-haiku-4-5", {"other": {"input": 9}}) == Price(1.00, 5.00)


def test_bad_override_is_a_config_error() -> None:
    with pytest.raises(ConfigError) as info:
        cost("x", Usage(1, 1), {"x": {"input": "cheap"}})  # type: ignore[dict-item]
    assert info.value.key == "pricing.x"
    with pytest.raises(ConfigError) as info:
        cost("x", Usage(1, 1), {"x": {"input": 1, "output": 1, "cache_read": "half"}})  # type: ignore[dict-item]
    assert info.value.key == "pricing.x"
    with pytest.raises(ConfigError) as info:
        cost("x", Usage(1, 1), {"x": {"input": 1, "output": 1, "cache_write": "dear"}})  # type: ignore[dict-item]
    assert info.value.key == "pricing.x"


def test_importing_massgen_does_not_load_the_price_table() -> None:
    code = (
        "import sys, massgen.backends.pricing, massgen.config, massgen.cli\n"
        "sys.exit(7 if 'genai_prices' in sys.modules else 0)"
    )
    assert subprocess.run([sys.executable, "-c", code], timeout=60, check=False).returncode == 0


LOOKUP = """
import json, sys
from massgen.backends.pricing import cost
from massgen.tokens import context_window
from massgen.types import Usage
print(json.dumps([cost("gpt-4o", Usage(1000, 100)), context_window("gpt-4o"),
                  cost("gemini-2.5-pro", Usage(300_000, 10)), cost("llama3.1:8b", Usage(9, 9)),
                  cost("gpt-4o", Usage(1000, 100, 800)),
                  cost("gemini-2.5-pro", Usage(300_000, 10, 250_000)),
                  cost("claude-sonnet-4-5", Usage(300_000, 10, 1000, 0, 200_000)),
                  cost("claude-sonnet-4-5", Usage(300_000, 10, 1000, 0, 200_000, 150_000)),
                  "genai_prices" in sys.modules]))
"""


def test_a_second_run_reads_what_the_first_looked_up(tmp_path: Path) -> None:
    """genai-prices' table takes a fifth of a second to import: a run that asks about models
    seen before (same genai-prices release, same day) reads a small file instead."""
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path)}

    def run() -> list[Any]:
        out = subprocess.run(
            [sys.executable, "-c", LOOKUP], env=env, capture_output=True, text=True, timeout=60
        )
        assert out.returncode == 0, out.stderr
        return list(json.loads(out.stdout))

    first, second = run(), run()
    assert first[-1] is True and second[-1] is False  # the second never imported the table
    assert first[:-1] == second[:-1]
    assert first[0] == pytest.approx((1000 * 2.50 + 100 * 10.00) / 1e6)
    assert first[2] > 300_000 * 1.25 / 1e6  # the long-prompt tier survives the round trip
    # ...and so do the cache-read prices, tiers included.
    table = _table("gpt-4o")
    fresh, read, out = (
        float(p) for p in (table.input_mtok, table.cache_read_mtok, table.output_mtok)
    )
    assert first[4] == pytest.approx((200 * fresh + 800 * read + 100 * out) / 1e6)
    assert first[5] == cost("gemini-2.5-pro", Usage(300_000, 10, 250_000))
    (cached,) = (tmp_path / "massgen").glob("models-*.json")
    facts = json.loads(cached.read_text())
    assert facts["gpt-4o"]["cache_read"] == [read, []]
    # ...and the cache-write prices, tiers included (none for gpt-4o: OpenAI charges none).
    assert facts["gpt-4o"]["cache_write"] is None
    write = _table("claude-sonnet-4-5").cache_write_mtok
    tiers = [[t.start, float(t.price)] for t in write.tiers]
    assert facts["claude-sonnet-4-5"]["cache_write"] == [float(write.base), tiers]
    assert first[6] == cost("claude-sonnet-4-5", Usage(300_000, 10, 1000, 0, 200_000))
    # ...and the one-hour cache-write prices (none for gpt-4o either).
    assert facts["gpt-4o"]["cache_write_1h"] is None
    hour = _table("claude-sonnet-4-5").cache_write_1h_mtok
    tiers = [[t.start, float(t.price)] for t in hour.tiers]
    assert facts["claude-sonnet-4-5"]["cache_write_1h"] == [float(hour.base), tiers]
    assert first[7] == cost("claude-sonnet-4-5", Usage(300_000, 10, 1000, 0, 200_000, 150_000))
    assert first[7] > first[6]
    # A file an older massgen wrote today lacks the cache-read, the cache-write, or the one-hour
    # cache-write prices: its entries are looked up again (here a wrong input price shows
    # whether one was trusted).
    for older in ("cache_read", "cache_write", "cache_write_1h"):
        stale = json.loads(json.dumps(facts))
        for entry in stale.values():
            if entry is not None:
                del entry[older]
                entry["in"] = [99.0, []]
        cached.write_text(json.dumps(stale))
        again = run()
        assert again[-1] is True and again[:-1] == first[:-1]
    cached.write_text("{not json")  # a damaged file is looked up again, not trusted
    assert run() == first
