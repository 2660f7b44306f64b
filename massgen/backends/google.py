"""Gemini through the ``google-genai`` SDK (about a second to import: only when built), with
every SDK behaviour that could make a second request off. Gemini 3 wants each function call's
``thought_signature`` back in the next turn: the backend remembers them by call id."""

from __future__ import annotations

import base64
import dataclasses
import functools
import re
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from contextlib import aclosing, contextmanager
from typing import Any

import httpx2
import pydantic
from google import genai
from google.genai import errors as genai_errors
from google.genai import types

from massgen.backends._common import (
    Draft,
    Remembered,
    SDKBackend,
    merged_turns,
    results_text,
    tls_context,
    tool_call,
    tool_schema,
)
from massgen.backends._errors import (
    clean_message,
    error_for_status,
    parse_retry_after,
    stream_incomplete,
    transport_error,
)
from massgen.backends.base import system_and_turns
from massgen.errors import AuthenticationError, BadRequestError, ProviderConnectionError
from massgen.types import (
    ChatMessage,
    CompletionRequest,
    NativeTool,
    ServerToolCall,
    StreamChunk,
    ToolCall,
    Usage,
)

_FINISH = {"STOP": "stop", "MAX_TOKENS": "length"}
_FILTERED = {"SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII", "IMAGE_SAFETY"}
_FILTERED.add("IMAGE_PROHIBITED_CONTENT")  # finish reasons: a filter stopped the answer
_TOOL_CHOICE = {"auto": "AUTO", "required": "ANY", "none": "NONE"}

SKIP_SIGNATURE = b"skip_thought_signature_validator"  # Google's: the signature is unknown
_SYNTHETIC_ID = "mg-call-"  # ids we made up for calls the API sent without one

_RETRY_INFO = "type.googleapis.com/google.rpc.RetryInfo"
_ERROR_INFO = "type.googleapis.com/google.rpc.ErrorInfo"
_DURATION = re.compile(r"\s*(\d+(?:\.\d*)?)s\s*")  # google.protobuf.Duration in JSON: "58s"


