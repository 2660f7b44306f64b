"""``api_call``: one HTTP request to a public API, with the answer cut to size.

The URL comes from a model that may have read hostile text (server-side request forgery):
every destination, the first and each redirect's, passes :func:`~massgen.tools.netcheck.
check_url`, and the request goes to the checked address itself (the name kept in ``Host``
and SNI), so DNS cannot change between check and connect. Redirects are followed by hand,
at most ``max_redirects``; environment proxies are ignored; the body is capped at
``max_bytes`` and the whole exchange at ``time_limit`` (one deadline, so a server dripping
bytes cannot stretch it). Headers from the settings (API keys, never shown to the model) go
only to the first URL's origin: once a redirect leaves it, they and the model's own
``Authorization``, ``Cookie`` and ``Proxy-Authorization`` are dropped, as browsers do.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import Field, SecretStr

from massgen.errors import ToolError
from massgen.tools.base import BuiltinTool, ToolSettings
from massgen.tools.netcheck import Resolver, check_url, system_resolver

if TYPE_CHECKING:
    import httpx

Method = Literal["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"]

_DEFAULT_METHODS: tuple[Method, ...] = ("GET", "HEAD", "POST")

_CREDENTIALS = frozenset({"authorization", "proxy-authorization", "cookie"})
"""Headers of the model's own that never follow a redirect to another origin."""

_BANNED = frozenset(
    [
        *("host", "connection", "content-length", "transfer-encoding", "upgrade", "te"),
        *("proxy-authorization", "trailer", "keep-alive"),
    ]
)


class HttpSettings(ToolSettings):
    allow_hosts: list[str] | None = None
    """Hosts that may be called (``api.example.com`` or ``*.example.com``); none: any
    public host."""
    methods: list[Method] = Field(default_factory=lambda: list(_DEFAULT_METHODS))
    """Methods the model may use."""
    headers: dict[str, SecretStr] = Field(default_factory=dict)
    """Headers sent with every request (e.g. ``Authorization: Bearer ${API_KEY}``); kept
    secret: never shown to the model, in reprs or in logs."""
    max_bytes: int = Field(default=100_000, gt=0)
    """Bytes of the response body read at most."""
    time_limit: float = Field(default=15.0, gt=0)
    """Seconds the whole exchange may take, redirects included."""
    max_redirects: int = Field(default=3, ge=0, le=10)
    """Redirects followed at most (each one re-checked)."""


