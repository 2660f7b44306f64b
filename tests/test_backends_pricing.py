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


@pytest.mark.parametrize("model", ["gpt-4o-mini", "gemini-2.5-pro", "gpt-5.5", "claude-haiku-5-5"])
@pytest.mark.parametrize("tokens", [(1200, 300), (150_000, 4000), (400_000, 50)])
def test_cost_agrees_with_genai_prices_own_calculation(model: str, tokens: tuple[int, int]) -> None:
    from genai_prices import Usage as Tokens
    from genai_prices import calc_price

    expected = calc_price(Tokens(input_tokens=tokens[0], output_tokens=tokens[1]), model)
    assert cost(model, Usage(*tokens)) == pytest.approx(float(expected.total_price))


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
    (cached,) = (tmp_path / "massgen").glob("models-*.json")
    cached.write_text("{not json")  # a damaged file is looked up again, not trusted
    assert run() == first
