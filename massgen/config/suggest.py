"""Did-you-mean suggestions for misspelt keys, names and choices."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def closest(word: str, choices: Iterable[str]) -> str | None:
    """The choice most like ``word``, or ``None`` when nothing is close enough.

    Case is ignored, so ``OpenAI`` finds ``openai`` and ``Max_Rounds`` finds ``max_rounds``.
    """
    options = [c for c in choices if isinstance(c, str)]
    by_lower = {c.lower(): c for c in options}
    lowered = word.lower()
    if lowered in by_lower:
        return by_lower[lowered]
    match = difflib.get_close_matches(lowered, list(by_lower), n=1, cutoff=0.6)
    return by_lower[match[0]] if match else None


def did_you_mean(word: str, choices: Iterable[str]) -> str | None:
    """A ``did you mean `x`?`` hint, or ``None``."""
    best = closest(word, choices)
    return f"did you mean `{best}`?" if best else None


def one_of(choices: Iterable[str]) -> str:
    """Render allowed values for a message: ``a, b or c``."""
    items = [f"`{c}`" for c in choices]
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " or " + items[-1]
