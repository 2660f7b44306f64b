"""Anthropic Messages through ``anthropic.AsyncAnthropic`` (about a second to import).
With extended thinking, a turn that called tools must go back with its thinking blocks
first: the backend remembers them by tool call id."""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

import anthropic

from massgen.backends._common import (
    Draft,
    Remembered,
    SDKBackend,
    merged_turns,
    parse_arguments,
    results_text,
    sdk_client,
    tool_call,
    tool_schema,
)
from massgen.backends._errors import clean_message, sdk_errors, stream_incomplete
from massgen.backends.base import system_and_turns
from massgen.errors import ProviderError
from massgen.types import (
    ChatMessage,
    Completion,
    CompletionRequest,
    NativeTool,
    ServerToolCall,
    StreamChunk,
    Usage,
)

DEFAULT_MAX_TOKENS = 8192  # sent when you set no ``max_tokens``: the API requires one
# Times a turn the API paused (``pause_turn``, a long server-side search) is sent back to be
# continued; then the answer so far is returned, finish reason ``other``.
MAX_PAUSE_CONTINUATIONS = 4
# The version every current model takes directly (2026's default to code execution).
WEB_SEARCH_TOOL = "web_search_20250305"

_FINISH = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length"}
_FINISH |= {"model_context_window_exceeded": "length", "tool_use": "tool_calls"}
_FINISH["refusal"] = "content_filter"
_TOOL_CHOICE = {"auto": "auto", "required": "any", "none": "none"}

# Errors sent as an event inside a stream (HTTP status 200) name their kind, not a status.
_STREAM_ERROR_STATUS = {"overloaded_error": 529, "rate_limit_error": 429, "api_error": 500}
_STREAM_ERROR_STATUS |= {"timeout_error": 504, "authentication_error": 401, "not_found_error": 404}
_STREAM_ERROR_STATUS |= {"permission_error": 403, "invalid_request_error": 400}
_STREAM_ERROR_STATUS["request_too_large"] = 413


class AnthropicBackend(SDKBackend):
    """Claude models; ``params`` go into the body as they are (``top_p``, ``thinking``...)."""

    provider: str = "anthropic"

    def __init__(self, model: str = "", **kwargs: Any) -> None:
        super().__init__(model, **kwargs)
        self._thinking = Remembered()  # a tool-calling turn's thinking blocks, by first call

    @functools.cached_property
    def _client(self) -> anthropic.AsyncAnthropic:
        kind = anthropic.AsyncAnthropic
        return sdk_client(anthropic, kind, self._api_key, self.base_url, self.timeout)

    async def aclose(self) -> None:
        if (client := self.__dict__.pop("_client", None)) is not None:
            await client.close()

    def _body(self, request: CompletionRequest) -> dict[str, Any]:
        system, turns = system_and_turns(request.messages)
        roles = ("assistant" if m.role == "assistant" else "user" for m in turns)
        pairs = merged_turns(zip(roles, (_blocks(m, self._thinking) for m in turns), strict=True))
        body: dict[str, Any] = {
            "model": request.model,
            "messages": [{"role": role, "content": blocks} for role, blocks in pairs],
            "max_tokens": request.max_tokens or DEFAULT_MAX_TOKENS,
        }
        if system:
            body["system"] = system
        if request.tools:
            body["tools"] = [tool_schema(t, "input_schema") for t in request.tools]
            if choice := request.tool_choice:
                kind = _TOOL_CHOICE.get(choice)
                body["tool_choice"] = {"type": kind} if kind else {"type": "tool", "name": choice}
        if request.native_tools:
            body.setdefault("tools", []).extend(_native(t) for t in request.native_tools)
        return body

    async def _answer(
        self, request: CompletionRequest, *, stream: bool
    ) -> AsyncIterator[StreamChunk]:
        client, body, turn = self._client, self._body(request), _Turn(request.model or self.model)
        # This SDK no longer names `temperature`; the API still takes it in the body.
        extra = dict(request.extra)
        if request.temperature is not None:
            extra.setdefault("temperature", request.temperature)
        options: Any = {"extra_body": extra or None, "timeout": request.timeout}
        mapped: Any = {"provider": self.provider, "secret": self._api_key}
        started = time.perf_counter()
        for _ in range(MAX_PAUSE_CONTINUATIONS + 1):
            message = None  # a stream without `message_stop` was cut off
            with sdk_errors(anthropic, stream_status=_STREAM_ERROR_STATUS, **mapped):
                if not stream:
                    message = await client.messages.create(**body, **options)
                else:  # the SDK's stream puts the blocks together as the API sends them whole
                    async with client.messages.stream(**body, **options) as events:
                        try:
                            async for event in events:
                                if event.type == "text":
                                    yield StreamChunk(delta=event.text)
                                elif event.type == "message_stop":
                                    message = events.current_message_snapshot
                        except ValueError as e:  # the SDK could not parse a tool's input
                            detail = clean_message(e, secret=self._api_key)
                            raise ProviderError(detail, provider=self.provider) from e
            if message is None:
                raise stream_incomplete(self.provider)
            turn.model = body["model"] = message.model or turn.model
            turn.usage += _usage(message.usage)
            turn.stop_reason = message.stop_reason
            blocks = [b.model_dump(mode="json", exclude_none=True) for b in message.content]
            turn.take(blocks)
            if not turn.paused(body, blocks):
                break
        if turn.calls:
            self._thinking.keep(turn.calls[0].id, turn.thinking)
        yield StreamChunk(completion=turn.completion(request, time.perf_counter() - started))


