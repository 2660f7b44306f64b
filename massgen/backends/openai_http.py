"""massgen's own Chat Completions client: JSON and server-sent events over ``httpx``.

Importing the ``openai`` SDK costs about 0.9 s of CPU, more than a whole consensus run may
use, for a protocol of one endpoint. This client speaks that endpoint directly: one
keep-alive ``httpx.AsyncClient`` per backend, made on first use, no retries of its own (the
retry wrapper has the one budget), and every failure mapped to our errors where it enters.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncGenerator, AsyncIterator, Iterator, Mapping
from contextlib import aclosing, contextmanager, suppress
from typing import Any

import anyio
import h11  # noqa: F401
import httpcore  # noqa: F401
import httpx

# httpx loads its connection machinery (httpcore, h11, anyio) on the first connection. They
# are imported here, when the backend is built, so the first request of a run does not stall
# the event loop for ~80 ms while every agent waits behind it. anyio's asyncio backend is
# private; if a future anyio moves it, only this warm-up is lost.
with suppress(ImportError):
    import anyio._backends._asyncio
    import anyio.streams.tls  # noqa: F401

from massgen import __version__
from massgen.backends._common import tls_context
from massgen.backends._errors import (
    body_message,
    clean_message,
    error_for_status,
    parse_retry_after,
    transport_error,
)
from massgen.errors import ProviderConnectionError, ProviderError

_LIMITS = httpx.Limits(max_connections=128, max_keepalive_connections=64, keepalive_expiry=30.0)
"""Room for a batch's ~64 requests in flight, all kept alive between rounds: reconnecting
(and, over TLS, a new handshake) per request would cost more than the request itself."""

_ENV_HEADERS = {"OPENAI_ORG_ID": "OpenAI-Organization", "OPENAI_PROJECT_ID": "OpenAI-Project"}
"""Read from the environment as the SDK reads them, so both clients send the same."""


class HTTPChatClient:
    """``POST {base_url}/chat/completions``, plain or streamed, returning the provider's JSON.

    For ``http://`` URLs (local servers, the simulator) no CA bundle is loaded: that costs
    ~50 ms of CPU and verifies nothing there. ``https://`` URLs share the process's one
    TLS context (:func:`~massgen.backends._common.tls_context`).
    """

    def __init__(
        self,
        *,
        provider: str,
        api_key: str,
        base_url: str,
        timeout: float,
    ) -> None:
        self.provider = provider
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.timeout = timeout
        self._api_key = api_key
        self._headers = {
            "Authorization": f"Bearer {api_key}",
            "Content-Type": "application/json",
            "Accept": "application/json",
            "User-Agent": f"massgen/{__version__}",
            **{name: os.environ[var] for var, name in _ENV_HEADERS.items() if os.environ.get(var)},
        }
        self._client: httpx.AsyncClient | None = None

    def _get_client(self) -> httpx.AsyncClient:
        if self._client is None:
            secure = self.url.startswith("https:")
            self._client = httpx.AsyncClient(
                headers=self._headers,
                timeout=self.timeout,
                limits=_LIMITS,
                verify=tls_context() if secure else False,
            )
        return self._client

    async def aclose(self) -> None:
        """Close the connections; the next request (on any event loop) opens new ones."""
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    async def create(self, body: dict[str, Any], seconds: float) -> dict[str, Any]:
        client = self._get_client()
        with self._mapped():
            response = await client.post(
                self.url, content=_encode(body), timeout=httpx.Timeout(seconds)
            )
            response.raise_for_status()
        return self._decode(response.content)

    async def stream(
        self, body: dict[str, Any], seconds: float
    ) -> AsyncGenerator[dict[str, Any], None]:
        client = self._get_client()
        with self._mapped():
            async with client.stream(
                "POST", self.url, content=_encode(body), timeout=httpx.Timeout(seconds)
            ) as response:
                if not response.is_success:
                    await response.aread()  # the error body holds the provider's message
                    response.raise_for_status()
                async with aclosing(_sse_data(response.aiter_lines())) as events:
                    async for data in events:
                        if data.startswith("[DONE]"):
                            # Read to the end: HTTP/1.1 reuses only a finished connection.
                            async for _ in events:
                                pass
                            return
                        chunk = self._decode(data)
                        if chunk.get("error"):  # the provider failed after it had started
                            raise ProviderError(
                                clean_message(
                                    body_message(chunk) or "An error occurred during streaming",
                                    secret=self._api_key,
                                ),
                                provider=self.provider,
                            )
                        yield chunk

    def _decode(self, data: bytes | str) -> dict[str, Any]:
        try:
            value = json.loads(data)
        except ValueError as e:
            raise ProviderError(
                "the provider sent a response that is not JSON", provider=self.provider
            ) from e
        if not isinstance(value, dict):
            raise ProviderError("the provider's response is not an object", provider=self.provider)
        return value

    @contextmanager
    def _mapped(self) -> Iterator[None]:
        """Re-raise httpx's errors as ours, keeping status and Retry-After."""
        try:
            yield
        except httpx.HTTPStatusError as e:
            raise self._status_error(e.response) from e
        except httpx.TransportError as e:  # timeouts, refused, reset or dropped connections
            raise (
                transport_error(e, provider=self.provider)
                or ProviderConnectionError(clean_message(e), provider=self.provider)
            ) from e

    def _status_error(self, response: httpx.Response) -> ProviderError:
        try:
            message = body_message(json.loads(response.content))
        except ValueError:
            message = ""
        return error_for_status(
            response.status_code,
            clean_message(message or response.text, secret=self._api_key),
            provider=self.provider,
            retry_after=parse_retry_after(response.headers),
        )


def _encode(body: Mapping[str, Any]) -> bytes:
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()


async def _sse_data(lines: AsyncIterator[str]) -> AsyncGenerator[str, None]:
    """The ``data`` of each server-sent event, as the lines arrive.

    An event ends at a blank line; its ``data:`` lines are joined with newlines. Comments
    (``:``) and the fields Chat Completions does not use (``event:``, ``id:``) are skipped.
    """
    data: list[str] = []
    async for line in lines:
        if line.startswith("data:"):
            data.append(line[6:] if line.startswith("data: ") else line[5:])
        elif not line and data:
            yield "\n".join(data)
            data.clear()
    if data:  # the server closed without the last blank line
        yield "\n".join(data)
