"""Values the provider simulator speaks in: scripted replies, recorded requests, stats.

Replies are what a rule answers with; :class:`SimRequest` is what the simulator saw, already
normalised across the three wire protocols so a test can assert on it without knowing which
vendor format was used. Everything here is plain data with a JSON form, so a simulator in
another process can be scripted and inspected over HTTP.

Token counts are estimates, deterministic on purpose: ``ceil(characters / 4)``. The prompt
side counts :attr:`SimRequest.prompt_text` (system text and every message text, tool results
included, joined by newlines), plus the name and JSON arguments of every earlier tool call in
the conversation, plus the compact JSON of the tool declarations as sent. The completion side
counts the reply text plus each tool call's name and compact JSON arguments.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, TypeAlias

WireProtocol = Literal["openai", "anthropic", "gemini", "responses"]
DropPoint = Literal["request", "headers", "partial"]


def estimate_tokens(text: str) -> int:
    """Tokens for ``text`` by the simulator's rule: one per four characters, rounded up."""
    return tokens_for_chars(len(text))


def tokens_for_chars(chars: int) -> int:
    """One token per four characters, rounded up."""
    return (chars + 3) // 4


def compact_json(value: Any) -> str:
    """JSON without spaces and with sorted keys, so sizes (and so tokens) are stable."""
    return json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False)


def prompt_text(system: str, messages: Sequence[tuple[str, str]]) -> str:
    """System text and every message text, one per line."""
    return "\n".join(([system] if system else []) + [text for _, text in messages])


# --- replies ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Text:
    """Answer with ``text``. ``truncated`` reports it cut off by the token limit
    (``length`` / ``max_tokens`` / ``MAX_TOKENS``) instead of a normal stop. ``cache_read``
    and ``cache_write``: prompt tokens the Anthropic wire reports read from and written to
    its prompt cache, beyond its ``input_tokens``; ``cache_write_1h``: of those written, the
    ones its ``cache_creation`` puts in the one-hour cache (0: no ``cache_creation`` sent)."""

    text: str
    truncated: bool = False
    cache_read: int = 0
    cache_write: int = 0
    cache_write_1h: int = 0


@dataclass(frozen=True, slots=True)
class ToolCallSpec:
    """One tool call the simulated model makes; ``id`` is generated when left ``None``."""

    name: str
    arguments: Mapping[str, Any] = field(default_factory=dict)
    id: str | None = None


@dataclass(frozen=True, slots=True)
class ToolCalls:
    """Answer by calling tools (optionally with some text before the calls)."""

    calls: Sequence[ToolCallSpec]
    text: str = ""


@dataclass(frozen=True, slots=True)
class Searched:
    """Answer as a model that ran the provider's own web search: ``queries`` searched,
    ``sources`` (``(title, url)`` pairs) found and cited, then ``text``.

    Each wire renders it its own way: Anthropic as ``server_tool_use`` and
    ``web_search_tool_result`` blocks and a text block with citations (``pause=True``: the
    blocks only, ``stop_reason: pause_turn``, for the client to continue); OpenAI as
    ``url_citation`` annotations (the Responses API: ``web_search_call`` items, then the
    annotated text); Gemini as ``groundingMetadata``.
    """

    text: str = ""
    sources: Sequence[tuple[str, str]] = ()
    queries: Sequence[str] = ("",)
    pause: bool = False
    calls: Sequence[ToolCallSpec] = ()
    """Function calls the model makes after searching (ignored when ``pause``)."""


@dataclass(frozen=True, slots=True)
class Fault:
    """Answer with an HTTP error in the protocol's own error format.

    ``retry_after`` (seconds) becomes a ``Retry-After`` header; ``headers`` are added as-is.
    """

    status: int
    retry_after: float | None = None
    message: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Hang:
    """Never answer: hold the request until the client gives up (or the simulator stops)."""


@dataclass(frozen=True, slots=True)
class Drop:
    """Close the connection abruptly.

    ``after="request"``: before a single response byte; ``"headers"``: after the status line
    and headers, before any body; ``"partial"``: midway through the body or the event stream.
    """

    after: DropPoint = "headers"


Reply: TypeAlias = Text | ToolCalls | Searched | Fault | Hang | Drop


def reply_kind(reply: Reply) -> str:
    """Short name of a reply's type, as used in stats and the JSON form."""
    return _KINDS[type(reply)]


_KINDS: dict[type, str] = {
    Text: "text",
    ToolCalls: "tool_calls",
    Searched: "searched",
    Fault: "fault",
    Hang: "hang",
    Drop: "drop",
}


def reply_to_json(reply: Reply) -> dict[str, Any]:
    """The JSON form of a reply: its fields plus ``"type"``."""
    data = asdict(reply)
    if isinstance(reply, ToolCalls):
        data["calls"] = [
            {"name": c.name, "arguments": dict(c.arguments), "id": c.id} for c in reply.calls
        ]
    if isinstance(reply, Fault):
        data["headers"] = dict(reply.headers)
    if isinstance(reply, Searched):
        data["sources"] = [list(p) for p in reply.sources]
        data["queries"] = list(reply.queries)
        data["calls"] = [
            {"name": c.name, "arguments": dict(c.arguments), "id": c.id} for c in reply.calls
        ]
    return {"type": reply_kind(reply), **data}


