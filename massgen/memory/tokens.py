"""Token counts without a tokenizer, and the context window of common models.

The estimate works offline (no tokenizer download): a quarter of a token per ASCII character
(English text and code average about four characters a token on the GPT, Claude and Gemini
tokenizers), one token per other character (CJK, emoji: usually one or more tokens each),
plus :data:`MESSAGE_OVERHEAD` per message for the role and separators. It errs on the high
side for other scripts, which is the safe side for a budget.

A :class:`TokenEstimator` corrects itself with what the provider reports: after a request it
compares the estimate with the ``input_tokens`` the provider counted and scales later
estimates by their (smoothed, clamped) ratio.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Iterable, Mapping

from massgen.errors import RunError
from massgen.types import ChatMessage, ToolSpec

MESSAGE_OVERHEAD = 4
"""Tokens a message costs beyond its text (role, separators), as in OpenAI's accounting."""

CONTEXT_WINDOWS: Mapping[str, int] = {
    "gpt-4.1": 1_047_576,
    "gpt-4o": 128_000,
    "gpt-4-turbo": 128_000,
    "gpt-4": 8_192,
    "gpt-3.5-turbo": 16_385,
    "gpt-5": 400_000,
    "o1": 200_000,
    "o3": 200_000,
    "o4-mini": 200_000,
    "claude": 200_000,
    "gemini-1.5-pro": 2_097_152,
    "gemini-1.5-flash": 1_048_576,
    "gemini-2": 1_048_576,
    "gemini-1.0-pro": 32_760,
    "grok": 131_072,
    "llama-3": 128_000,
    "mistral-large": 128_000,
    "deepseek": 64_000,
}
"""Known context windows (input plus output tokens), by model-name prefix: the longest
prefix that matches wins, so ``gpt-4o-mini`` gets ``gpt-4o``'s and ``gpt-4-0613`` gets
``gpt-4``'s. Override per agent with ``memory.context_window``."""


class ContextLimitExceeded(RunError):
    """The task alone (system prompt, prompt and reserved output) does not fit the model's
    context window, even with every remembered turn left out. Shorten the task or the role,
    lower ``max_tokens``, or use a model with a larger window."""


def context_window(model: str | None, override: int | None = None) -> int | None:
    """The context window of ``model`` in tokens; ``override`` wins; ``None`` if unknown."""
    if override is not None:
        return override
    return _known_window(model) if model else None


@functools.lru_cache(maxsize=256)
def _known_window(model: str) -> int | None:
    """The longest matching prefix of :data:`CONTEXT_WINDOWS` (asked once per model name:
    a batch asks it for every turn)."""
    name = model.lower().rsplit("/", 1)[-1]
    best = ""
    for prefix in CONTEXT_WINDOWS:
        if name.startswith(prefix) and len(prefix) > len(best):
            best = prefix
    return CONTEXT_WINDOWS[best] if best else None


def estimate_text(text: str) -> int:
    """Estimated tokens of ``text`` (see the module docstring)."""
    if not text:
        return 0
    if text.isascii():  # the common case, without a Python-level pass over the characters
        return math.ceil(len(text) / 4)
    ascii_chars = sum(1 for c in text if c < "\x80")
    return math.ceil(ascii_chars / 4) + (len(text) - ascii_chars)


def estimate_message(message: ChatMessage) -> int:
    tokens = MESSAGE_OVERHEAD + estimate_text(message.content)
    for call in message.tool_calls:
        tokens += estimate_text(call.name) + estimate_text(
            json.dumps(dict(call.arguments), ensure_ascii=False, default=str)
        )
    return tokens


def estimate_tools(specs: Iterable[ToolSpec]) -> int:
    """Estimated tokens of the tool declarations a request carries: providers count each
    tool's name, description and JSON schema as input."""
    return sum(
        MESSAGE_OVERHEAD
        + estimate_text(spec.name)
        + estimate_text(spec.description)
        + estimate_text(json.dumps(dict(spec.parameters), ensure_ascii=False, default=str))
        for spec in specs
    )


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