class GoogleBackend(SDKBackend):
    """Gemini models; ``params`` are extra ``GenerateContentConfig`` fields (``top_p``...)."""

    provider: str = "google"

    def __init__(self, model: str = "", **kwargs: Any) -> None:
        super().__init__(model, **kwargs)
        self._signatures = Remembered()

    def supports_native(
        self, tool: NativeTool, *, model: str | None = None, with_functions: bool = False
    ) -> bool:
        """Google Search: no domain filters, and next to functions only from Gemini 3 on."""
        if tool.name not in self.native_tools or tool.allowed_domains or tool.blocked_domains:
            return False
        return not (with_functions and _legacy(model or self.model))

    @functools.cached_property
    def _client(self) -> genai.Client:
        # One shared TLS context ("ssl": its websocket path). A transport of its own keeps
        # the SDK on httpx2 when aiohttp (ours) is installed.
        options = types.HttpOptions(
            base_url=self.base_url,
            timeout=_ms(self.timeout),
            retry_options=types.HttpRetryOptions(attempts=1),  # one retry budget: ours
            client_args={"verify": tls_context()},
            async_client_args={
                "transport": httpx2.AsyncHTTPTransport(verify=tls_context()),
                "ssl": tls_context(),
            },
        )
        return genai.Client(
            enterprise=False, vertexai=False, api_key=self._api_key, http_options=options
        )

    async def aclose(self) -> None:
        if (client := self.__dict__.pop("_client", None)) is not None:
            await client.aio.aclose()
            client.close()

    def _config(self, request: CompletionRequest, system: str) -> types.GenerateContentConfig:
        config: dict[str, Any] = {
            "http_options": types.HttpOptions(timeout=_ms(request.timeout or self.timeout)),
            "automatic_function_calling": {"disable": True},
            "automatic_continuation": False,
            "system_instruction": system or None,
            "temperature": request.temperature,
            "max_output_tokens": request.max_tokens,
        }
        config = {key: value for key, value in config.items() if value is not None}
        tools: list[Any] = []
        if request.tools:
            declared = [tool_schema(t, "parameters_json_schema") for t in request.tools]
            tools.append({"function_declarations": declared})
            if choice := request.tool_choice:
                named = {"mode": "ANY", "allowed_function_names": [choice]}
                mode = {"mode": _TOOL_CHOICE[choice]} if choice in _TOOL_CHOICE else named
                config["tool_config"] = {"function_calling_config": mode}
        if request.native_tools:
            tools.append({"google_search": {}})
            if request.tools:  # Gemini 3: built-in and function tools in one request
                config.setdefault("tool_config", {})["include_server_side_tool_invocations"] = True
        if tools:
            config["tools"] = tools
        try:
            return types.GenerateContentConfig(**{**config, **request.extra})
        except pydantic.ValidationError as e:
            message = f"invalid Gemini parameters: {clean_message(e)}"
            raise BadRequestError(message, provider=self.provider) from e

    def _contents(self, turns: list[ChatMessage], model: str) -> list[types.Content]:
        legacy = _legacy(model)  # no thought signatures there
        names: dict[str, str] = {}
        turns_parts: list[tuple[str, list[types.Part]]] = []
        for m in turns:
            parts: list[types.Part] = []
            if m.role == "tool":
                call_id = m.tool_call_id or ""
                images = [(i.mime_type, base64.b64decode(i.data)) for i in m.images]
                blobs = [  # Gemini 3 takes images inside the function response
                    types.FunctionResponseBlob(mime_type=t, data=d, display_name=f"{call_id}-{n}")
                    for n, (t, d) in enumerate(() if legacy else images, 1)
                ]
                result = types.FunctionResponse(
                    id=_real_id(call_id),
                    name=m.name or names.get(call_id, ""),
                    response={"result": m.content},
                    parts=[types.FunctionResponsePart(inline_data=b) for b in blobs] or None,
                )
                parts.append(types.Part(function_response=result))
                if legacy:  # Gemini 2.x: beside it only
                    parts += [
                        types.Part(inline_data=types.Blob(mime_type=t, data=d)) for t, d in images
                    ]
            elif m.content:
                parts.append(types.Part(text=m.content))
            for tc in m.tool_calls:
                names[tc.id] = tc.name
                call = types.FunctionCall(id=_real_id(tc.id), name=tc.name, args=dict(tc.arguments))
                signature = self._signatures.get(tc.id, None if legacy else SKIP_SIGNATURE)
                parts.append(types.Part(function_call=call, thought_signature=signature))
            turns_parts.append(("model" if m.role == "assistant" else "user", parts))
        return [types.Content(role=r, parts=p) for r, p in merged_turns(turns_parts)]

    def _calls(self, parts: list[types.Part]) -> list[ToolCall]:
        calls: list[ToolCall] = []
        for part in parts:
            if (fc := part.function_call) is not None:
                # Unique even across turns, so remembered signatures never collide.
                call_id = fc.id or f"{_SYNTHETIC_ID}{uuid.uuid4().hex[:16]}"
                self._signatures.keep(call_id, part.thought_signature)
                calls.append(tool_call(call_id, fc.name, fc.args))
        return calls

    async def _answer(
        self, request: CompletionRequest, *, stream: bool
    ) -> AsyncIterator[StreamChunk]:
        started, draft = time.perf_counter(), _Answer(request.model or self.model)
        system, turns = system_and_turns(request.messages)
        args: Any = {"model": draft.model, "contents": self._contents(turns, request.model or "")}
        args["config"] = self._config(request, system)
        with self._mapped():
            if not stream:
                draft.take(await self._client.aio.models.generate_content(**args), self._calls)
            else:
                chunks = await self._client.aio.models.generate_content_stream(**args)
                async with aclosing(chunks):  # type: ignore[type-var]  # closed at once if we stop
                    async for chunk in chunks:
                        if delta := draft.take(chunk, self._calls):
                            yield StreamChunk(delta=delta)
                if draft.finish is None:
                    raise stream_incomplete(self.provider)
        draft.found, draft.searches = _grounding(draft.grounding)
        yield StreamChunk(completion=draft.build(request, time.perf_counter() - started))

    @contextmanager
    def _mapped(self) -> Iterator[None]:
        """The SDK's errors as ours (a 429's ``RetryInfo.retryDelay`` is ``retry_after``)."""
        try:
            yield
        except genai_errors.APIError as e:
            status = int(e.code or 500)
            message = clean_message(e.message or str(e), secret=self._api_key)
            details = _rpc_details(e.details)
            reasons = {str(d.get("reason")) for d in details if d.get("@type") == _ERROR_INFO}
            if status == 400 and "API_KEY_INVALID" in reasons:  # the key, not the request
                raise AuthenticationError(message, provider=self.provider, status=status) from e
            if (wait := parse_retry_after(getattr(e.response, "headers", None))) is None:
                wait = _retry_delay(details)
            raise error_for_status(status, message, provider=self.provider, retry_after=wait) from e
        except genai_errors.UnknownApiResponseError as e:  # a body cut off mid-JSON
            message = "incomplete response from the provider"
            raise ProviderConnectionError(message, provider=self.provider) from e
        except Exception as e:
            if (mapped := transport_error(e, provider=self.provider)) is None:
                raise
            raise mapped from e


