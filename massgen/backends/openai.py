"""OpenAI Chat Completions and the servers that speak it (xAI, OpenRouter, LM Studio...), as
plain dicts both clients move; a turn with a provider-side search goes to Responses."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import aclosing
from typing import Any, ClassVar, Final

from massgen.backends import openai_responses as responses
from massgen.backends._common import Draft, SDKBackend, results_text, tool_call, tool_schema
from massgen.backends._errors import stream_incomplete
from massgen.errors import ConfigError, ProviderError
from massgen.types import (
    ChatMessage,
    Completion,
    CompletionRequest,
    NativeTool,
    ServerToolCall,
    StreamChunk,
)

CLIENTS = ("http", "sdk")  # massgen's own client (the default); the ``openai`` package
CHAT, RESPONSES = "chat/completions", "responses"
DEFAULT_BASE_URL = "https://api.openai.com/v1"
# What a client yields for ``data: [DONE]``: the stream is complete, even if no chunk
# carried a ``finish_reason`` (OpenRouter, Kimi and other gateways end some with it alone).
DONE: Final[dict[str, Any]] = {"[DONE]": True}

_FINISH = {r: r for r in ("stop", "length", "tool_calls", "content_filter")}
_FINISH["function_call"] = "tool_calls"
# OpenAI models that take the Responses ``web_search`` tool, but not the second kind.
_OPENAI_SEARCHERS = re.compile(r"^(ft:)?(gpt-4o|gpt-4\.1|gpt-[5-9]|o3|o4)")
_NOT_SEARCHERS = re.compile(r"gpt-4\.1-nano|audio|realtime|transcribe|tts|image")
_OPENAI_MAX_DOMAINS = 100
_GROK = re.compile(r"^grok-(\d+)")
_XAI_MAX_DOMAINS = 5


class OpenAIBackend(SDKBackend):
    """Chat Completions; ``params`` go into the request body as they are (``top_p``...)."""

    provider: str = "openai"
    max_tokens_field: ClassVar[str] = "max_completion_tokens"  # compatible servers: max_tokens
    chat_search: ClassVar[bool] = True  # search models search with `web_search_options`

    def __init__(self, model: str = "", *, client: str = "http", **settings: Any) -> None:
        if client not in CLIENTS:
            message = f"unknown client {client!r} for the {self.provider} backend"
            hint = "use `http` (massgen's own, the default) or `sdk` (the openai package)"
            raise ConfigError(message, key="client", hint=hint)
        super().__init__(model, **settings)
        _check_one_choice(self.params, self.provider)
        # As the SDK does: the configured URL, then OPENAI_BASE_URL, then OpenAI's own.
        self.base_url = self.base_url or os.environ.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL
        self.client = client
        # Either client (opening nothing until the first request): `request` and `stream` (its
        # objects, then DONE) for a body sent to `api`; it maps its exceptions to ours.
        from massgen.backends.openai_http import HTTPChatClient, SDKChatClient

        options: Any = {"api_key": self._api_key, "base_url": self.base_url}
        kind: Any = SDKChatClient if client == "sdk" else HTTPChatClient
        self._chat = kind(provider=self.provider, timeout=self.timeout, **options)

    async def aclose(self) -> None:
        await self._chat.aclose()

    def supports_native(
        self, tool: NativeTool, *, model: str | None = None, with_functions: bool = False
    ) -> bool:
        """Search models search on Chat Completions (no function tools, no domain filters);
        the others on Responses, next to function tools, with an allow list only."""
        if tool.name not in self.native_tools:
            return False
        model = model or self.model
        if self._chat_search(model):
            return not (with_functions or tool.allowed_domains or tool.blocked_domains)
        if tool.blocked_domains or len(tool.allowed_domains) > _OPENAI_MAX_DOMAINS:
            return False
        return bool(_OPENAI_SEARCHERS.match(model)) and not _NOT_SEARCHERS.search(model)

    def _chat_search(self, model: str) -> bool:
        return self.chat_search and "search" in model

    def _web_search(self, tool: NativeTool) -> tuple[dict[str, Any], dict[str, Any]]:
        declared: dict[str, Any] = {"type": "web_search"}
        if tool.allowed_domains:
            declared["filters"] = {"allowed_domains": list(tool.allowed_domains)}
        fields: dict[str, Any] = {"include": ["web_search_call.action.sources"]}
        if tool.max_uses is not None:
            fields["max_tool_calls"] = tool.max_uses
        return declared, fields

    def _payload(self, request: CompletionRequest, *, stream: bool) -> tuple[str, dict[str, Any]]:
        """The API and its body: a native search goes to Responses unless on a search model."""
        _check_one_choice(request.extra, self.provider)
        max_tokens, extra = request.max_tokens, dict(request.extra)
        body: dict[str, Any] = {"model": request.model or self.model}
        if request.temperature is not None:
            body["temperature"] = request.temperature
        if request.native_tools and not self._chat_search(body["model"]):
            body.update(input=responses.input_items(request.messages), store=False)
            if max_tokens is not None:
                body["max_output_tokens"] = max_tokens
            body["tools"] = [
                {"type": "function", **tool_schema(t, "parameters")} for t in request.tools
            ]
            for native in request.native_tools:
                declared, fields = self._web_search(native)
                body["tools"].append(declared)
                body.update(fields)
            if request.tools and request.tool_choice:
                body["tool_choice"] = responses.tool_choice(request.tool_choice)
            if stream:
                body["stream"] = True
            if (effort := extra.pop("reasoning_effort", None)) is not None:
                body["reasoning"] = {"effort": effort}
            return RESPONSES, {**body, **extra}
        body["messages"] = _messages(request.messages)
        if max_tokens is not None:
            body[self.max_tokens_field] = max_tokens
        if request.tools:
            body["tools"] = [
                {"type": "function", "function": tool_schema(t, "parameters")}
                for t in request.tools
            ]
            if request.tool_choice:
                body["tool_choice"] = responses.tool_choice(request.tool_choice, nested=True)
        if request.native_tools:
            body["web_search_options"] = {}
        if stream:
            body.update(stream=True, stream_options={"include_usage": True})
        return CHAT, {**body, **extra}

    async def complete(self, request: CompletionRequest) -> Completion:
        request = self._settled(request)  # and no generator per request
        api, body = self._payload(request, stream=False)
        started, answer = time.perf_counter(), self._assembly(api, body)
        answer.whole(await self._chat.request(api, body, request.timeout or self.timeout))
        return answer.completion(request, time.perf_counter() - started)

    def _assembly(self, api: str, body: dict[str, Any]) -> _Assembly | responses.Assembly:
        kind = responses.Assembly if api == RESPONSES else _Assembly
        return kind(body["model"], provider=self.provider)

    async def _answer(
        self, request: CompletionRequest, *, stream: bool
    ) -> AsyncIterator[StreamChunk]:
        api, body = self._payload(request, stream=True)  # only streams: complete() is its own
        started, answer = time.perf_counter(), self._assembly(api, body)
        try:
            seconds = request.timeout or self.timeout
            async with aclosing(self._chat.stream(api, body, seconds)) as events:
                async for event in events:
                    if delta := answer.feed(event):
                        yield StreamChunk(delta=delta)
        except ProviderError:
            # An error after a chunk's finish_reason (OpenRouter sends one after `length`)
            # cannot take the answer back: keep it. Before (or on Responses), it stands.
            if answer.finish is None:
                raise
        yield StreamChunk(completion=answer.completion(request, time.perf_counter() - started))


def _messages(messages: tuple[ChatMessage, ...]) -> list[dict[str, Any]]:
    """The messages; tool messages take text only, so the images of a turn's tool results
    follow its last result in a user message."""
    out: list[dict[str, Any]] = []
    shown: list[dict[str, Any]] = []
    for m, after in zip(messages, (*messages[1:], None), strict=True):
        out.append(_message(m))
        if m.images:
            said = f"The images tool call {m.tool_call_id} ({m.name}) returned, as data:"
            shown.append({"type": "text", "text": said})
            shown += [{"type": "image_url", "image_url": {"url": i.url}} for i in m.images]
        if shown and (after is None or after.role != "tool"):
            out.append({"role": "user", "content": shown})
            shown = []
    return out


def _message(m: ChatMessage) -> dict[str, Any]:
    if m.role == "tool":
        return {"role": "tool", "tool_call_id": m.tool_call_id or "", "content": m.content}
    if m.role == "assistant" and m.tool_calls:
        calls = [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": args}}
            for c in m.tool_calls
            for args in [json.dumps(dict(c.arguments))]
        ]
        return {"role": "assistant", "content": m.content or None, "tool_calls": calls}
    return {"role": m.role, "content": m.content}


def _first_choice(choices: Any) -> Mapping[str, Any] | None:
    """Choice 0 (by its ``index``, not its place): the one we ask for."""
    for choice in choices or ():
        if isinstance(choice, Mapping) and (choice.get("index") or 0) == 0:
            return choice
    return None


def _reasoning(message: Mapping[str, Any]) -> str:
    """``reasoning_content`` (DeepSeek, Kimi, vLLM) or ``reasoning`` (OpenRouter, Groq...); a
    server that sends both sends the same text twice, so the first one set is taken."""
    for key in ("reasoning_content", "reasoning"):
        value = message.get(key)
        if isinstance(value, str) and value:
            return value
    return ""


def _call_id(call: Mapping[str, Any], seed: str) -> str:
    """The provider's id, or (Gemini's compatible endpoint sends ``""``) one made from the
    response, the call's place and content: stable across replays, unique per call."""
    if isinstance(call["id"], str) and call["id"]:
        return call["id"]
    digest = hashlib.sha256(f"{seed}:{call['name']}:{call['arguments']}".encode()).hexdigest()[:24]
    return f"call_{digest}"


