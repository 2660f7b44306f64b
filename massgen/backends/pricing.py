"""What a request cost, in US dollars: genai-prices' list prices or a ``prices:`` override
(by the model as genai-prices resolves it, else the longest prefix). Prompt tokens read from
the provider's cache pay its cache-read price, and those written to it (Anthropic) its
cache-write price, where one is known, else the input price. An estimate; a model nobody
priced costs 0 (logged once)."""

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
    if (tiers := _tiers(model, overrides)) is None:
        _unpriced(model)
        return 0.0
    fresh, output, read, write = tiers
    # The tier is the whole prompt's, cached tokens included, as genai-prices reckons it.
    prompt = usage.input_tokens
    cached = min(usage.cached_tokens, prompt) if read is not None else 0
    written = min(usage.cache_write_tokens, prompt - cached) if write is not None else 0
    return (
        (prompt - cached - written) * _tier(fresh, prompt)
        + (cached * _tier(read, prompt) if read is not None else 0.0)
        + (written * _tier(write, prompt) if write is not None else 0.0)
        + usage.output_tokens * _tier(output, prompt)
    ) / 1e6


Prices = tuple[Tiers, Tiers, Tiers | None, Tiers | None]


def _tiers(model: str, overrides: Overrides | None) -> Prices | None:
    """Input, output, cache-read and cache-write (``None``: not priced apart) prices of
    ``model``, an override first."""
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
                None if (p := entry.get(k)) is None else (float(p), ())
                for k in ("cache_read", "cache_write")
            ]
        except (AttributeError, TypeError, ValueError) as e:
            message = f"price for {key!r} must be {{input: <usd/M>, output: <usd/M>}}"
            message += " (and maybe cache_read, cache_write: <usd/M>)"
            raise ConfigError(message, key=f"pricing.{key}") from e
        return (prices[0], ()), (prices[1], ()), cache[0], cache[1]
    return None if info is None else (info.input, info.output, info.cache_read, info.cache_write)


@functools.lru_cache(maxsize=64)
def _unpriced(model: str) -> None:
    log.info("no price known for model %r: its requests count as free", model)


def _tier(tiers: Tiers, prompt: int) -> float:
    # A prompt past a tier's start moves the whole request there.
    base, cliffs = tiers
    return next((price for start, price in reversed(cliffs) if prompt > start), base)
