"""What a request cost, in US dollars, from the tokens it used.

The table holds **list prices** (USD per million input / output tokens, standard tier, no
batch or cache discounts, shortest-context tier) as the providers published them on their
pricing pages, gathered in **2026-11** from pages dated June to October 2026 (Gemini 3.8
Flash at its introductory price, which Google says ends 2026-12-31). Prices change and new
models appear: treat every figure as possibly stale, and pass ``overrides`` (``pricing:`` in
the config) for what you actually pay. Cost is an estimate for budgeting and display, never
a bill.

A model is looked up by its exact name, then by the longest known prefix (so
``gpt-4o-mini-2024-07-18`` is priced as ``gpt-4o-mini``), then without a routing prefix
such as ``openai/`` or ``models/``. Models nobody priced (local ones, replay) cost 0.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from massgen.errors import ConfigError
from massgen.types import Usage

PRICES_AS_OF = "2026-11"


@dataclass(frozen=True, slots=True)
class Price:
    """USD per million tokens."""

    input: float
    output: float


def _p(input_: float, output: float) -> Price:
    return Price(input_, output)


PRICES: Mapping[str, Price] = {
    # OpenAI
    "gpt-5.5": _p(5.00, 30.00),
    "gpt-5.5-pro": _p(30.00, 180.00),
    "gpt-5.4": _p(2.50, 15.00),
    "gpt-5.4-mini": _p(0.75, 4.50),
    "gpt-5.4-nano": _p(0.20, 1.25),
    "gpt-5.4-pro": _p(30.00, 180.00),
    "gpt-5.2": _p(1.75, 14.00),
    "gpt-5": _p(1.25, 10.00),
    "gpt-5-mini": _p(0.25, 2.00),
    "gpt-5-nano": _p(0.05, 0.40),
    "gpt-5-pro": _p(15.00, 120.00),
    "gpt-4.1": _p(2.00, 8.00),
    "gpt-4.1-mini": _p(0.40, 1.60),
    "gpt-4.1-nano": _p(0.10, 0.40),
    "gpt-4o": _p(2.50, 10.00),
    "gpt-4o-mini": _p(0.15, 0.60),
    "gpt-4-turbo": _p(10.00, 30.00),
    "gpt-3.5-turbo": _p(0.50, 1.50),
    "o1": _p(15.00, 60.00),
    "o1-mini": _p(1.10, 4.40),
    "o3": _p(2.00, 8.00),
    "o3-mini": _p(1.10, 4.40),
    "o3-pro": _p(20.00, 80.00),
    "o4-mini": _p(1.10, 4.40),
    # Anthropic (aliases and dated ids share a prefix)
    "claude-fable-5": _p(10.00, 50.00),
    "claude-opus-5-5": _p(4.00, 20.00),
    "claude-opus-5": _p(5.00, 25.00),
    "claude-sonnet-5": _p(2.00, 10.00),
    "claude-haiku-5-5": _p(0.10, 0.50),
    "claude-opus-4-8": _p(5.00, 25.00),
    "claude-opus-4-7": _p(5.00, 25.00),
    "claude-opus-4-6": _p(5.00, 25.00),
    "claude-opus-4-5": _p(5.00, 25.00),
    "claude-opus-4-1": _p(15.00, 75.00),
    "claude-opus-4": _p(15.00, 75.00),
    "claude-sonnet-4": _p(3.00, 15.00),
    "claude-haiku-4-5": _p(1.00, 5.00),
    "claude-3-7-sonnet": _p(3.00, 15.00),
    "claude-3-5-sonnet": _p(3.00, 15.00),
    "claude-3-5-haiku": _p(0.80, 4.00),
    "claude-3-opus": _p(15.00, 75.00),
    "claude-3-haiku": _p(0.25, 1.25),
    # Google (prompts up to 200k tokens)
    "gemini-3.8-flash": _p(0.75, 3.75),
    "gemini-3.5-flash": _p(1.50, 9.00),
    "gemini-3.1-pro": _p(2.00, 12.00),
    "gemini-3-pro": _p(2.00, 12.00),
    "gemini-3-flash": _p(0.50, 3.00),
    "gemini-2.5-pro": _p(1.25, 10.00),
    "gemini-2.5-flash": _p(0.30, 2.50),
    "gemini-2.5-flash-lite": _p(0.10, 0.40),
    "gemini-2.0-flash": _p(0.10, 0.40),
    "gemini-2.0-flash-lite": _p(0.075, 0.30),
    "gemini-1.5-pro": _p(1.25, 5.00),
    "gemini-1.5-flash": _p(0.075, 0.30),
    # xAI
    "grok-4.3": _p(1.25, 2.50),
    "grok-4.20": _p(1.25, 2.50),
    "grok-4-1-fast": _p(0.20, 0.50),
    "grok-4-fast": _p(0.20, 0.50),
    "grok-4": _p(3.00, 15.00),
    "grok-3": _p(3.00, 15.00),
    "grok-3-mini": _p(0.30, 0.50),
    "grok-code-fast-1": _p(0.20, 1.50),
    # Offline
    "replay": _p(0.0, 0.0),
}

FREE = Price(0.0, 0.0)


def _lookup(model: str, table: Mapping[str, Price]) -> Price | None:
    if model in table:
        return table[model]
    best = max((k for k in table if model.startswith(k)), key=len, default=None)
    return None if best is None else table[best]


def price_of(
    model: str, overrides: Mapping[str, Mapping[str, float]] | None = None
) -> Price | None:
    """The price of ``model``, or ``None`` when nobody priced it.

    ``overrides`` (model -> ``{input, output}``) join the table, replacing entries of the
    same name; the lookup (exact, then longest prefix) runs over both together.
    """
    table: Mapping[str, Price] = PRICES
    if overrides:
        table = {**PRICES, **{k.strip().lower(): _override(k, v) for k, v in overrides.items()}}
    name = model.strip().lower()
    candidates = [name]
    if "/" in name:  # "openai/gpt-4o" (OpenRouter), "models/gemini-2.5-pro" (Gemini)
        candidates.append(name.rsplit("/", 1)[1])
    for candidate in candidates:
        found = _lookup(candidate, table)
        if found is not None:
            return found
    return None


def cost(
    model: str, usage: Usage, overrides: Mapping[str, Mapping[str, float]] | None = None
) -> float:
    """Estimated USD cost of ``usage`` on ``model``; 0.0 for models nobody priced."""
    price = price_of(model, overrides) or FREE
    return (usage.input_tokens * price.input + usage.output_tokens * price.output) / 1_000_000


def _override(model: str, value: Mapping[str, float]) -> Price:
    try:
        return Price(float(value.get("input", 0.0)), float(value.get("output", 0.0)))
    except (AttributeError, TypeError, ValueError) as e:
        raise ConfigError(
            f"price for {model!r} must be {{input: <usd/M>, output: <usd/M>}}",
            key=f"pricing.{model}",
        ) from e
