"""Anthropic Messages through ``anthropic.AsyncAnthropic``.

Import this module only when an Anthropic backend is built: the SDK takes about a second to
import. The Messages API differs from Chat Completions in ways that matter here: the system
prompt is a top-level field, tool results travel as ``tool_result`` blocks inside a *user*
turn, and ``max_tokens`` is required.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Any, ClassVar

import anthropic

from massgen.backends._common import (
    SDKBackend,
    normalise_finish,
    parse_arguments,
    tls_context,
    usage_or_estimate,
)
from massgen.backends._errors import (
    clean_message,
    error_for_status,
    parse_retry_after,
    stream_incomplete,
    transport_error,
)
from massgen.backends.base import system_and_turns
from massgen.errors import ProviderConnectionError, ProviderError, ProviderTimeout
from massgen.types import (
    ChatMessage,
    Completion,
    CompletionRequest,
    StreamChunk,
    ToolCall,
    ToolSpec,
    Usage,
)

DEFAULT_MAX_TOKENS = 8192
"""Sent when you set no ``max_tokens``: the API requires one."""

_FINISH = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}

# Errors sent as an event inside a stream (HTTP status 200) name their kind, not a status.
_STREAM_ERROR_STATUS = {
    "overloaded_error": 529,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "authentication_error": 401,
    "permission_error": 403,
    "invalid_request_error": 400,
    "not_found_error": 404,
    "request_too_large": 413,
}


class AnthropicBackend(SDKBackend):
    """Claude models through the Messages API.

    ``params`` go into the request body as they are (``top_p``, ``thinking``, ``metadata``...).
    ``temperature`` is sent only when you set it.
    """

    provider: str = "anthropic"
    api_key_env: ClassVar[tuple[str, ...]] = ("ANTHROPIC_API_KEY",)

    _client: anthropic.AsyncAnthropic | None = None

    def _get_client(self) -> anthropic.AsyncAnthropic:
        if self._client is None:
            self._client = anthropic.AsyncAnthropic(
                api_key=self._api_key,
                base_url=self.base_url,
                timeout=self.timeout,
                max_retries=0,  # one retry budget: ours
                http_client=anthropic.DefaultAsyncHttpxClient(verify=tls_context()),
            )
        return self._client

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.close()

    # -- requests ----------------------------------------------------------------------------
    def _body(self, request: CompletionRequest) -> dict[str, Any]:
        system, turns = system_and_turns(request.messages)
        body: dict[str, Any] = {
            "model": request.model or self.model,
            "messages": _messages(turns),
            "max_tokens": self._max_tokens(request) or DEFAULT_MAX_TOKENS,
        }
        if system:
            body["system"] = system
        if request.tools:
            body["tools"] = [_tool(t) for t in request.tools]
            if request.tool_choice:
                body["tool_choice"] = _tool_choice(request.tool_choice)
        return body

    def _extra_body(self, request: CompletionRequest) -> dict[str, Any] | None:
        # This SDK no longer names `temperature`; the API still takes it in the body.
        extra = self._extra(request)
        temperature = self._temperature(request)
        if temperature is not None:
            extra.setdefault("temperature", temperature)
        return extra or None

    async def complete(self, request: CompletionRequest) -> Completion:
        client = self._get_client()
        body = self._body(request)
        started = time.perf_counter()
        with self._mapped():
            message = await client.messages.create(
                **body, extra_body=self._extra_body(request), timeout=self._timeout(request)
            )
        latency = time.perf_counter() - started
        text = "".join(b.text for b in message.content if b.type == "text")
        calls = tuple(
            ToolCall(id=b.id, name=b.name, arguments=parse_arguments(b.input))
            for b in message.content
            if b.type == "tool_use"
        )
        return Completion(
            text=text,
            model=message.model or body["model"],
            usage=usage_or_estimate(
                Usage(_input_tokens(message.usage), message.usage.output_tokens), request, text
            ),
            finish_reason=normalise_finish(
                _FINISH.get(message.stop_reason or "", "other"), has_tool_calls=bool(calls)
            ),
            tool_calls=calls,
            latency=latency,
        )

    async def stream(self, request: CompletionRequest) -> AsyncIterator[StreamChunk]:
        client = self._get_client()
        body = self._body(request)
        started = time.perf_counter()
        text: list[str] = []
        tools: dict[int, dict[str, str]] = {}
        model = body["model"]
        input_tokens = output_tokens = 0
        stop_reason: str | None = None
        finished = False
        with self._mapped():
            stream = await client.messages.create(
                **body,
                stream=True,
                extra_body=self._extra_body(request),
                timeout=self._timeout(request),
            )
            async with stream:
                async for event in stream:
                    if event.type == "message_start":
                        model = event.message.model or model
                        input_tokens = _input_tokens(event.message.usage)
                        output_tokens = event.message.usage.output_tokens
                    elif event.type == "content_block_start":
                        block = event.content_block
                        if block.type == "tool_use":
                            tools[event.index] = {"id": block.id, "name": block.name, "json": ""}
                    elif event.type == "content_block_delta":
                        delta = event.delta
                        if delta.type == "text_delta":
                            text.append(delta.text)
                            yield StreamChunk(delta=delta.text)
                        elif delta.type == "input_json_delta" and event.index in tools:
                            tools[event.index]["json"] += delta.partial_json
                    elif event.type == "message_delta":
                        stop_reason = event.delta.stop_reason or stop_reason
                        output_tokens = event.usage.output_tokens
                        if event.usage.input_tokens is not None:
                            input_tokens = _input_tokens(event.usage)
                    elif event.type == "message_stop":
                        finished = True
        if not finished:
            raise stream_incomplete(self.provider)
        calls = tuple(
            ToolCall(id=t["id"], name=t["name"], arguments=parse_arguments(t["json"]))
            for _, t in sorted(tools.items())
        )
        full = "".join(text)
        yield StreamChunk(
            completion=Completion(
                text=full,
                model=model,
                usage=usage_or_estimate(Usage(input_tokens, output_tokens), request, full),
                finish_reason=normalise_finish(
                    _FINISH.get(stop_reason or "", "other"), has_tool_calls=bool(calls)
                ),
                tool_calls=calls,
                latency=time.perf_counter() - started,
            )
        )

    @contextmanager
    def _mapped(self) -> Iterator[None]:
        """Re-raise the SDK's errors as ours, keeping status and Retry-After."""
        try:
            yield
        except anthropic.APIStatusError as e:
            status = e.status_code
            if status < 400:  # an error event inside a 200 stream
                status = _STREAM_ERROR_STATUS.get(str(e.type or ""), 500)
            message = e.api_message or e.message
            raise error_for_status(
                status,
                clean_message(message, secret=self._api_key),
                provider=self.provider,
                retry_after=parse_retry_after(e.response.headers),
            ) from e
        except anthropic.APITimeoutError as e:
            raise ProviderTimeout("request timed out", provider=self.provider) from e
        except anthropic.APIConnectionError as e:
            raise ProviderConnectionError(
                clean_message(e.message, secret=self._api_key), provider=self.provider
            ) from e
        except anthropic.APIError as e:
            raise ProviderError(
                clean_message(e.message, secret=self._api_key), provider=self.provider
            ) from e
        except Exception as e:
            mapped = transport_error(e, provider=self.provider)
            if mapped is None:
                raise
            raise mapped from e


