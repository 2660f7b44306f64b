"""Provider-neutral request and response values: every backend speaks these, vendor SDK
types never leave an adapter. Plain dataclasses: thousands are made per batch."""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

Role = Literal["system", "user", "assistant", "tool"]
StrategyName = Literal["parallel", "sequential", "consensus"]
STRATEGIES: tuple[str, ...] = get_args(StrategyName)  # config, serve's models, mcp's ask_team
OnRetry = Callable[[int, int, float, BaseException], None]  # attempt, max_retries, wait, error
OnAttempt = Callable[[Any], None]  # hears each provider attempt: an events.RequestDone


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A model's request to run a tool. ``arguments`` is already parsed JSON."""

    id: str
    name: str
    arguments: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Image:
    """An image a tool returned: ``data`` is base64, as MCP and the providers carry it."""

    mime_type: str
    data: str

    @property
    def size(self) -> int:
        """Bytes once decoded."""
        return len(self.data) * 3 // 4 - self.data[-2:].count("=")

    @property
    def url(self) -> str:
        return f"data:{self.mime_type};base64,{self.data}"


@dataclass(frozen=True, slots=True)
class ChatMessage:
    """One turn of a conversation: ``tool_calls`` on an assistant turn that calls tools,
    ``tool_call_id`` (and ``name``) on the ``tool`` turn that answers one, with the
    ``images`` it returned when the backend takes them (``Backend.tool_images``)."""

    role: Role
    content: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None
    name: str | None = None
    images: tuple[Image, ...] = ()


@dataclass(frozen=True, slots=True)
class ToolSpec:
    """A tool offered to the model: its JSON schema goes to the provider as-is."""

    name: str
    description: str
    parameters: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class NativeTool:
    """A tool the provider runs on its side (today: ``web_search``), never run by massgen;
    each adapter maps it to its wire format, domain lists where the provider takes them."""

    name: str
    max_uses: int | None = None
    allowed_domains: tuple[str, ...] = ()
    blocked_domains: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class CallContext:
    """Who makes a request, and who hears of its retries: never sent, cached or compared."""

    agent: str = ""
    attempt: int = 1
    on_retry: OnRetry | None = None
    on_attempt: OnAttempt | None = None  # set only when someone observes requests
    phase: str = ""  # of a turn made inside another (:data:`NESTED`), "" for the agent's own


@dataclass(frozen=True, slots=True)
class CompletionRequest:
    """What one agent turn asks of its backend (``None``: the backend's). ``tool_choice``:
    ``auto``, ``required``, ``none`` or a tool name; ``extra``: passed through untouched."""

    messages: tuple[ChatMessage, ...]
    model: str | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    tools: tuple[ToolSpec, ...] = ()
    tool_choice: str | None = None
    timeout: float | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)
    native_tools: tuple[NativeTool, ...] = ()
    call: CallContext | None = field(default=None, compare=False, repr=False)  # for wrappers


@dataclass(frozen=True, slots=True)
class Usage:
    """Tokens one or more requests used, as the provider reported them. ``cached_tokens``,
    ``cache_write_tokens`` and ``reasoning_tokens`` are parts of ``input_tokens`` and
    ``output_tokens``, never extra: the total is input plus output whichever provider answered;
    ``cache_write_1h_tokens`` is a part of ``cache_write_tokens`` in turn."""

    input_tokens: int = 0
    """Every prompt token: fresh, read from the prompt cache, and (Anthropic) written to it."""
    output_tokens: int = 0
    """Every answer token, the model's thinking included."""
    cached_tokens: int = 0
    """Prompt tokens read from the provider's prompt cache, billed at its lower price."""
    reasoning_tokens: int = 0
    """Answer tokens the model spent thinking, where the provider counts them apart."""
    cache_write_tokens: int = 0
    """Prompt tokens written to the provider's prompt cache (Anthropic), billed above input."""
    cache_write_1h_tokens: int = 0
    """Of those written, the ones kept for an hour (Anthropic's ``ttl: 1h``), billed above the
    five-minute writes."""

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.input_tokens + other.input_tokens,
            self.output_tokens + other.output_tokens,
            self.cached_tokens + other.cached_tokens,
            self.reasoning_tokens + other.reasoning_tokens,
            self.cache_write_tokens + other.cache_write_tokens,
            self.cache_write_1h_tokens + other.cache_write_1h_tokens,
        )


@dataclass(frozen=True, slots=True)
class Source:
    """A web page an answer rests on, as the provider reported it (untrusted text)."""

    url: str
    title: str = ""


@dataclass(frozen=True, slots=True)
class ServerToolCall:
    """A tool the provider ran while answering (a web search); ``output`` sums up its result."""

    id: str
    name: str
    arguments: Mapping[str, Any] = field(default_factory=dict)
    ok: bool = True
    output: str = ""


@dataclass(frozen=True, slots=True)
class Completion:
    """One finished model answer. ``finish_reason``: ``stop``, ``length``, ``tool_calls``,
    ``content_filter`` or ``other``. ``latency``: seconds from request to last byte.
    ``sources``/``server_calls``: a provider-side search's pages and searches. ``requests``:
    provider requests behind it (0 from the cache). ``reasoning``: the model's thinking text,
    kept in the run record, never part of the answer."""

    text: str
    model: str
    usage: Usage = Usage()
    finish_reason: str = "stop"
    tool_calls: tuple[ToolCall, ...] = ()
    latency: float = 0.0
    cached: bool = False
    sources: tuple[Source, ...] = ()
    server_calls: tuple[ServerToolCall, ...] = ()
    requests: int = 1
    reasoning: str = ""


@dataclass(frozen=True, slots=True)
class StreamChunk:
    """A piece of a streamed answer: text ``delta``s, then one final chunk with ``completion``."""

    delta: str = ""
    completion: Completion | None = None


def clipped(text: str, width: int) -> str:
    """``text`` on one line in ``width`` characters, ``…`` ending what was cut short."""
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def role_excerpt(role: str) -> str:
    """A role cut to 60 characters, as `massgen agents list` shows it (a team's or a worker's)."""
    return textwrap.shorten(role, 60, placeholder="…")


NESTED = ("ask", "summary")
"""Phases of turns made inside another turn (a teammate's answer to ``ask_agent``, a memory
summary): told apart from the agent's own turn, which may be running at the same time."""


@dataclass(frozen=True, slots=True)
class Turn:
    """One request to an agent. ``phase`` names the step (answer, review, ask...);
    ``tools``/``tool_choice`` ask for a structured reply (consensus votes)."""

    phase: str
    prompt: str
    round: int = 0
    tools: tuple[ToolSpec, ...] = ()
    tool_choice: str | None = None
    max_tokens: int | None = None
