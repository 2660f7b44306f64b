"""What the wire-format modules share: the rendered-answer value and SSE helpers.

Each of ``sim_openai``, ``sim_responses``, ``sim_anthropic`` and ``sim_gemini`` implements
:class:`Wire`: read a request body into a :class:`~tests.sim.sim_types.ParsedRequest`,
and write an :class:`Answer` or an error in that vendor's exact format.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from tests.sim.sim_types import ParsedRequest


@dataclass(frozen=True, slots=True)
class Call:
    """A tool call ready to render, its id already assigned."""

    id: str
    name: str
    arguments: Mapping[str, Any]

    @property
    def arguments_json(self) -> str:
        return json.dumps(dict(self.arguments), separators=(",", ":"), ensure_ascii=False)


@dataclass(frozen=True, slots=True)
class Answer:
    """A successful reply, resolved for one request: text, calls, tokens and ids."""

    model: str
    text: str
    calls: tuple[Call, ...]
    truncated: bool
    prompt_tokens: int
    completion_tokens: int
    response_id: str
    created: int
    include_usage: bool = False
    searched: bool = False
    """The reply was :class:`~tests.sim.sim_types.Searched`: render the search."""
    queries: tuple[str, ...] = ()
    sources: tuple[tuple[str, str], ...] = ()
    """``(title, url)`` pairs."""
    pause: bool = False
    search_sources: bool = False
    """Responses API: list each search's sources on its ``web_search_call``."""
    cache_read: int = 0
    cache_write: int = 0
    """Anthropic: prompt tokens read from and written to the prompt cache."""
    cache_write_1h: int = 0
    """Anthropic: of those written, the ones written to the one-hour cache."""


class Wire(Protocol):
    """One vendor's wire format (implemented by a module)."""

    CALL_ID_PREFIX: str

    def parse(self, body: Mapping[str, Any], path: str) -> ParsedRequest: ...

    def render(self, answer: Answer) -> bytes: ...

    def render_stream(self, answer: Answer) -> list[bytes]: ...

    def error_body(self, status: int, message: str) -> bytes: ...


_PIECES = re.compile(r"\s*\S+\s*|\s+")


def split_text(text: str) -> list[str]:
    """Cut ``text`` into word-sized pieces (whitespace kept) for streamed deltas."""
    return _PIECES.findall(text)


ARGUMENT_CHARS: int | None = None
"""Set (by ``--token-arguments``) to stream tool arguments in pieces of this many characters,
about a token each, as the providers recorded in tests/recorded do (1.7-6.4 characters a
fragment); left ``None``, arguments stream in three pieces."""


def split_json(text: str, parts: int = 3) -> list[str]:
    """Cut a JSON string into pieces, as providers stream tool arguments."""
    if not text:
        return []
    size = ARGUMENT_CHARS or max(1, -(-len(text) // parts))
    return [text[i : i + size] for i in range(0, len(text), size)]


def sse(data: Mapping[str, Any] | str, event: str | None = None) -> bytes:
    """One server-sent event (``event:`` line optional, then one ``data:`` line)."""
    payload = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {payload}\n\n".encode()


def dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def text_of(content: Any) -> str:
    """Text of a message ``content`` that is a string or a list of typed parts."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        out = []
        for part in content:
            if isinstance(part, str):
                out.append(part)
            elif isinstance(part, Mapping) and isinstance(part.get("text"), str):
                out.append(part["text"])
        return "".join(out)
    return str(content)
