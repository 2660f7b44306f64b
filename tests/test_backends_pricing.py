"""Cost estimates from the price table: lookup rules, overrides, arithmetic."""

from __future__ import annotations

import pytest

from massgen.backends.pricing import PRICES, PRICES_AS_OF, Price, cost, price_of
from massgen.errors import ConfigError
from massgen.types import Usage


def test_exact_names_are_priced() -> None:
    assert price_of("gpt-4o") == Price(2.50, 10.00)
    assert price_of("gpt-4o-mini") == Price(0.15, 0.60)
    assert price_of("claude-haiku-4-5") == Price(1.00, 5.00)
    assert price_of("gemini-2.5-flash") == Price(0.30, 2.50)


def test_longest_prefix_wins_for_dated_and_variant_names() -> None:
    assert price_of("gpt-4o-mini-2024-07-18") == PRICES["gpt-4o-mini"]
    assert price_of("gpt-4o-2024-08-06") == PRICES["gpt-4o"]
    assert price_of("claude-opus-4-5-20251101") == PRICES["claude-opus-4-5"]
    assert price_of("claude-opus-4-20250514") == PRICES["claude-opus-4"]
    assert price_of("claude-sonnet-5-5") == PRICES["claude-sonnet-5"]
    assert price_of("gemini-2.5-flash-lite-preview") == PRICES["gemini-2.5-flash-lite"]
    assert price_of("o3-mini-high") == PRICES["o3-mini"]


def test_routing_prefixes_and_case_are_ignored() -> None:
    assert price_of("openai/gpt-4o") == PRICES["gpt-4o"]
    assert price_of("models/gemini-2.5-pro") == PRICES["gemini-2.5-pro"]
    assert price_of("GPT-4o") == PRICES["gpt-4o"]


def test_unknown_local_and_replay_models_cost_nothing() -> None:
    usage = Usage(1_000_000, 1_000_000)
    assert price_of("llama3.1:8b") is None
    assert cost("llama3.1:8b", usage) == 0.0
    assert cost("replay", usage) == 0.0


def test_cost_is_tokens_times_price_per_million() -> None:
    assert cost("gpt-4o", Usage(1_000_000, 0)) == pytest.approx(2.50)
    assert cost("gpt-4o", Usage(0, 1_000_000)) == pytest.approx(10.00)
    assert cost("gpt-4o-mini", Usage(2000, 500)) == pytest.approx((2000 * 0.15 + 500 * 0.60) / 1e6)


def test_overrides_win_and_use_the_same_lookup() -> None:
    overrides = {"gpt-4o": {"input": 1.0, "output": 2.0}, "my-local": {"input": 0.5, "output": 0.5}}
    assert cost("gpt-4o-2024-08-06", Usage(1_000_000, 1_000_000), overrides) == pytest.approx(3.0)
    assert cost("my-local-7b", Usage(2_000_000, 0), overrides) == pytest.approx(1.0)
    assert cost("gpt-4o-mini", Usage(1_000_000, 0), overrides) == pytest.approx(
        0.15
    )  # longer table key
    assert price_of("claude-haiku-4-5", {"other": {"input": 9}}) == PRICES["claude-haiku-4-5"]


def test_bad_override_is_a_config_error() -> None:
    with pytest.raises(ConfigError) as info:
        cost("x", Usage(1, 1), {"x": {"input": "cheap"}})  # type: ignore[dict-item]
    assert info.value.key == "pricing.x"


def test_the_table_is_dated_and_sane() -> None:
    assert PRICES_AS_OF
    for name, price in PRICES.items():
        assert name == name.lower()
        assert 0 <= price.input <= price.output or name == "replay", name