# -- mapping ---------------------------------------------------------------------------------
def _input_tokens(usage: Any) -> int:
    """All prompt tokens: fresh, written to the cache and read from it."""
    return (
        (usage.input_tokens or 0)
        + (getattr(usage, "cache_creation_input_tokens", None) or 0)
        + (getattr(usage, "cache_read_input_tokens", None) or 0)
    )


def _blocks(m: ChatMessage) -> list[dict[str, Any]]:
    if m.role == "tool":
        return [{"type": "tool_result", "tool_use_id": m.tool_call_id or "", "content": m.content}]
    blocks: list[dict[str, Any]] = []
    if m.content:  # the API refuses empty text blocks
        blocks.append({"type": "text", "text": m.content})
    for tc in m.tool_calls:
        blocks.append(
            {"type": "tool_use", "id": tc.id, "name": tc.name, "input": dict(tc.arguments)}
        )
    return blocks


def _messages(turns: list[ChatMessage]) -> list[dict[str, Any]]:
    """Map turns, merging neighbours of one role: every tool result of an assistant turn
    must arrive in the single user turn that follows it."""
    out: list[dict[str, Any]] = []
    for m in turns:
        role = "assistant" if m.role == "assistant" else "user"
        blocks = _blocks(m)
        if not blocks:
            continue
        if out and out[-1]["role"] == role:
            out[-1]["content"].extend(blocks)
        else:
            out.append({"role": role, "content": blocks})
    return out


def _tool(t: ToolSpec) -> dict[str, Any]:
    return {"name": t.name, "description": t.description, "input_schema": dict(t.parameters)}


def _tool_choice(choice: str) -> dict[str, Any]:
    if choice == "auto":
        return {"type": "auto"}
    if choice == "required":
        return {"type": "any"}
    if choice == "none":
        return {"type": "none"}
    return {"type": "tool", "name": choice}