def _usage(usage: Any) -> Usage:
    """All prompt tokens (fresh, written to the cache and read from it) are input; those read
    from the cache are the cached ones, those written to it the cache-write ones, of which
    ``cache_creation``'s one-hour part (absent from older answers: none) costs more. Thinking
    is in ``output_tokens``, not counted apart."""
    read = usage.cache_read_input_tokens or 0
    written = usage.cache_creation_input_tokens or 0
    prompt = (usage.input_tokens or 0) + written + read
    by_ttl = dict(getattr(usage, "cache_creation", None) or {})  # a dict in SDKs older than it
    hour = by_ttl.get("ephemeral_1h_input_tokens") or 0
    return Usage(prompt, usage.output_tokens or 0, read, 0, written, hour)


def _blocks(m: ChatMessage, thinking: Mapping[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    if m.role == "tool":
        content: Any = [{"type": "text", "text": m.content}] if m.images else m.content
        for i in m.images:  # after the text, each image as a block of its own
            source = {"type": "base64", "media_type": i.mime_type, "data": i.data}
            content.append({"type": "image", "source": source})
        return [{"type": "tool_result", "tool_use_id": m.tool_call_id or "", "content": content}]
    blocks: list[dict[str, Any]] = []
    if m.role == "assistant" and m.tool_calls:  # thinking first, as the model wrote it
        blocks.extend(thinking.get(m.tool_calls[0].id, ()))
    if m.content:  # the API refuses empty text blocks
        blocks.append({"type": "text", "text": m.content})
    for tc in m.tool_calls:
        blocks.append(
            {"type": "tool_use", "id": tc.id, "name": tc.name, "input": dict(tc.arguments)}
        )
    return blocks


def _native(t: NativeTool) -> dict[str, Any]:
    tool: dict[str, Any] = {"type": WEB_SEARCH_TOOL, "name": "web_search", "max_uses": t.max_uses}
    tool |= {"allowed_domains": list(t.allowed_domains), "blocked_domains": list(t.blocked_domains)}
    return {key: value for key, value in tool.items() if value not in (None, [])}


@dataclasses.dataclass(eq=False, slots=True)
class _Turn(Draft):
    """One answer put together across ``pause_turn`` continuations."""

    cited: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    pending: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)  # unanswered
    thinking: list[dict[str, Any]] = dataclasses.field(default_factory=list)  # to send back
    stop_reason: str | None = None
    pauses: int = 0

    def take(self, blocks: list[dict[str, Any]]) -> None:
        """Read one response's blocks; a search is pending until its result arrives."""
        for block in blocks:
            kind = block.get("type")
            if kind == "text":
                self.text.append(block.get("text", ""))
                for c in block.get("citations") or ():
                    if c.get("url"):
                        self.cited.append((c["url"], c.get("title") or ""))
            elif kind == "thinking":
                text, signature = block.get("thinking", ""), block.get("signature", "")
                self.reasoning += [text] if text else []
                self.thinking.append({"type": kind, "thinking": text, "signature": signature})
            elif kind == "redacted_thinking":  # encrypted: nothing to read, only to send back
                self.thinking.append({"type": "redacted_thinking", "data": block.get("data", "")})
            elif kind == "tool_use":
                self.calls.append(tool_call(block.get("id"), block.get("name"), block.get("input")))
            elif kind == "server_tool_use":  # ran by the provider: reported, never run here
                self.pending[block.get("id", "")] = block
            elif kind == "web_search_tool_result":
                use = self.pending.pop(block.get("tool_use_id", ""), {})
                self.searches.append(self._result(block, use))

    def _result(self, block: dict[str, Any], use: dict[str, Any]) -> ServerToolCall:
        content = block.get("content")
        call_id, arguments = block.get("tool_use_id", ""), parse_arguments(use.get("input"))
        if not isinstance(content, list):  # an error object
            code = content.get("error_code", "error") if isinstance(content, dict) else "error"
            return ServerToolCall(call_id, "web_search", arguments, ok=False, output=str(code))
        pairs = [(r.get("url", ""), r.get("title") or "") for r in content]
        self.found.extend(pairs)
        return ServerToolCall(call_id, "web_search", arguments, output=results_text(pairs))

    def paused(self, body: dict[str, Any], blocks: list[dict[str, Any]]) -> bool:
        """On ``pause_turn``, set ``body`` up to continue and return ``True``."""
        if self.stop_reason != "pause_turn" or self.pauses >= MAX_PAUSE_CONTINUATIONS:
            return False
        self.pauses += 1
        turns = [*((m["role"], m["content"]) for m in body["messages"]), ("assistant", blocks)]
        body["messages"] = [{"role": r, "content": c} for r, c in merged_turns(turns)]
        return True

    def completion(self, request: CompletionRequest, latency: float) -> Completion:
        for u in self.pending.values():  # searches whose result never came
            asked = (u.get("id", ""), u.get("name", ""), u.get("input") or {})
            self.searches.append(ServerToolCall(*asked, False, "no result"))
        self.found = [*self.cited, *self.found]
        self.finish = _FINISH.get(self.stop_reason or "", "other")
        return self.build(request, latency, joiner="\n\n", requests=1 + self.pauses)