class APICall(BuiltinTool):
    """Call an HTTP(S) API on the public internet and get the status, content type and body.
    Give the full URL; send JSON with `body`."""

    name = "api_call"
    Settings = HttpSettings
    settings: HttpSettings

    def __init__(
        self,
        settings: ToolSettings | None = None,
        *,
        resolver: Resolver | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        **options: Any,
    ) -> None:
        # ``resolver``/``transport`` are for tests and embedding; they are not config keys.
        self.resolver = resolver or system_resolver
        self.transport = transport
        super().__init__(settings, **options)

    async def execute(
        self,
        url: Annotated[str, Field(description="full http(s) URL")],
        method: Annotated[str, Field(description="GET, POST, ...")] = "GET",
        headers: dict[str, str] | None = None,
        body: Annotated[Any, Field(description="JSON body to send")] = None,
    ) -> str:
        import httpx

        s, method = self.settings, method.upper()
        if method not in s.methods:
            raise ToolError(f"method {method} not allowed; allowed: {s.methods}")
        own = {k.lower() for k in s.headers}  # the settings' headers win
        extra = {k: v for k, v in (headers or {}).items() if k.lower() not in _BANNED | own}
        # The process's one TLS context: loading a CA store per client blocks for tens of ms.
        from massgen.backends._common import tls_context

        client = httpx.AsyncClient(
            transport=self.transport, trust_env=False, follow_redirects=False, verify=tls_context()
        )
        started, origin = time.monotonic(), _origin(url)
        secrets = {k: v.get_secret_value() for k, v in s.headers.items()}
        try:
            async with asyncio.timeout(s.time_limit), client:
                for _ in range(s.max_redirects + 1):  # followed by hand, each one re-checked
                    left = s.time_limit - (time.monotonic() - started)
                    if left <= 0:
                        raise TimeoutError
                    response, data = await self._send(
                        client, method, url, {**extra, **secrets}, body, left
                    )
                    location = response.headers.get("location")
                    if response.status_code not in (301, 302, 303, 307, 308) or not location:
                        return render_response(response, data, s.max_bytes)
                    try:
                        url = str(httpx.URL(url).join(location))
                    except httpx.InvalidURL as e:
                        raise ToolError(f"bad redirect URL: {e}") from None
                    if _origin(url) != origin:
                        # Another origin: it gets no credential, now or later in the chain.
                        secrets = {}
                        extra = {k: v for k, v in extra.items() if k.lower() not in _CREDENTIALS}
                    if response.status_code == 303 or (
                        response.status_code in (301, 302) and method == "POST"
                    ):
                        method, body = "GET", None
                raise ToolError(f"more than {s.max_redirects} redirects")
        except TimeoutError:
            raise ToolError(f"took longer than {s.time_limit:g}s") from None

    async def _send(
        self,
        client: httpx.AsyncClient,
        method: str,
        url: str,
        headers: dict[str, str],
        body: Any,
        left: float,
    ) -> tuple[httpx.Response, bytes]:
        import httpx

        try:
            parsed = httpx.URL(url)
        except httpx.InvalidURL as e:
            raise ToolError(f"bad URL: {e}") from None
        if parsed.userinfo:
            raise ToolError("refused URL: credentials in URLs are not allowed")
        check = check_url(
            parsed.scheme,
            parsed.host,
            parsed.port,
            allow_hosts=self.settings.allow_hosts,
            resolver=self.resolver,
        )
        try:
            target = await asyncio.wait_for(check, left)
        except TimeoutError:
            raise ToolError("resolving the host timed out") from None
        default_port = 443 if target.scheme == "https" else 80
        host = target.host if target.port == default_port else f"{target.host}:{target.port}"
        request = client.build_request(
            method,
            parsed.copy_with(host=target.address, port=target.port),  # the checked address
            headers={**headers, "Host": host, "Accept-Encoding": "identity"},
            json=body,
            timeout=left,
            extensions={"sni_hostname": target.host} if target.scheme == "https" else {},
        )
        try:
            response = await client.send(request, stream=True)
            try:
                data = bytearray()
                async for chunk in response.aiter_raw():
                    data += chunk
                    if len(data) > self.settings.max_bytes:
                        break
            finally:
                await response.aclose()
        except httpx.TimeoutException:
            raise ToolError("the request timed out") from None
        except httpx.HTTPError as e:
            raise ToolError(f"request failed: {type(e).__name__}: {e}") from None
        return response, bytes(data)


def _origin(url: str) -> tuple[str, str, int | None] | None:
    """Scheme, host and port (the default one filled in) of ``url``; ``None`` if unparsable."""
    import httpx

    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL:
        return None
    default = {"http": 80, "https": 443}.get(parsed.scheme)
    return parsed.scheme, parsed.host.lower().rstrip("."), parsed.port or default


def render_response(response: httpx.Response, data: bytes, limit: int) -> str:
    """Status, content type and the body as text (cut at ``limit`` bytes)."""
    kind = response.headers.get("content-type", "")
    head = f"HTTP {response.status_code} {response.reason_phrase}\ncontent-type: {kind}\n\n"
    cut = len(data) > limit
    data = data[:limit]
    if response.headers.get("content-encoding", "identity") not in ("identity", ""):
        return head + f"[{len(data)} bytes, {response.headers['content-encoding']}-encoded]"
    if kind and not any(t in kind for t in ("text", "json", "xml", "javascript", "html")):
        return head + f"[{len(data)} bytes of {kind}]"
    text = data.decode(response.charset_encoding or "utf-8", errors="replace")
    return head + text + (f"\n[... cut at {limit} bytes]" if cut else "")
