"""Token counts without a tokenizer, and what genai-prices knows of a model.

One estimate everywhere (memory, rate limits, budgets, unreported usage): a quarter of a
token per ASCII character (as GPT, Claude and Gemini tokenizers average), one per other
character, plus :data:`MESSAGE_OVERHEAD` per message; it errs high, the safe side for a
budget. Context windows and prices come from genai-prices' bundled data, never updated over
the network (massgen never starts its ``UpdatePrices`` task)."""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import json
import math
import os
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from massgen.types import ChatMessage, CompletionRequest, ToolSpec

MESSAGE_OVERHEAD = 4  # tokens a message costs beyond its text (role, separators)
IMAGE_TOKENS = 1_600  # an attached image, as a large one costs once the provider resizes it


def estimate_text(text: str) -> int:
    if text.isascii():  # the common case, without a Python-level pass over the characters
        return math.ceil(len(text) / 4)
    ascii_chars = sum(1 for c in text if c < "\x80")
    return math.ceil(ascii_chars / 4) + (len(text) - ascii_chars)


def _json(value: Any) -> str:
    return json.dumps(dict(value), ensure_ascii=False, default=str)


def estimate_message(message: ChatMessage) -> int:
    """Estimated tokens of one message, its tool calls' names and arguments included."""
    tokens = MESSAGE_OVERHEAD + estimate_text(message.content) + IMAGE_TOKENS * len(message.images)
    for call in message.tool_calls:
        tokens += estimate_text(call.name) + estimate_text(_json(call.arguments))
    return tokens


def estimate_tools(specs: Iterable[ToolSpec]) -> int:
    """Estimated tokens of tool declarations (each name, description and schema is input)."""
    parts = ((spec.name, spec.description, _json(spec.parameters)) for spec in specs)
    return sum(MESSAGE_OVERHEAD + sum(map(estimate_text, texts)) for texts in parts)


def estimate_request(request: CompletionRequest) -> int:
    """Estimated input tokens of ``request``: its messages and tool declarations."""
    return sum(estimate_message(m) for m in request.messages) + estimate_tools(request.tools)


class TokenEstimator:
    """Estimates tokens, scaled by what the provider reported for earlier requests."""

    MIN_RATIO = 0.8
    MAX_RATIO = 3.0

    def __init__(self) -> None:
        self.ratio = 1.0  # reported / estimated input tokens, smoothed over requests

    def message(self, message: ChatMessage) -> int:
        return math.ceil(estimate_message(message) * self.ratio)

    def tools(self, specs: Iterable[ToolSpec]) -> int:
        return math.ceil(estimate_tools(specs) * self.ratio)

    def messages(self, messages: Iterable[ChatMessage]) -> int:
        return sum(self.message(m) for m in messages)

    def observe(self, messages: Iterable[ChatMessage], reported_input_tokens: int) -> None:
        """Learn from one request: its messages and the input tokens the provider counted."""
        raw = sum(estimate_message(m) for m in messages)
        if raw <= 0 or reported_input_tokens <= 0:
            return
        seen = min(self.MAX_RATIO, max(self.MIN_RATIO, reported_input_tokens / raw))
        self.ratio = 0.5 * self.ratio + 0.5 * seen


# USD per million tokens: the base price, then ``(start, price)`` cliffs by prompt tokens.
Tiers = tuple[float, tuple[tuple[int, float], ...]]
CACHE_PRICES = ("cache_read", "cache_write", "cache_write_1h")  # as ModelFacts and `prices:` say


@dataclass(frozen=True, slots=True)
class ModelFacts:
    """What genai-prices says of one model, as of today."""

    id: str
    context_window: int | None
    input: Tiers
    output: Tiers
    cache_read: Tiers | None = None
    """Prompt tokens read from the provider's cache; ``None``: the table has no such price."""
    cache_write: Tiers | None = None
    """Prompt tokens written to the provider's cache; ``None``: the table has no such price."""
    cache_write_1h: Tiers | None = None
    """Those written to its one-hour cache (Anthropic); ``None``: the table has no such price."""


