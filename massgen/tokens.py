"""Token counts without a tokenizer, and what genai-prices knows of a model.

You get one estimate everywhere (memory, rate limits, budgets, usage a backend did not
report): a quarter of a token per ASCII character (about four characters a token on the GPT,
Claude and Gemini tokenizers), one per other character (CJK, emoji), plus
:data:`MESSAGE_OVERHEAD` per message. It errs high for other scripts: the safe side for a
budget. :class:`TokenEstimator` scales it by what the provider counted for earlier requests.

Context windows and prices come from the ``genai-prices`` package's bundled data, imported
on first use (it takes about 0.3 s) and never updated over the network: massgen never starts
its ``UpdatePrices`` task.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from massgen.types import ChatMessage, CompletionRequest, ToolSpec

if TYPE_CHECKING:
    from genai_prices.types import ModelInfo

MESSAGE_OVERHEAD = 4
"""Tokens a message costs beyond its text (role, separators), as in OpenAI's accounting."""


def estimate_text(text: str) -> int:
    """Estimated tokens of ``text`` (see the module docstring)."""
    if not text:
        return 0
    if text.isascii():  # the common case, without a Python-level pass over the characters
        return math.ceil(len(text) / 4)
    ascii_chars = sum(1 for c in text if c < "\x80")
    return math.ceil(ascii_chars / 4) + (len(text) - ascii_chars)


def _json(value: Any) -> str:
    return json.dumps(dict(value), ensure_ascii=False, default=str)


def estimate_message(message: ChatMessage) -> int:
    """Estimated tokens of one message, its tool calls' names and arguments included."""
    tokens = MESSAGE_OVERHEAD + estimate_text(message.content)
    for call in message.tool_calls:
        tokens += estimate_text(call.name) + estimate_text(_json(call.arguments))
    return tokens


def estimate_tools(specs: Iterable[ToolSpec]) -> int:
    """Estimated tokens of tool declarations: providers count each name, description and
    JSON schema as input."""
    return sum(
        MESSAGE_OVERHEAD
        + estimate_text(spec.name)
        + estimate_text(spec.description)
        + estimate_text(_json(spec.parameters))
        for spec in specs
    )


def estimate_request(request: CompletionRequest) -> int:
    """Estimated input tokens of ``request``: its messages and tool declarations."""
    return sum(estimate_message(m) for m in request.messages) + estimate_tools(request.tools)


class TokenEstimator:
    """Estimates tokens, scaled by what the provider reported for earlier requests."""

    MIN_RATIO = 0.8
    MAX_RATIO = 3.0

    def __init__(self) -> None:
        self.ratio = 1.0
        """Reported / estimated input tokens, smoothed over requests (1.0 until one is seen)."""

    def text(self, text: str) -> int:
        return math.ceil(estimate_text(text) * self.ratio)

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


@functools.lru_cache(maxsize=512)
def known_model(model: str) -> ModelInfo | None:
    """genai-prices' entry for ``model`` (dated names and case folded, a routing prefix such
    as ``openai/`` or ``models/`` dropped when needed), or ``None`` when it does not know it."""
    from genai_prices.data_snapshot import get_snapshot

    name = model.strip().lower()
    for ref in dict.fromkeys((name, name.rsplit("/", 1)[-1])):
        try:
            return get_snapshot().find_provider_model(ref, None, None, None)[1]
        except LookupError:
            continue
    return None


def context_window(model: str | None, override: int | None = None) -> int | None:
    """The context window of ``model`` in tokens; ``override`` (``memory.context_window``)
    wins; ``None`` if unknown."""
    if override is not None:
        return override
    info = known_model(model) if model else None
    return info.context_window if info is not None else None
