"""massgen's own Chat Completions client: JSON and server-sent events over HTTP/1.1.

Importing the ``openai`` SDK costs about 0.9 s of CPU, more than a whole consensus run may
use, for a protocol of one endpoint. This client speaks that endpoint directly: one
keep-alive connection pool per backend, made on first use, no retries of its own (the retry
wrapper has the one budget), and every failure mapped to our errors where it enters.

The pool is :mod:`massgen.backends.http_pool` (asyncio streams; HTTP/1.1 spoken there): at a batch's
~200 requests in flight, httpx's pool costs several ms of CPU per request, this one a
fraction of that. A URL that the environment sends through a proxy (``HTTPS_PROXY``,
``HTTP_PROXY`` or ``ALL_PROXY``, in either case, and not excluded by ``NO_PROXY``) goes
through ``httpx`` instead, which speaks to proxies; both map failures to the same errors.
"""

from __future__ import annotations

import json
import os
import ssl
from collections.abc import AsyncGenerator, AsyncIterator, Iterator, Mapping
from contextlib import aclosing, contextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import httpx

from massgen import __version__
from massgen.backends import http_pool
from massgen.backends._common import tls_context
from massgen.backends._errors import (
    body_message,
    clean_message,
    error_for_status,
    error_in_body,
    parse_retry_after,
    transport_error,
)
from massgen.backends.openai import DONE
from massgen.errors import ProviderConnectionError, ProviderError, ProviderTimeout

_MAX_CONNECTIONS = 256
"""Per origin, for :mod:`~massgen.backends.http_pool`: above a batch's 64 tasks x 3 agents in
flight, yet a bound on the sockets a runaway caller can open."""

_POOL_ERRORS = (TimeoutError, http_pool.StatusError, http_pool.TransportError)
"""What the pool raises, mapped to our errors where it enters."""

_ENV_HEADERS = {"OPENAI_ORG_ID": "OpenAI-Organization", "OPENAI_PROJECT_ID": "OpenAI-Project"}
"""Read from the environment as the SDK reads them, so both clients send the same."""


