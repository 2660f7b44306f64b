"""OpenAI Chat Completions, and the servers that speak it (xAI, OpenRouter, LM Studio, ...).

Import this module only when a backend of this kind is built: importing the ``openai`` SDK
takes about a second. The presets are the same adapter with other defaults: base URL, the
environment variable holding the key, and whether a key is needed at all.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Any, ClassVar

import openai

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
from massgen.errors import (
    ProviderConnectionError,
    ProviderError,
    ProviderTimeout,
)
from massgen.types import (
    ChatMessage,
    Completion,
    CompletionRequest,
    StreamChunk,
    ToolCall,
    ToolSpec,
    Usage,
)

_FINISH = {
    "stop": "stop",
    "length": "length",
    "tool_calls": "tool_calls",
    "function_call": "tool_calls",
    "content_filter": "content_filter",
}


class OpenAIBackend(SDKBackend):
    """Chat Completions through ``openai.AsyncOpenAI``.

    ``params`` go into the request body as they are (``top_p``, ``reasoning_effort``,
    ``seed``, a server's own options...), so you can use what the SDK does not name.
    """

    provider: ClassVar[str] = "openai"
    api_key_env: ClassVar[tuple[str, ...]] = ("OPENAI_API_KEY",)
    max_tokens_field: ClassVar[str] = "max_completion_tokens"
    """OpenAI's own API wants ``max_completion_tokens``; compatible servers ``max_tokens``."""

    _client: openai.AsyncOpenAI | None = None

    def _get_client(self) -> openai.AsyncOpenAI:
        if self._client is None:
            self._client = openai.AsyncOpenAI(
                api_key=self._api_key,
                base_url=self.base_url,
                timeout=self.timeout,
                max_retries=0,  # one retry budget: ours
                http_client=openai.DefaultAsyncHttpxClient(verify=tls_context()),
            )
        return self._client

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.close()

    # -- requests ----------------------------------------------------------------------------
    def _body(self, request: CompletionRequest) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": request.model or self.model,
            "messages": [_message(m) for m in request.messages],
        }
        temperature = self._temperature(request)
        if temperature is not None:
            body["temperature"] = temperature
        max_tokens = self._max_tokens(request)
        if max_tokens is not None:
            body[self.max_tokens_field] = max_tokens
        if request.tools:
            body["tools"] = [_tool(t) for t in request.tools]
            if request.tool_choice:
                body["tool_choice"] = _tool_choice(request.tool_choice)
        return body

    async def complete(self, request: CompletionRequest) -> Completion:
        client = self._get_client()
        body = self._body(request)
        started = time.perf_counter()
        with self._mapped():
            response = await client.chat.completions.create(
                **body, extra_body=self._extra(request) or None, timeout=self._timeout(request)
            )
        latency = time.perf_counter() - started
        if not response.choices:
            raise ProviderError("the response held no choices", provider=self.provider)
        choice = response.choices[0]
        message = choice.message
        calls = tuple(_parse_call(tc) for tc in (message.tool_calls or ()))
        usage = response.usage
        text = message.content or ""
        return Completion(
            text=text,
            model=response.model or body["model"],
            usage=usage_or_estimate(
                Usage(usage.prompt_tokens, usage.completion_tokens) if usage else Usage(),
                request,
                text,
            ),
            finish_reason=normalise_finish(
                _FINISH.get(choice.finish_reason or "", "other"), has_tool_calls=bool(calls)
            ),
            tool_calls=calls,
            latency=latency,
        )

    async def stream(self, request: CompletionRequest) -> AsyncIterator[StreamChunk]:
        client = self._get_client()
        body = self._body(request)
        started = time.perf_counter()
        text: list[str] = []
        calls: dict[int, dict[str, str]] = {}
        finish: str | None = None
        usage = Usage()
        model = body["model"]
        with self._mapped():
            stream = await client.chat.completions.create(
                **body,
                stream=True,
                stream_options={"include_usage": True},
                extra_body=self._extra(request) or None,
                timeout=self._timeout(request),
            )
            async with stream:
                async for chunk in stream:
                    model = chunk.model or model
                    if chunk.usage is not None:
                        usage = Usage(chunk.usage.prompt_tokens, chunk.usage.completion_tokens)
                    if not chunk.choices:
                        continue
                    choice = chunk.choices[0]
                    delta = choice.delta
                    if delta.content:
                        text.append(delta.content)
                        yield StreamChunk(delta=delta.content)
                    for tc in delta.tool_calls or ():
                        slot = calls.setdefault(tc.index, {"id": "", "name": "", "arguments": ""})
                        if tc.id:
                            slot["id"] = tc.id
                        if tc.function is not None:
                            slot["name"] += tc.function.name or ""
                            slot["arguments"] += tc.function.arguments or ""
                    if choice.finish_reason:
                        finish = choice.finish_reason
        if finish is None:
            raise stream_incomplete(self.provider)
        tool_calls = tuple(
            ToolCall(
                id=c["id"] or f"call_{i}", name=c["name"], arguments=parse_arguments(c["arguments"])
            )
            for i, c in sorted(calls.items())
        )
        full = "".join(text)
        yield StreamChunk(
            completion=Completion(
                text=full,
                model=model,
                usage=usage_or_estimate(usage, request, full),
                finish_reason=normalise_finish(
                    _FINISH.get(finish, "other"), has_tool_calls=bool(tool_calls)
                ),
                tool_calls=tool_calls,
                latency=time.perf_counter() - started,
            )
        )

    @contextmanager
    def _mapped(self) -> Iterator[None]:
        """Re-raise the SDK's errors as ours, keeping status and Retry-After."""
        try:
            yield
        except openai.APIStatusError as e:
            body = e.body if isinstance(e.body, dict) else {}
            raise error_for_status(
                e.status_code,
                clean_message(body.get("message") or e.message, secret=self._api_key),
                provider=self.provider,
                retry_after=parse_retry_after(e.response.headers),
            ) from e
        except openai.APITimeoutError as e:
            raise ProviderTimeout("request timed out", provider=self.provider) from e
        except openai.APIConnectionError as e:
            raise ProviderConnectionError(
                clean_message(e.message, secret=self._api_key), provider=self.provider
            ) from e
        except openai.APIError as e:  # an error event inside a stream
            raise ProviderError(
                clean_message(e.message, secret=self._api_key), provider=self.provider
            ) from e
        except Exception as e:
            mapped = transport_error(e, provider=self.provider)
            if mapped is None:
                raise
            raise mapped from e


