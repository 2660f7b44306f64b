"""The two clients that send OpenAI-compatible bodies: massgen's own on aiohttp (the default:
the SDK costs ~0.9 s of CPU to import, httpx several ms per request at ~200 in flight,
encode/httpcore#1035), sharing one session per event loop, and the ``openai`` SDK's."""

from __future__ import annotations

import asyncio
import base64
import codecs
import functools
import json
import logging
import os
import re
import urllib.request
import weakref
from collections.abc import AsyncGenerator
from contextlib import aclosing
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit, urlunsplit

from massgen import __version__
from massgen.backends._common import sdk_client, tls_context
from massgen.backends._errors import (
    body_message,
    clean_message,
    error_for_status,
    error_in_body,
    parse_retry_after,
    sdk_errors,
)
from massgen.backends.openai import DONE, RESPONSES
from massgen.errors import ProviderConnectionError, ProviderError, ProviderTimeout
from massgen.redact import redact_url

if TYPE_CHECKING:  # imported at the first request: a run the cache answers never loads it
    import aiohttp

_PER_HOST = 1024  # connections per host: above serve's 200 runs x 3 agents at once, yet a bound
# Read from the environment as the SDK reads them, so both clients send the same.
_ENV_HEADERS = {"OPENAI_ORG_ID": "OpenAI-Organization", "OPENAI_PROJECT_ID": "OpenAI-Project"}
_LINE_BREAK = re.compile(r"\r\n|\r|\n")
# One encoder for every body: ``json.dumps`` with options builds a new one per call.
_ENCODE = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


@dataclass(slots=True)
class _Shared:  # per event loop (_SHARED): its session, who uses it, what closes it
    session: aiohttp.ClientSession
    closer: AsyncGenerator[None, None]
    users: int = 0


_SHARED: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Shared] = weakref.WeakKeyDictionary()


async def _close_at_shutdown(session: aiohttp.ClientSession) -> AsyncGenerator[None, None]:
    """Left suspended at its ``yield``: the loop's ``shutdown_asyncgens()`` (``asyncio.run``
    calls it) closes the session of a client nobody closed."""
    try:
        yield
    finally:
        await session.close()


async def acquire_session() -> aiohttp.ClientSession:
    """The process's one aiohttp session on this loop (backends, the OTLP exporter), counted."""
    loop = asyncio.get_running_loop()
    shared = _SHARED.get(loop)
    if shared is None or shared.session.closed:
        import aiohttp

        session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, limit_per_host=_PER_HOST, keepalive_timeout=30),
            cookie_jar=aiohttp.DummyCookieJar(),  # backends must not share a provider's cookies
        )
        closer = _close_at_shutdown(session)
        await anext(closer)
        shared = _SHARED[loop] = _Shared(session, closer)
    shared.users += 1
    return shared.session


async def release_session(session: aiohttp.ClientSession) -> None:
    loop = asyncio.get_running_loop()
    shared = _SHARED.get(loop)
    if shared is not None and shared.session is session:
        shared.users -= 1
        if shared.users <= 0:
            del _SHARED[loop]
            await shared.closer.aclose()


@functools.lru_cache(maxsize=32)
def _timeout(seconds: float) -> aiohttp.ClientTimeout:
    """``seconds`` for each step, as httpx counts: a stream that keeps sending is not cut."""
    import aiohttp

    return aiohttp.ClientTimeout(total=None, connect=seconds, sock_read=seconds)


def _client_errors() -> tuple[type[BaseException], ...]:  # evaluated once something raised
    import aiohttp

    return (aiohttp.ClientError, TimeoutError)


def proxy_for(url: str) -> str | None:
    """The proxy ``HTTP(S)_PROXY`` (else ``ALL_PROXY``, as curl and httpx read it) names for
    ``url`` unless ``NO_PROXY`` excludes it, read once per client (aiohttp's ``trust_env``
    reads it and ``~/.netrc`` in a thread per request). This client speaks to HTTP proxies:
    a SOCKS one is said once, and requests go direct."""
    proxies, parts = urllib.request.getproxies_environment(), urlsplit(url)
    bypass = urllib.request.proxy_bypass_environment  # type: ignore[attr-defined]
    proxy = str(proxies.get(parts.scheme) or proxies.get("all") or "")
    if not proxy or bypass(parts.hostname or "", proxies):
        return None
    if "://" not in proxy:
        proxy = "http://" + proxy  # as curl takes `host:port`
    if not proxy.startswith(("http://", "https://")):
        _unused_proxy(redact_url(proxy))
        return None
    return proxy