@functools.lru_cache(maxsize=512)
def known_model(model: str) -> ModelFacts | None:
    """genai-prices' entry for ``model`` (case folded, a prefix such as ``openai/`` dropped if
    need be), or ``None``; kept in a file per release and day (its table takes 0.2 s to load)."""
    name = model.strip().lower()
    facts = _facts_file()
    day = datetime.now(UTC).date().isoformat()
    if name in facts and (facts[name] is None or _fresh(facts[name], day)):
        entry = facts[name]
        return None if entry is None else _facts(entry)
    found = _lookup(name)
    facts[name] = None if found is None else {**_entry(found), "day": day}
    _save_facts(facts)
    return found


def _lookup(name: str) -> ModelFacts | None:
    from genai_prices.data_snapshot import get_snapshot

    for ref in dict.fromkeys((name, name.rsplit("/", 1)[-1])):
        try:
            info = get_snapshot().find_provider_model(ref, None, None, None)[1]
        except LookupError:
            continue
        prices = info.get_prices(datetime.now(UTC))
        hour = getattr(prices, "cache_write_1h_mtok", None)  # a release without that price
        read, write, write_1h = (
            None if p is None else _tiers(p)
            for p in (prices.cache_read_mtok, prices.cache_write_mtok, hour)
        )
        return ModelFacts(
            info.id,
            info.context_window,
            _tiers(prices.input_mtok),
            _tiers(prices.output_mtok),
            read,
            write,
            write_1h,
        )
    return None


def _tiers(price: Any) -> Tiers:
    if price is None:
        return (0.0, ())
    tiers = getattr(price, "tiers", None)
    if tiers is None:
        return (float(price), ())
    return (float(price.base), tuple((int(t.start), float(t.price)) for t in tiers))


def _entry(f: ModelFacts) -> dict[str, Any]:
    return {
        "id": f.id,
        "window": f.context_window,
        "in": f.input,
        "out": f.output,
        **{kind: getattr(f, kind) for kind in CACHE_PRICES},
    }


def _fresh(entry: dict[str, Any], day: str) -> bool:
    """Written today, by a massgen that kept the cache-read, -write and one-hour-write prices
    (older ones did not: their entries are looked up again; older massgens ignore keys they do
    not know)."""
    return entry.get("day") == day and all(k in entry for k in CACHE_PRICES)


def _facts(e: dict[str, Any]) -> ModelFacts:
    def tiers(t: Any) -> Tiers:
        return (float(t[0]), tuple((int(a), float(b)) for a, b in t[1]))

    read, write, hour = (None if e[k] is None else tiers(e[k]) for k in CACHE_PRICES)
    return ModelFacts(e["id"], e["window"], tiers(e["in"]), tiers(e["out"]), read, write, hour)


@functools.cache
def _facts_path() -> Path | None:
    """One file per genai-prices release (its table's size and time), found without importing it."""
    spec = importlib.util.find_spec("genai_prices")
    if spec is None or not spec.submodule_search_locations:
        return None
    try:
        table = os.stat(Path(next(iter(spec.submodule_search_locations)), "data.py"))
    except OSError:
        return None
    home = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(home, "massgen", f"models-{table.st_size}-{int(table.st_mtime)}.json")


@functools.cache
def _facts_file() -> dict[str, Any]:
    path = _facts_path()
    try:
        data = json.loads(path.read_text()) if path is not None else {}
    except (OSError, ValueError):
        return {}  # none yet, or damaged: made again
    return data if isinstance(data, dict) else {}


def _save_facts(facts: dict[str, Any]) -> None:
    path = _facts_path()
    if path is None:
        return
    with contextlib.suppress(OSError):  # a read-only home: the next run looks again
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(facts))
        os.replace(tmp, path)


def context_window(model: str | None, override: int | None = None) -> int | None:
    """The context window of ``model`` in tokens (``override`` wins); ``None`` if unknown."""
    if override is not None:
        return override
    info = known_model(model) if model else None
    return info.context_window if info is not None else None
