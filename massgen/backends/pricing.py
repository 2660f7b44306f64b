"""What a request cost, in US dollars: genai-prices' list prices or a ``prices:`` override
(by the model as genai-prices resolves it, else the longest prefix). Prompt tokens read from
the provider's cache pay its cache-read price, and those written to it (Anthropic) its
cache-write price, where one is known, else the input price; of those written, the ones kept
for an hour pay the one-hour cache-write price, where one is known, else the cache-write price
(else the input price), as genai-prices' own calculation falls back. An estimate; a model
nobody priced costs 0 (logged once)."""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping
from dataclasses import dataclass

from massgen.errors import ConfigError
from massgen.tokens import CACHE_PRICES, Tiers, known_model
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
    if (tiers := _tiers(model, overrides)) is None:
        _unpriced(model)
        return 0.0
    fresh, output, *cache = tiers
    read, write = (fresh if p is None else p for p in cache[:2])
    hourly = write if cache[2] is None else cache[2]
    prompt = usage.input_tokens  # each of its tokens paid once, whatever a provider reports
    cached = min(usage.cached_tokens, prompt)
    written = min(usage.cache_write_tokens, prompt - cached)
    hour = min(usage.cache_write_1h_tokens, written)
    parts = [(prompt - cached - written, fresh), (cached, read), (written - hour, write)]
    parts += [(hour, hourly), (usage.output_tokens, output)]
    # The tier is the whole prompt's, cached tokens included, as genai-prices reckons it.
    return sum(n * _tier(price, prompt) for n, price in parts) / 1e6


Prices = tuple[Tiers, Tiers, Tiers | None, Tiers | None, Tiers | None]


def _tiers(model: str, overrides: Overrides | None) -> Prices | None:
    """Input, output, cache-read, cache-write and one-hour cache-write (``None``: not priced
    apart) prices of ``model``, an override first."""
    table = {k.strip().lower(): v for k, v in (overrides or {}).items()}
    name = model.strip().lower()
    info = known_model(name)
    if info is not None:  # its own name, or the name genai-prices knows it by
        key = name if name in table else info.id if info.id in table else None
    else:
        bare = name.rsplit("/", 1)[-1]
        key = max(
            (k for k in table if name.startswith(k) or bare.startswith(k)), key=len, default=None
        )
    if key is not None:  # one flat tier
        try:
            entry = table[key]
            prices = [float(entry.get(kind, 0.0)) for kind in ("input", "output")]
            cache: list[Tiers | None] = [
                None if (p := entry.get(k)) is None else (float(p), ()) for k in CACHE_PRICES
            ]
        except (AttributeError, TypeError, ValueError) as e:
            message = f"price for {key!r} must be {{input: <usd/M>, output: <usd/M>}}"
            message += " (and maybe cache_read, cache_write, cache_write_1h: <usd/M>)"
            raise ConfigError(message, key=f"pricing.{key}") from e
        return (prices[0], ()), (prices[1], ()), cache[0], cache[1], cache[2]
    if info is None:
        return None
    return info.input, info.output, info.cache_read, info.cache_write, info.cache_write_1h


@functools.lru_cache(maxsize=64)
def _unpriced(model: str) -> None:
    log.info("no price known for model %r: its requests count as free", model)


def _tier(tiers: Tiers, prompt: int) -> float:
    # A prompt past a tier's start moves the whole request there.
    base, cliffs = tiers
    return next((price for start, price in reversed(cliffs) if prompt > start), base)