@functools.cache
def _unused_proxy(shown: str) -> None:
    logging.getLogger("massgen.http").warning(
        "the proxy %s is not used: massgen's HTTP client speaks to http:// proxies only"
        " (set HTTPS_PROXY to one); requests go direct",
        shown,
    )


def userinfo_auth(url: str) -> tuple[str, str | None]:
    """``url`` without its ``user:password@``, and the Basic ``Authorization`` that stands for
    them, sent in place of the key as httpx (so the SDK) sends it; aiohttp refuses both."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url, None
    bare = urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))
    if not (parts.username or parts.password):
        return bare, None
    pair = f"{unquote(parts.username or '')}:{unquote(parts.password or '')}"
    return bare, "Basic " + base64.b64encode(pair.encode()).decode()


class HTTPChatClient:
    """``POST {base_url}/{api}``, plain or streamed, returning the provider's JSON."""

    def __init__(self, *, provider: str, api_key: str, base_url: str, timeout: float) -> None:
        base_url, basic = userinfo_auth(base_url)
        self.provider, self.base_url, self.timeout = provider, base_url.rstrip("/"), timeout
        self._api_key = api_key
        self._headers = {
            "Authorization": basic or f"Bearer {api_key}",
            "Content-Type": "application/json",
            "Accept": "application/json",
            "User-Agent": f"massgen/{__version__}",
            **{name: os.environ[var] for var, name in _ENV_HEADERS.items() if os.environ.get(var)},
        }
        self._client: aiohttp.ClientSession | None = None
        self._options: dict[str, Any] = {}

    async def _session(self) -> aiohttp.ClientSession:
        if self._client is None or self._client.closed:
            if not self._options:
                self._options = self._request_options()
            self._client = await acquire_session()
        return self._client

    def _request_options(self) -> dict[str, Any]:
        options: dict[str, Any] = {"allow_redirects": False}
        if self.base_url.startswith("https:"):
            options["ssl"] = tls_context()
        if proxy := proxy_for(self.base_url):
            options["proxy"] = proxy
        return options

    async def aclose(self) -> None:
        """Let go of the shared session (closed with its last user)."""
        client, self._client = self._client, None
        if client is not None:
            await release_session(client)

    def _post(
        self, session: aiohttp.ClientSession, api: str, body: dict[str, Any], seconds: float
    ) -> Any:
        return session.post(
            f"{self.base_url}/{api}",
            data=_ENCODE(body).encode(),
            headers=self._headers,
            timeout=_timeout(seconds),
            **self._options,
        )

    async def request(self, api: str, body: dict[str, Any], seconds: float) -> dict[str, Any]:
        session = await self._session()
        try:
            async with self._post(session, api, body, seconds) as response:
                content = await response.read()
                if not 200 <= response.status < 300:
                    raise self._status_error(response, content)
        except _client_errors() as e:
            raise self._mapped(e) from e
        return self._decode(content)

    async def stream(
        self, api: str, body: dict[str, Any], seconds: float
    ) -> AsyncGenerator[dict[str, Any], None]:
        """Its event objects, then :data:`~massgen.backends.openai.DONE` at ``data: [DONE]``."""
        session = await self._session()
        try:
            async with self._post(session, api, body, seconds) as response:
                if not 200 <= response.status < 300:
                    raise self._status_error(response, await response.read())
                async with aclosing(_sse_data(response.content)) as events:
                    async for data in events:
                        if data.startswith("[DONE]"):
                            async for _ in events:  # to the end: the connection is reused
                                pass
                            yield DONE
                            return
                        chunk = self._decode(data)
                        if chunk.get("error"):  # the provider failed after it had started
                            raise error_in_body(
                                chunk["error"], provider=self.provider, secret=self._api_key
                            )
                        yield chunk
        except _client_errors() as e:
            raise self._mapped(e) from e

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

    def _mapped(self, e: BaseException) -> ProviderError:
        if isinstance(e, TimeoutError):  # a free connection, connecting, or the next bytes
            return ProviderTimeout("request timed out", provider=self.provider)
        detail = clean_message(e, secret=self._api_key) or type(e).__name__
        if isinstance(getattr(e, "os_error", None), ConnectionRefusedError):  # nobody listens
            detail = f"{getattr(e, 'host', '?')}:{getattr(e, 'port', '?')} refused it: "
            detail += "is the server running?"
        return ProviderConnectionError(f"connection failed: {detail}", provider=self.provider)

    def _status_error(self, response: aiohttp.ClientResponse, content: bytes) -> ProviderError:
        try:
            message = body_message(json.loads(content))
        except ValueError:
            message = ""
        words = clean_message(message or content.decode("utf-8", "replace"), secret=self._api_key)
        wait = parse_retry_after(response.headers)
        error = error_for_status(response.status, words, provider=self.provider, retry_after=wait)
        import aiohttp

        error.__cause__ = aiohttp.ClientResponseError(
            response.request_info, response.history, status=response.status
        )
        return error