def _check_one_choice(params: Mapping[str, Any], provider: str) -> None:
    """``n`` above 1 asks for several answers; an agent turn is one answer."""
    n = params.get("n")
    if n is not None and n != 1:
        message = f"the {provider} backend asks for one answer per turn; `n: {n}` asks for {n}"
        hint = "remove `n` from params (for several answers, add agents)"
        raise ConfigError(message, key="n", hint=hint)


@dataclasses.dataclass(eq=False, slots=True)
class _Assembly(Draft):
    """An answer put together chunk by chunk (or from a whole response); only choice 0."""

    slots: dict[int, dict[str, str]] = dataclasses.field(default_factory=dict)  # calls by index
    annotations: list[Any] = dataclasses.field(default_factory=list)
    seed: str = ""
    done: bool = False

    def whole(self, data: Mapping[str, Any]) -> None:
        """A whole response, read as one chunk whose delta is the message."""
        if (choice := _first_choice(data.get("choices"))) is None:
            raise ProviderError("the response held no choices", provider=self.provider)
        message = dict(choice.get("message") or {})
        message["tool_calls"] = [
            {**tc, "index": i} for i, tc in enumerate(message.get("tool_calls") or ())
        ]
        finish = choice.get("finish_reason") or "other"
        self.feed({**data, "choices": [{"delta": message, "finish_reason": finish}]})

    def feed(self, chunk: Mapping[str, Any]) -> str:
        if chunk is DONE:
            self.done = True
            return ""
        self.model = chunk.get("model") or self.model
        self.seed = self.seed or f"{chunk.get('id') or ''}:{chunk.get('created') or ''}"
        if (usage := chunk.get("usage")) is not None:
            self.usage = responses.usage(usage)
        if (choice := _first_choice(chunk.get("choices"))) is None:
            return ""
        delta = choice.get("delta") or {}
        self.annotations.extend(delta.get("annotations") or ())
        if thought := _reasoning(delta):
            self.reasoning.append(thought)
        for tc in delta.get("tool_calls") or ():
            slot = self.slots.setdefault(
                tc.get("index", 0), dict.fromkeys(("id", "name", "arguments"), "")
            )
            if tc.get("id"):
                slot["id"] = tc["id"]
            function = tc.get("function") or {}
            slot["name"] = _name_so_far(slot["name"], function.get("name") or "")
            arguments = function.get("arguments") or ""
            slot["arguments"] += arguments if isinstance(arguments, str) else json.dumps(arguments)
        self.finish = choice.get("finish_reason") or self.finish
        if content := delta.get("content"):
            self.text.append(content)
        return str(content or "")

    def completion(self, request: CompletionRequest, latency: float) -> Completion:
        """The answer, finished by a ``finish_reason`` or ``[DONE]``; else it was cut off."""
        if self.finish is None and not self.done:
            raise stream_incomplete(self.provider)
        self.calls = [
            tool_call(_call_id(c, f"{self.seed}:{i}"), c["name"], c["arguments"])
            for i, c in sorted(self.slots.items())
        ]
        self.found = responses.url_pairs(
            a.get("url_citation")
            for a in self.annotations
            if isinstance(a, Mapping) and a.get("type") == "url_citation"
        )
        if request.native_tools:  # Chat Completions does not say what was searched, nor how often
            self.searches = [
                ServerToolCall("web_search", "web_search", output=results_text(self.found))
            ]
        self.finish = _FINISH.get(self.finish or "stop", "other")
        return self.build(request, latency)


