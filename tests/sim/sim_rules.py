"""Scripting rules for the provider simulator: which requests they match, what they answer."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from tests.sim.sim_types import Reply, reply_from_json, reply_to_json


class Rule:
    """Scripted replies for the requests it matches; used in order, the last one repeating.

    ``model`` must equal the request's model when given; ``match`` must occur in the prompt
    text (system and all messages) when given: a ``str`` as a substring, a compiled pattern
    by ``search``. ``latency`` overrides the simulator's default for these requests.
    ``hits`` counts the requests it answered.
    """

    def __init__(
        self,
        replies: Sequence[Reply],
        *,
        model: str | None = None,
        match: str | re.Pattern[str] | None = None,
        latency: float | None = None,
    ) -> None:
        if not replies:
            raise ValueError("a rule needs at least one reply")
        self.replies = tuple(replies)
        self.model = model
        self.match = match
        self.latency = latency
        self.hits = 0

    def matches(self, model: str, prompt: str) -> bool:
        if self.model is not None and self.model != model:
            return False
        if self.match is None:
            return True
        if isinstance(self.match, str):
            return self.match in prompt
        return self.match.search(prompt) is not None

    def take(self) -> Reply:
        """The next reply (callers hold the simulator's lock)."""
        reply = self.replies[min(self.hits, len(self.replies) - 1)]
        self.hits += 1
        return reply

    def to_json(self) -> dict[str, Any]:
        regex = isinstance(self.match, re.Pattern)
        return {
            "replies": [reply_to_json(r) for r in self.replies],
            "model": self.model,
            "match": self.match.pattern if isinstance(self.match, re.Pattern) else self.match,
            "regex": regex,
            "latency": self.latency,
            "hits": self.hits,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Rule:
        """``{"replies": [...], "model": ..., "match": ..., "regex": false, "latency": ...}``.

        A reply is ``{"type": "text", "text": ...}``, ``{"type": "tool_calls", "calls":
        [{"name": ..., "arguments": {...}}], "text": ""}``, ``{"type": "fault", "status": 429,
        "retry_after": 1}``, ``{"type": "hang"}``, ``{"type": "drop", "after": "partial"}``, or
        a bare string for text. ``"reply"`` may stand for a one-reply list.
        """
        raw = data.get("replies", [data["reply"]] if "reply" in data else None)
        if not isinstance(raw, list) or not raw:
            raise ValueError(f"a rule needs a non-empty 'replies' list: {dict(data)!r}")
        match = data.get("match")
        if match is not None and data.get("regex"):
            match = re.compile(match)
        return cls(
            [reply_from_json(r) for r in raw],
            model=data.get("model"),
            match=match,
            latency=data.get("latency"),
        )
