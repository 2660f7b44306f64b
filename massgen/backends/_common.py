"""What the SDK adapters share: settings, the API key, the lazy client, small parsers.

No SDK is imported here: this module is loaded by every adapter, and by nothing else.
"""

from __future__ import annotations

import functools
import json
import os
import ssl
import sys
from collections.abc import Mapping
from typing import Any, ClassVar

from massgen.backends.base import Backend, estimate_text_tokens, estimate_tokens
from massgen.errors import AuthenticationError, ConfigError
from massgen.types import CompletionRequest, Usage

FINISH_REASONS = ("stop", "length", "tool_calls", "content_filter", "other")

NO_KEY = "not-needed"
"""The key sent to local servers (LM Studio, Ollama, vLLM) that do not check one."""


class SDKBackend(Backend):
    """A backend that calls a provider through its SDK (or, for OpenAI-compatible servers,
    massgen's own HTTP client).

    You give it the settings every provider shares; ``params`` carries the rest through to
    the provider untouched. The client is made on first use (one per backend, reused, its
    own retries off) and closed by :meth:`aclose`.
    """

    supports_tools: bool = True
    api_key_env: ClassVar[tuple[str, ...]] = ()
    """Environment variables holding the key, tried in order."""
    needs_key: ClassVar[bool] = True
    """Local servers need no key; a dummy one is sent so SDKs do not complain."""
    default_base_url: ClassVar[str | None] = None

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
        if not model:
            from massgen.backends.registry import model_hint

            raise ConfigError(
                f"a {self.provider} backend needs a model",
                key="model",
                hint=model_hint(self.provider),
            )
        self._api_key = self._resolve_key(api_key)
        self.base_url = base_url or self.default_base_url
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.timeout = 60.0 if timeout is None else float(timeout)
        self.params: dict[str, Any] = dict(params or {})

    def _resolve_key(self, explicit: str | None) -> str:
        if explicit:
            return explicit
        for var in self.api_key_env:
            value = os.environ.get(var)
            if value:
                return value
        if not self.needs_key:
            return NO_KEY
        where = " or ".join(self.api_key_env) or "api_key"
        raise AuthenticationError(
            f"no API key for {self.provider}: set {where} (or api_key in the config)",
            provider=self.provider,
        )

    def _timeout(self, request: CompletionRequest) -> float:
        return self.timeout if request.timeout is None else float(request.timeout)

    def _temperature(self, request: CompletionRequest) -> float | None:
        return self.temperature if request.temperature is None else request.temperature

    def _max_tokens(self, request: CompletionRequest) -> int | None:
        return self.max_tokens if request.max_tokens is None else request.max_tokens

    def _extra(self, request: CompletionRequest) -> dict[str, Any]:
        """Provider parameters: the backend's ``params``, then the request's ``extra``."""
        return {**self.params, **request.extra}

    def describe(self) -> str:
        where = f" @ {self.base_url}" if self.base_url and not self.needs_key else ""
        return f"{self.provider}:{self.model}{where}"


@functools.cache
def tls_context() -> ssl.SSLContext:
    """The TLS context every client shares (SDKs' and our own), built as the SDKs build theirs.

    Loading the CA bundle costs ~50 ms of CPU each time; a team of agents would pay it once
    per backend. It is made once per process, on first use, and never changed after.
    """
    # The SDKs' HTTP stack builds it the same way; importing that stack for this would cost
    # ~80 ms and load httpx on a path that otherwise never needs it.
    if cafile := os.environ.get("SSL_CERT_FILE"):
        return ssl.create_default_context(cafile=cafile)
    if capath := os.environ.get("SSL_CERT_DIR"):
        return ssl.create_default_context(capath=capath)
    if sys.platform in ("win32", "darwin"):
        try:
            import truststore  # the system's trust store, as the SDKs use there
        except ImportError:
            pass
        else:
            return truststore.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context = ssl.create_default_context()
    paths = ssl.get_default_verify_paths()
    if not (os.path.isfile(paths.openssl_cafile) or os.path.isdir(paths.openssl_capath)):
        bundle = next(filter(os.path.isfile, _CA_FILES), None)  # OpenSSL's paths unusable
        if bundle:
            context.load_verify_locations(bundle)
    return context


_CA_FILES = (
    "/etc/ssl/cert.pem",
    "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",
    "/etc/pki/tls/cert.pem",
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/ssl/ca-bundle.pem",
)


def sdk_client(
    client_class: Any, http_client_class: Any, *, api_key: str, base_url: str | None, timeout: Any
) -> Any:
    """A vendor SDK's async client as every adapter makes it: the SDK's own retries off (one
    retry budget: ours), the shared TLS context."""
    return client_class(
        api_key=api_key,
        base_url=base_url,
        timeout=timeout,
        max_retries=0,
        http_client=http_client_class(verify=tls_context()),
    )


def parse_arguments(raw: object) -> dict[str, Any]:
    """Tool-call arguments as a dict.

    Models sometimes send broken JSON; rather than fail the turn we hand the text on as
    ``{"_raw": text}`` so the tool loop can tell the model its arguments were invalid.
    """
    if raw is None or raw == "":
        return {}
    if isinstance(raw, Mapping):
        return dict(raw)
    try:
        value = json.loads(str(raw))
    except ValueError:
        return {"_raw": str(raw)}
    return value if isinstance(value, dict) else {"_raw": str(raw)}


def usage_or_estimate(usage: Usage, request: CompletionRequest, text: str) -> Usage:
    """The provider's usage, or an estimate when it reported none (some local servers don't),
    so that budgets and cost never silently read zero."""
    if usage.input_tokens or usage.output_tokens:
        return usage
    return Usage(estimate_tokens(request), estimate_text_tokens(text))


def normalise_finish(reason: str, *, has_tool_calls: bool) -> str:
    """Make sure a finish reason is one of :data:`FINISH_REASONS`.

    Some OpenAI-compatible servers say ``stop`` while returning tool calls; the tool loop
    must still see ``tool_calls``.
    """
    if has_tool_calls and reason in ("stop", "other"):
        return "tool_calls"
    return reason if reason in FINISH_REASONS else "other"