def reply_from_json(data: Mapping[str, Any] | str) -> Reply:
    """Parse the JSON form of a reply. A bare string means ``Text(string)``.

    Raises ``ValueError`` on an unknown type or bad fields, so a wrong script fails loudly.
    """
    if isinstance(data, str):
        return Text(data)
    fields = {k: v for k, v in data.items() if k != "type"}
    kind = data.get("type") or _guess_kind(fields)
    try:
        if kind == "text":
            return Text(**fields)
        if kind == "tool_calls":
            calls = [ToolCallSpec(**c) for c in fields.pop("calls")]
            return ToolCalls(calls, **fields)
        if kind == "searched":
            sources = tuple((str(t), str(u)) for t, u in fields.pop("sources", ()))
            queries = tuple(str(q) for q in fields.pop("queries", ("",)))
            after = tuple(ToolCallSpec(**c) for c in fields.pop("calls", ()))
            return Searched(sources=sources, queries=queries, calls=after, **fields)
        if kind == "fault":
            return Fault(**fields)
        if kind == "hang":
            return Hang()
        if kind == "drop":
            if fields.get("after", "headers") not in ("request", "headers", "partial"):
                raise ValueError(f"bad drop point {fields['after']!r}")
            return Drop(**fields)
    except (TypeError, KeyError, ValueError) as e:
        raise ValueError(f"bad {kind} reply {dict(data)!r}: {e}") from e
    raise ValueError(f"unknown reply type {kind!r} in {dict(data)!r}")


def _guess_kind(fields: Mapping[str, Any]) -> str:
    if "calls" in fields:
        return "tool_calls"
    if "status" in fields:
        return "fault"
    return "text"


# --- what the simulator saw --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ToolResult:
    """A tool result the client sent back; ``name`` is resolved from the matching call."""

    call_id: str
    name: str
    content: str
    is_error: bool = False


@dataclass(frozen=True, slots=True)
class ParsedRequest:
    """The protocol-neutral reading of one provider request body (see :class:`SimRequest`)."""

    model: str
    stream: bool
    system: str
    messages: tuple[tuple[str, str], ...]
    tools: tuple[str, ...]
    tool_results: tuple[ToolResult, ...]
    prompt_tokens: int
    include_usage: bool = False
    search_sources: bool = False
    """Responses API: the request asked for each search's sources (``include``)."""

    @property
    def prompt_text(self) -> str:
        """System text and every message text, one per line: what rules ``match`` against."""
        return prompt_text(self.system, self.messages)


@dataclass(frozen=True, slots=True)
class SimRequest:
    """One provider request as the simulator received it.

    ``messages`` are ``(role, text)`` pairs with roles ``user``, ``assistant`` and ``tool``
    whatever the protocol (system text is in ``system``, not in ``messages``). ``headers``
    are lower-cased, with authentication values replaced by ``"<redacted>"``. ``arrived`` is
    ``time.monotonic()`` in the simulator's process.
    """

    index: int
    protocol: WireProtocol
    path: str
    model: str
    stream: bool
    system: str
    messages: tuple[tuple[str, str], ...]
    tools: tuple[str, ...]
    tool_results: tuple[ToolResult, ...]
    prompt_tokens: int
    body: Mapping[str, Any]
    headers: Mapping[str, str]
    arrived: float

    @property
    def prompt_text(self) -> str:
        """System text and every message text, one per line: what rules ``match`` against."""
        return prompt_text(self.system, self.messages)

    @property
    def last_user_text(self) -> str:
        """Text of the last user message ("" if none): handy in a ``responder``."""
        return next((t for r, t in reversed(self.messages) if r == "user"), "")

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["messages"] = [list(m) for m in self.messages]
        data["tools"] = list(self.tools)
        data["tool_results"] = [asdict(r) for r in self.tool_results]
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> SimRequest:
        """Rebuild a record fetched from ``GET /_sim/requests``."""
        fields = dict(data)
        fields["messages"] = tuple((r, t) for r, t in data["messages"])
        fields["tools"] = tuple(data["tools"])
        fields["tool_results"] = tuple(ToolResult(**r) for r in data["tool_results"])
        return cls(**fields)


@dataclass(frozen=True, slots=True)
class SimStats:
    """Counters since the last reset.

    Token counts cover answered requests only (text or tool calls): faults, hangs and drops
    are not billed, as with real providers. ``replies`` counts requests by reply kind;
    ``connections`` counts TCP connections accepted (keep-alive keeps it low).
    """

    requests: int = 0
    by_protocol: Mapping[str, int] = field(default_factory=dict)
    by_model: Mapping[str, int] = field(default_factory=dict)
    replies: Mapping[str, int] = field(default_factory=dict)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    max_concurrency: int = 0
    in_flight: int = 0
    connections: int = 0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> SimStats:
        return cls(**data)
