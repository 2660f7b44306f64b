"""What the provider adapters share: settings, key, TLS context, parsers. No SDK imported."""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import json
import os
import ssl
import sys
from collections import OrderedDict
from collections.abc import AsyncIterator, Iterable, Mapping
from typing import Any

from massgen.backends.base import Backend, final
from massgen.backends.registry import model_hint
from massgen.errors import AuthenticationError, BadRequestError, ConfigError
from massgen.providers import PROVIDERS
from massgen.redact import redact_url
from massgen.tokens import estimate_request, estimate_text
from massgen.types import (
    Completion,
    CompletionRequest,
    ServerToolCall,
    Source,
    StreamChunk,
    ToolCall,
    ToolSpec,
    Usage,
)

FINISH_REASONS = ("stop", "length", "tool_calls", "content_filter", "other")
NO_KEY = "not-needed"  # sent to local servers (LM Studio, Ollama, vLLM) that check none
MAX_SOURCES = 50  # sources kept per answer: a long research turn can cite hundreds
_MAX_TITLE = 200
_MAX_OUTPUT = 1000
_REMEMBERED = 2048


class SDKBackend(Backend):
    """A provider's API: the shared settings, the key, and ``params`` passed through."""

    supports_tools: bool = True

    def __init__(
        self,
        model: str = "",
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        temperature: float | None = None,
        max_tokens: int | None = None,
        timeout: float | None = 60.0,
        params: Mapping[str, Any] | None = None,
        name: str = "",
    ) -> None:
        super().__init__(model, name=name)
        self.spec = PROVIDERS[self.provider]
        self.native_tools, self.tool_images = self.spec.native_tools, self.spec.tool_images
        if not model:
            hint = model_hint(self.provider)
            raise ConfigError(f"a {self.provider} backend needs a model", key="model", hint=hint)
        self._api_key = self._resolve_key(api_key)
        self.base_url = base_url or self.spec.base_url
        self.temperature, self.max_tokens = temperature, max_tokens
        self.timeout = 60.0 if timeout is None else float(timeout)
        self.params: dict[str, Any] = dict(params or {})

    def _resolve_key(self, explicit: str | None) -> str:
        if key := explicit or next(filter(None, map(os.environ.get, self.spec.key_env)), None):
            return key
        if not self.spec.needs_key:
            return NO_KEY
        where = " or ".join(self.spec.key_env) or "api_key"
        message = f"no API key for {self.provider}: set {where} (or api_key in the config)"
        raise AuthenticationError(message, provider=self.provider)

    def _settled(self, request: CompletionRequest) -> CompletionRequest:
        """``request`` with this backend's settings where it sets none, ``params`` in ``extra``."""
        for tool in request.native_tools:
            if tool.name not in self.native_tools:
                message = f"the {self.provider} backend has no provider-side tool {tool.name!r}"
                raise BadRequestError(message, provider=self.provider)
        return dataclasses.replace(
            request,
            model=request.model or self.model,
            temperature=self.temperature if request.temperature is None else request.temperature,
            max_tokens=self.max_tokens if request.max_tokens is None else request.max_tokens,
            timeout=self.timeout if request.timeout is None else float(request.timeout),
            extra={**self.params, **request.extra},
        )

    async def complete(self, request: CompletionRequest) -> Completion:
        return await final(self._answer(self._settled(request), stream=False))

    async def stream(self, request: CompletionRequest) -> AsyncIterator[StreamChunk]:
        async for piece in self._answer(self._settled(request), stream=True):
            yield piece

    def _answer(self, request: CompletionRequest, *, stream: bool) -> AsyncIterator[StreamChunk]:
        """Text deltas (when ``stream``), then the completion, for a settled ``request``."""
        raise NotImplementedError

    def describe(self) -> str:
        local = self.base_url if not self.spec.needs_key else None
        where = f" @ {redact_url(local)}" if local else ""
        return f"{self.provider}:{self.model}{where}"


@functools.cache
def tls_context() -> ssl.SSLContext:
    """The TLS context every client shares (SDKs', ours, the tools'), built as the SDKs
    build theirs: loading the CA bundle costs ~50 ms of CPU, paid once per process."""
    if cafile := os.environ.get("SSL_CERT_FILE"):
        return ssl.create_default_context(cafile=cafile)
    if capath := os.environ.get("SSL_CERT_DIR"):
        return ssl.create_default_context(capath=capath)
    if sys.platform in ("win32", "darwin") and importlib.util.find_spec("truststore"):
        import truststore  # the system's trust store, as the SDKs use there

        return truststore.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context = ssl.create_default_context()
    paths = ssl.get_default_verify_paths()
    unusable = not (os.path.isfile(paths.openssl_cafile) or os.path.isdir(paths.openssl_capath))
    if unusable and (bundle := next(filter(os.path.isfile, _CA_FILES), None)):
        context.load_verify_locations(bundle)
    return context