async def _sse_data(body: aiohttp.StreamReader) -> AsyncGenerator[str, None]:
    """The ``data`` of each server-sent event as soon as its blank line arrives."""
    decoder = codecs.getincrementaldecoder("utf-8")("replace")
    data: list[str] = []
    rest = ""
    ended = False
    while not ended:
        piece = await body.readany()
        ended = not piece
        text = rest + decoder.decode(piece, final=ended)
        keep = text.endswith("\r") and not ended  # maybe the first half of a CRLF
        lines = _LINE_BREAK.split(text[:-1] if keep else text)
        rest = "" if ended else lines.pop() + ("\r" if keep else "")
        for line in lines:
            if line.startswith("data:"):
                data.append(line[6:] if line.startswith("data: ") else line[5:])
            elif not line and data:
                yield "\n".join(data)
                data.clear()
    if data:  # the server closed without the last blank line
        yield "\n".join(data)


class SDKChatClient:
    """``client: sdk``: the ``openai`` package sends the body; its answers come back as dicts."""

    def __init__(self, *, provider: str, api_key: str, base_url: str, timeout: float) -> None:
        import openai

        self.sdk, self.provider, self.base_url, self.timeout = openai, provider, base_url, timeout
        self._api_key = api_key
        self._client: Any = None

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.close()

    async def _create(self, api: str, body: dict[str, Any], seconds: float) -> Any:
        """The body as the SDK's arguments and ``extra_body``: sent as the HTTP client would."""
        if self._client is None:
            kind, sdk = self.sdk.AsyncOpenAI, self.sdk
            self._client = sdk_client(sdk, kind, self._api_key, self.base_url, self.timeout)
        client, rest = self._client, dict(body)
        key = "input" if api == RESPONSES else "messages"
        args = {"model": rest.pop("model"), key: rest.pop(key), "timeout": seconds}
        if rest.pop("stream", False):
            args["stream"] = True
        endpoint: Any = client.responses if api == RESPONSES else client.chat.completions
        return await endpoint.create(**args, extra_body=rest or None)

    async def request(self, api: str, body: dict[str, Any], seconds: float) -> dict[str, Any]:
        with sdk_errors(self.sdk, provider=self.provider, secret=self._api_key):
            response = await self._create(api, body, seconds)
        return response.to_dict(warnings=False)

    async def stream(
        self, api: str, body: dict[str, Any], seconds: float
    ) -> AsyncGenerator[dict[str, Any], None]:
        with sdk_errors(self.sdk, provider=self.provider, secret=self._api_key):
            async with await self._create(api, body, seconds) as stream:
                async for chunk in stream:
                    yield chunk.to_dict(warnings=False)
        # The SDK ends a Chat Completions stream at `[DONE]` (or at a body that ends cleanly;
        # one cut short raises): to it, and so to us, the stream is complete.
        if api != RESPONSES:
            yield DONE
