"""What a request cost, in US dollars, from the tokens it used.

Prices come from genai-prices' bundled table (see :mod:`massgen.tokens`): list prices,
tiered by prompt length where the provider tiers them. Treat them as possibly stale and give
what you actually pay as ``prices:`` in the config: an override applies to the model of that
name as genai-prices resolves it (``gpt-4o`` covers ``gpt-4o-2024-08-06``), and by the
longest prefix to models it does not know. Cost is an estimate for budgets and display, never
a bill; a model nobody priced (local servers, replay) costs 0, and is logged once.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping
from dataclasses import dataclass

from massgen.errors import ConfigError
from massgen.tokens import Tiers, known_model
from massgen.types import Usage

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Price:
    """USD per million tokens (the shortest-prompt tier)."""

    input: float
    output: float


Overrides = Mapping[str, Mapping[str, float]]


def price_of(model: str, overrides: Overrides | None = None) -> Price | None:
    """The price of ``model`` (an override first), or ``None`` when nobody priced it."""
    tiers = _tiers(model, overrides)
    return None if tiers is None else Price(tiers[0][0], tiers[1][0])


def cost(model: str, usage: Usage, overrides: Overrides | None = None) -> float:
    """Estimated USD cost of ``usage`` on ``model``; 0.0 for models nobody priced."""
    tiers = _tiers(model, overrides)
    if tiers is None:
        _unpriced(model)
        return 0.0
    prompt = usage.input_tokens
    return (prompt * _tier(tiers[0], prompt) + usage.output_tokens * _tier(tiers[1], prompt)) / 1e6


def _tiers(model: str, overrides: Overrides | None) -> tuple[Tiers, Tiers] | None:
    """Input and output prices of ``model``: an override is one flat tier."""
    if (override := _override_for(model, overrides)) is not None:
        return (override.input, ()), (override.output, ())
    info = known_model(model)
    return None if info is None else (info.input, info.output)


def _override_for(model: str, overrides: Overrides | None) -> Price | None:
    if not overrides:
        return None
    table = {k.strip().lower(): v for k, v in overrides.items()}
    name = model.strip().lower()
    info = known_model(name)
    if info is not None:  # its own name, or the name genai-prices knows it by
        key = name if name in table else info.id if info.id in table else None
    else:
        bare = name.rsplit("/", 1)[-1]
        key = max(
            (k for k in table if name.startswith(k) or bare.startswith(k)), key=len, default=None
        )
    return None if key is None else _override(key, table[key])


@functools.lru_cache(maxsize=64)
def _unpriced(model: str) -> None:
    log.info("no price known for model %r: its requests count as free", model)


def _tier(tiers: Tiers, prompt: int) -> float:
    """The price every token pays: a prompt past a tier's start moves the whole request there."""
    base, cliffs = tiers
    return next((price for start, price in reversed(cliffs) if prompt > start), base)


def _override(model: str, value: Mapping[str, float]) -> Price:
    try:
        return Price(float(value.get("input", 0.0)), float(value.get("output", 0.0)))
    except (AttributeError, TypeError, ValueError) as e:
        raise ConfigError(
            f"price for {model!r} must be {{input: <usd/M>, output: <usd/M>}}",
            key=f"pricing.{model}",
        ) from e