# -- mapping ---------------------------------------------------------------------------------
def _message(m: ChatMessage) -> dict[str, Any]:
    if m.role == "tool":
        return {"role": "tool", "tool_call_id": m.tool_call_id or "", "content": m.content}
    if m.role == "assistant" and m.tool_calls:
        return {
            "role": "assistant",
            "content": m.content or None,
            "tool_calls": [
                {
                    "id": tc.id,
                    "type": "function",
                    "function": {"name": tc.name, "arguments": json.dumps(dict(tc.arguments))},
                }
                for tc in m.tool_calls
            ],
        }
    return {"role": m.role, "content": m.content}


def _tool(t: ToolSpec) -> dict[str, Any]:
    return {
        "type": "function",
        "function": {
            "name": t.name,
            "description": t.description,
            "parameters": dict(t.parameters),
        },
    }


def _tool_choice(choice: str) -> Any:
    if choice in ("auto", "required", "none"):
        return choice
    return {"type": "function", "function": {"name": choice}}


def _parse_call(tc: Any) -> ToolCall:
    function = getattr(tc, "function", None)
    if function is None:  # a "custom" tool call: free text, not JSON
        custom = getattr(tc, "custom", None)
        return ToolCall(
            id=tc.id,
            name=getattr(custom, "name", ""),
            arguments={"_raw": getattr(custom, "input", "")},
        )
    return ToolCall(id=tc.id, name=function.name, arguments=parse_arguments(function.arguments))


# -- OpenAI-compatible presets ---------------------------------------------------------------
class XAIBackend(OpenAIBackend):
    """xAI (Grok) through its OpenAI-compatible API."""

    provider = "xai"
    api_key_env = ("XAI_API_KEY",)
    default_base_url = "https://api.x.ai/v1"
    max_tokens_field = "max_tokens"


class OpenRouterBackend(OpenAIBackend):
    """OpenRouter: many providers' models behind one OpenAI-compatible API."""

    provider = "openrouter"
    api_key_env = ("OPENROUTER_API_KEY",)
    default_base_url = "https://openrouter.ai/api/v1"
    max_tokens_field = "max_tokens"


class LMStudioBackend(OpenAIBackend):
    """A local LM Studio server; no key needed."""

    provider = "lmstudio"
    api_key_env = ()
    needs_key = False
    default_base_url = "http://localhost:1234/v1"
    max_tokens_field = "max_tokens"


class OllamaBackend(OpenAIBackend):
    """A local Ollama server (its OpenAI-compatible endpoint); no key needed."""

    provider = "ollama"
    api_key_env = ()
    needs_key = False
    default_base_url = "http://localhost:11434/v1"
    max_tokens_field = "max_tokens"


class VLLMBackend(OpenAIBackend):
    """A vLLM server; no key needed unless you started it with ``--api-key``."""

    provider = "vllm"
    api_key_env = ("VLLM_API_KEY",)
    needs_key = False
    default_base_url = "http://localhost:8000/v1"
    max_tokens_field = "max_tokens"