@dataclasses.dataclass(eq=False, slots=True)
class _Answer(Draft):
    grounding: types.GroundingMetadata | None = None

    def take(
        self,
        response: types.GenerateContentResponse,
        read_calls: Callable[[list[types.Part]], list[ToolCall]],
    ) -> str:
        """Read one response (or chunk), its calls with ``read_calls``; return its text."""
        self.model = response.model_version or self.model
        if response.usage_metadata is not None:
            self.usage = _usage(response.usage_metadata)
        if not response.candidates:
            if response.prompt_feedback and response.prompt_feedback.block_reason:
                self.finish = "content_filter"
            return ""
        candidate = response.candidates[0]
        parts = list(candidate.content.parts or ()) if candidate.content is not None else []
        self.grounding = candidate.grounding_metadata or self.grounding
        self.calls += read_calls(parts)
        # Parts marked ``thought`` are thought summaries: reasoning, never the answer.
        self.reasoning += [p.text for p in parts if p.text and p.thought]
        self.text.append(delta := "".join(p.text for p in parts if p.text and not p.thought))
        if (reason := candidate.finish_reason) is not None:
            name = str(getattr(reason, "value", reason))
            self.finish = "content_filter" if name in _FILTERED else _FINISH.get(name, "other")
        return delta


def _rpc_details(body: object) -> list[Mapping[str, Any]]:
    """``error.details`` of a Google error body (``google.rpc.Status``), [] if none."""
    if isinstance(body, list) and body:  # some endpoints wrap the body in a list
        body = body[0]
    error = body.get("error", body) if isinstance(body, Mapping) else None
    details = error.get("details") if isinstance(error, Mapping) else None
    return [d for d in details if isinstance(d, Mapping)] if isinstance(details, list) else []


def _retry_delay(details: list[Mapping[str, Any]]) -> float | None:
    """Seconds a ``RetryInfo`` detail asks to wait (Gemini's 429s carry it in the body)."""
    for detail in details:
        match = _DURATION.fullmatch(str(detail.get("retryDelay", "")))
        if detail.get("@type") == _RETRY_INFO and match:
            return float(match.group(1))
    return None


def _legacy(model: str) -> bool:
    """Gemini 1.x and 2.x: no thought signatures, no built-in tools next to functions."""
    return model.removeprefix("models/").startswith(("gemini-1", "gemini-2"))


def _grounding(
    meta: types.GroundingMetadata | None,
) -> tuple[list[tuple[str, str]], list[ServerToolCall]]:
    """Google Search grounding as sources and one reported search per query."""
    if meta is None:
        return [], []
    chunks = meta.grounding_chunks or ()
    pairs = [(c.web.uri or "", c.web.title or "") for c in chunks if c.web is not None]
    output = results_text(pairs)
    searches = [
        ServerToolCall(f"google_search_{i}", "web_search", {"query": q}, output=output)
        for i, q in enumerate(meta.web_search_queries or ())
    ]
    return pairs, searches


def _ms(seconds: float) -> int:  # HttpOptions.timeout is in milliseconds
    return max(1, round(seconds * 1000))


def _real_id(call_id: str) -> str | None:
    """Send back only ids the API gave us, never ones we made up."""
    return None if not call_id or call_id.startswith(_SYNTHETIC_ID) else call_id


def _usage(meta: types.GenerateContentResponseUsageMetadata) -> Usage:
    """As Google bills: prompt and tool-fed tokens are input (the prompt count holds the
    cached ones); answer and thinking, output (thoughts are counted apart from the answer)."""
    prompt = (meta.prompt_token_count or 0) + (meta.tool_use_prompt_token_count or 0)
    thoughts = meta.thoughts_token_count or 0
    output = (meta.candidates_token_count or 0) + thoughts
    return Usage(prompt, output, min(meta.cached_content_token_count or 0, prompt), thoughts)