_CA_FILES = (
    "/etc/ssl/cert.pem",
    "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",
    "/etc/pki/tls/cert.pem",
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/ssl/ca-bundle.pem",
)


class Remembered(OrderedDict[str, Any]):
    """The newest 2048 things an adapter keeps by tool call id for the next turn."""

    def keep(self, key: str, value: Any) -> None:
        if value:
            self[key] = value
            if len(self) > _REMEMBERED:
                self.popitem(last=False)


def sdk_client(sdk: Any, kind: Any, api_key: str, base_url: str | None, timeout: float) -> Any:
    """A Stainless-made SDK's async client: its retries off (ours are the one budget)."""
    http_client = sdk.DefaultAsyncHttpxClient(verify=tls_context())
    return kind(
        api_key=api_key, base_url=base_url, timeout=timeout, max_retries=0, http_client=http_client
    )


def merged_turns(turns: Iterable[tuple[str, list[Any]]]) -> list[tuple[str, list[Any]]]:
    """``(role, parts)`` turns with neighbours of one role joined and empty ones dropped."""
    out: list[tuple[str, list[Any]]] = []
    for role, parts in turns:
        if parts and out and out[-1][0] == role:
            out[-1][1].extend(parts)
        elif parts:
            out.append((role, list(parts)))
    return out


def parse_arguments(raw: object) -> dict[str, Any]:
    """Tool-call arguments as a dict; broken JSON comes back as ``{"_raw": text}`` so the
    tool loop can tell the model its arguments were invalid, rather than fail the turn."""
    if raw is None or raw == "":
        return {}
    if isinstance(raw, Mapping):
        return dict(raw)
    try:
        value = json.loads(str(raw))
    except ValueError:
        value = None
    return value if isinstance(value, dict) else {"_raw": str(raw)}


def tool_call(call_id: object, name: object, arguments: object) -> ToolCall:
    return ToolCall(str(call_id or ""), str(name or ""), parse_arguments(arguments))


def tool_schema(spec: ToolSpec, schema_key: str) -> dict[str, Any]:
    return {"name": spec.name, "description": spec.description, schema_key: dict(spec.parameters)}


@dataclasses.dataclass(eq=False, slots=True)
class Draft:
    """An answer as an adapter reads it; :meth:`build` makes it ours."""

    model: str
    provider: str = ""
    text: list[str] = dataclasses.field(default_factory=list)
    reasoning: list[str] = dataclasses.field(default_factory=list)
    calls: list[ToolCall] = dataclasses.field(default_factory=list)
    found: list[tuple[str, str]] = dataclasses.field(default_factory=list)  # (url, title)
    searches: list[ServerToolCall] = dataclasses.field(default_factory=list)
    usage: Usage = Usage()
    finish: str | None = None

    def build(
        self, request: CompletionRequest, latency: float, *, joiner: str = "", **fields: Any
    ) -> Completion:
        """The answer as ours (``tool_calls`` with calls; usage estimated when none came)."""
        text, finish, usage = "".join(self.text), self.finish or "other", self.usage
        if self.calls and finish in ("stop", "other"):
            finish = "tool_calls"
        if not (usage.input_tokens or usage.output_tokens):
            usage = Usage(estimate_request(request), estimate_text(text))
        return Completion(
            text=text,
            usage=usage,
            finish_reason=finish if finish in FINISH_REASONS else "other",
            tool_calls=tuple(self.calls),
            sources=unique_sources(self.found),
            model=self.model,
            latency=latency,
            server_calls=tuple(self.searches),
            reasoning=joiner.join(self.reasoning),
            **fields,
        )


def unique_sources(pairs: Iterable[tuple[str, str]]) -> tuple[Source, ...]:
    """``(url, title)`` pairs as sources, first of each URL; titles are web text: kept short."""
    seen: dict[str, Source] = {}
    for url, title in pairs:
        if not url or url in seen:
            continue
        seen[url] = Source(url=url, title=" ".join(title.split())[:_MAX_TITLE])
        if len(seen) >= MAX_SOURCES:
            break
    return tuple(seen.values())


def results_text(pairs: Iterable[tuple[str, str]]) -> str:
    """Search results as ``title <url>`` lines, for events and the run record."""
    lines = [f"{' '.join(title.split())[:_MAX_TITLE]} <{url}>" for url, title in pairs if url]
    text = "\n".join(lines) if lines else "no results"
    return text if len(text) <= _MAX_OUTPUT else text[: _MAX_OUTPUT - 1] + "…"