def _name_so_far(name: str, piece: str) -> str:
    """A name after one more delta: resent (whole or so far) not doubled; pieces joined."""
    if not name or piece.startswith(name):
        return piece or name
    if name.endswith(piece):
        return name
    return name + piece


class XAIBackend(OpenAIBackend):
    """xAI (Grok). Its web search is a tool of the Responses API (Live Search is retired)."""

    provider = "xai"
    max_tokens_field = "max_tokens"
    chat_search = False

    def supports_native(
        self, tool: NativeTool, *, model: str | None = None, with_functions: bool = False
    ) -> bool:
        """Grok 4 and later, with an allow or a block list of at most 5 domains."""
        if tool.name not in self.native_tools:
            return False
        allowed, blocked = len(tool.allowed_domains), len(tool.blocked_domains)
        if (allowed and blocked) or max(allowed, blocked) > _XAI_MAX_DOMAINS:
            return False
        version = _GROK.match(model or self.model)
        return version is not None and int(version.group(1)) >= 4

    def _web_search(self, tool: NativeTool) -> tuple[dict[str, Any], dict[str, Any]]:
        """Domain lists flat; no ``include`` (no per-search sources), no ``max_tool_calls``."""
        lists = {"allowed_domains": tool.allowed_domains, "excluded_domains": tool.blocked_domains}
        return {"type": "web_search", **{key: list(v) for key, v in lists.items() if v}}, {}


class _Compatible(OpenAIBackend):
    max_tokens_field = "max_tokens"


class OpenRouterBackend(_Compatible):
    """OpenRouter: many providers' models behind one OpenAI-compatible API."""

    provider = "openrouter"


class LMStudioBackend(_Compatible):
    """A local LM Studio server; no key needed."""

    provider = "lmstudio"


class OllamaBackend(_Compatible):
    """A local Ollama server (its OpenAI-compatible endpoint); no key needed."""

    provider = "ollama"


class VLLMBackend(_Compatible):
    """A vLLM server; no key needed unless you started it with ``--api-key``."""

    provider = "vllm"