class HTTPChatClient:
    """``POST {base_url}/chat/completions`` (or ``/responses``), plain or streamed, returning
    the provider's JSON.

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
        self.responses_url = base_url.rstrip("/") + "/responses"
        self.timeout = timeout
        self._api_key = api_key
        self._headers = {
            "Authorization": f"Bearer {api_key}",
            "Content-Type": "application/json",
            "Accept": "application/json",
            "User-Agent": f"massgen/{__version__}",
            **{name: os.environ[var] for var, name in _ENV_HEADERS.items() if os.environ.get(var)},
        }
        self._client: http_pool.Pool | httpx.AsyncClient | None = None

    def _get_client(self) -> http_pool.Pool | httpx.AsyncClient:
        if self._client is None:
            secure = self.url.startswith("https:")
            context = tls_context() if secure else None
            if http_pool.proxy_for(self.url) is None:
                self._client = http_pool.Pool(ssl_context=context, max_connections=_MAX_CONNECTIONS)
            else:
                self._client = self._proxied_client(context)
        return self._client

    def _proxied_client(self, context: ssl.SSLContext | None) -> httpx.AsyncClient:
        """An ``httpx`` client, which finds the proxy in the environment as we did.

        Imported only here: the ~70 ms httpx costs to load is paid only behind a proxy.
        """
        import httpx

        return httpx.AsyncClient(
            headers=self._headers,
            timeout=self.timeout,
            # Room for a batch's requests in flight, kept alive between rounds.
            limits=httpx.Limits(
                max_connections=128, max_keepalive_connections=64, keepalive_expiry=30.0
            ),
            verify=context or False,
        )

    async def aclose(self) -> None:
        """Close the connections; the next request (on any event loop) opens new ones."""
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    async def create(self, body: dict[str, Any], seconds: float) -> dict[str, Any]:
        return await self._post(self.url, body, seconds)

    def stream(self, body: dict[str, Any], seconds: float) -> AsyncGenerator[dict[str, Any], None]:
        return self._post_stream(self.url, body, seconds)

    async def respond(self, body: dict[str, Any], seconds: float) -> dict[str, Any]:
        """One Responses API request: the response object."""
        return await self._post(self.responses_url, body, seconds)

    def respond_stream(
        self, body: dict[str, Any], seconds: float
    ) -> AsyncGenerator[dict[str, Any], None]:
        """One streamed Responses API request: its event objects, to the end of the body."""
        return self._post_stream(self.responses_url, body, seconds)

    async def _post(self, url: str, body: dict[str, Any], seconds: float) -> dict[str, Any]:
        client = self._get_client()
        if not isinstance(client, http_pool.Pool):
            with self._mapped_httpx():
                response = await client.post(url, content=_encode(body), timeout=seconds)
                response.raise_for_status()
            return self._decode(response.content)
        try:
            status, headers, content = await client.fetch(
                "POST",
                url,
                headers=self._headers.items(),
                content=_encode(body),
                seconds=seconds,
            )
        except _POOL_ERRORS as e:  # as _mapped() does, without a context manager per call
            raise self._mapped_error(e) from e
        if not 200 <= status < 300:
            reply = http_pool.StatusError(status, headers, content)
            raise self._status_error(status, content, headers) from reply
        return self._decode(content)

    async def _post_stream(
        self, url: str, body: dict[str, Any], seconds: float
    ) -> AsyncGenerator[dict[str, Any], None]:
        client = self._get_client()
        if not isinstance(client, http_pool.Pool):
            with self._mapped_httpx():
                async with client.stream(
                    "POST", url, content=_encode(body), timeout=seconds
                ) as response:
                    if not response.is_success:
                        await response.aread()  # the error body holds the provider's message
                        response.raise_for_status()
                    async with aclosing(self._events(response.aiter_lines())) as events:
                        async for chunk in events:
                            yield chunk
            return
        with self._mapped():
            async with client.request(
                "POST",
                url,
                headers=self._headers.items(),
                content=_encode(body),
                seconds=seconds,
            ) as reply:
                await reply.raise_for_status()  # reads the body: the provider's message
                async with aclosing(self._events(reply.aiter_lines())) as events:
                    async for chunk in events:
                        yield chunk

    async def _events(self, lines: AsyncIterator[str]) -> AsyncGenerator[dict[str, Any], None]:
        """The stream's chunk objects, then :data:`~massgen.backends.openai.DONE` at
        ``[DONE]`` (Chat Completions; Responses sends none and ends with the body); the body
        is then read to its end.

        An error object in the stream (OpenRouter's ``{"error": {"code": 400, ...}}`` chunk,
        Groq's ``event: error``) is raised as the status it names says, as the SDK's
        client does (:func:`~massgen.backends._errors.error_in_body`).
        """
        async with aclosing(_sse_data(lines)) as events:
            async for data in events:
                if data.startswith("[DONE]"):
                    # Read to the end: HTTP/1.1 reuses only a finished connection.
                    async for _ in events:
                        pass
                    yield DONE
                    return
                chunk = self._decode(data)
                if chunk.get("error"):  # the provider failed after it had started
                    error = chunk["error"]
                    raise error_in_body(error, provider=self.provider, secret=self._api_key)
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
        """Re-raise the pool's errors as ours, keeping status and Retry-After."""
        try:
            yield
        except _POOL_ERRORS as e:
            raise self._mapped_error(e) from e

    def _mapped_error(self, e: Exception) -> ProviderError:
        """Ours for one of the pool's errors (:data:`_POOL_ERRORS`)."""
        if isinstance(e, http_pool.StatusError):
            return self._status_error(e.status, e.content, e.headers)
        if isinstance(e, http_pool.TransportError):  # refused, reset or dropped connections
            detail = clean_message(e, secret=self._api_key) or type(e).__name__
            return ProviderConnectionError(f"connection failed: {detail}", provider=self.provider)
        # A timeout: connecting, reading, writing or waiting for a free connection.
        return ProviderTimeout("request timed out", provider=self.provider)

    @contextmanager
    def _mapped_httpx(self) -> Iterator[None]:
        """Re-raise httpx's errors as ours, as :meth:`_mapped` does the pool's."""
        import httpx

        try:
            yield
        except httpx.HTTPStatusError as e:
            response = e.response
            raise self._status_error(
                response.status_code, response.content, response.headers
            ) from e
        except httpx.TransportError as e:  # timeouts, refused, reset or dropped connections
            raise (
                transport_error(e, provider=self.provider)
                or ProviderConnectionError(clean_message(e), provider=self.provider)
            ) from e

    def _status_error(
        self, status: int, content: bytes, headers: Mapping[str, str]
    ) -> ProviderError:
        try:
            message = body_message(json.loads(content))
        except ValueError:
            message = ""
        return error_for_status(
            status,
            clean_message(message or content.decode("utf-8", "replace"), secret=self._api_key),
            provider=self.provider,
            retry_after=parse_retry_after(headers),
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
