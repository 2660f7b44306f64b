"""``api_call``: one HTTP request to a public API, guarded against SSRF: every hop passes
:func:`check_url` and goes to the checked address (docs/tools.md, ``api_call``)."""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import Field, SecretStr

from massgen.errors import ToolError
from massgen.tools.base import BuiltinTool, ToolSettings

if TYPE_CHECKING:
    import httpx

Method = Literal["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"]

# The model's own headers that never follow a redirect to another origin.
_CREDENTIALS = {"authorization", "proxy-authorization", "cookie"}
_BANNED = {"host", "connection", "content-length", "transfer-encoding", "upgrade", "te"}
_BANNED |= {"proxy-authorization", "trailer", "keep-alive"}


class HttpSettings(ToolSettings):
    allow_hosts: list[str] | None = None  # ``api.example.com``, ``*.example.com``; None: any
    methods: list[Method] = ["GET", "HEAD", "POST"]  # pydantic copies mutable defaults
    headers: dict[str, SecretStr] = Field(default_factory=dict)  # never shown or logged
    max_bytes: int = Field(default=100_000, gt=0)  # of the response body
    time_limit: float = Field(default=15.0, gt=0)  # the whole exchange, redirects included
    max_redirects: int = Field(default=3, ge=0, le=10)


class APICall(BuiltinTool[HttpSettings]):
    """Call an HTTP(S) API on the public internet and get the status, content type and body.
    Give the full URL; send JSON with `body`."""

    name = "api_call"

    def __init__(
        self,
        settings: HttpSettings | None = None,
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
        secrets = {k: v.get_secret_value() for k, v in s.headers.items()}
        origin: tuple[str, str, int] | None = None
        try:
            async with asyncio.timeout(s.time_limit), client(s.time_limit, self.transport) as c:
                for _ in range(s.max_redirects + 1):  # followed by hand, each one re-checked
                    try:
                        parsed = httpx.URL(url)
                    except httpx.InvalidURL as e:
                        raise ToolError(f"bad URL: {e}") from None
                    if parsed.userinfo:
                        raise ToolError("refused URL: credentials in URLs are not allowed")
                    t = await check_url(
                        parsed.scheme, parsed.host, parsed.port, s.allow_hosts, self.resolver
                    )
                    if origin is None:
                        origin = (t.scheme, t.host, t.port)
                    elif (t.scheme, t.host, t.port) != origin:
                        # Another origin: it gets no credential, now or later in the chain.
                        secrets = {}
                        extra = {k: v for k, v in extra.items() if k.lower() not in _CREDENTIALS}
                    # To the checked address; the name kept in Host and SNI.
                    default_port = 443 if t.scheme == "https" else 80
                    host = t.host if t.port == default_port else f"{t.host}:{t.port}"
                    response, data = await fetch(
                        c,
                        method,
                        parsed.copy_with(host=t.address, port=t.port),
                        s.max_bytes,
                        headers={**extra, **secrets, "Host": host},
                        json=body,
                        extensions={"sni_hostname": t.host} if t.scheme == "https" else {},
                    )
                    location = response.headers.get("location")
                    if response.status_code not in (301, 302, 303, 307, 308) or not location:
                        return render_response(response, data, s.max_bytes)
                    try:
                        url = str(parsed.join(location))
                    except httpx.InvalidURL as e:
                        raise ToolError(f"bad redirect URL: {e}") from None
                    if response.status_code == 303 or (
                        response.status_code in (301, 302) and method == "POST"
                    ):
                        method, body = "GET", None
                raise ToolError(f"more than {s.max_redirects} redirects")
        except TimeoutError:
            raise ToolError(f"took longer than {s.time_limit:g}s") from None


def client(
    time_limit: float, transport: httpx.AsyncBaseTransport | None = None, trust_env: bool = False
) -> httpx.AsyncClient:
    """A client that follows no redirect (TLS from the system store, loaded once)."""
    import httpx

    from massgen.backends._common import tls_context

    return httpx.AsyncClient(
        transport=transport,
        timeout=time_limit,
        trust_env=trust_env,
        follow_redirects=False,
        verify=tls_context(),
    )


async def fetch(
    client: httpx.AsyncClient, method: str, url: str | httpx.URL, limit: int, **options: Any
) -> tuple[httpx.Response, bytes]:
    """One request, its body read raw (uncompressed: a compressed answer could grow a
    thousandfold in one chunk) up to just past ``limit`` bytes."""
    import httpx

    headers = {**options.pop("headers", {}), "Accept-Encoding": "identity"}
    data = bytearray()
    try:
        async with client.stream(method, url, headers=headers, **options) as response:
            async for chunk in response.aiter_raw():
                data += chunk
                if len(data) > limit:
                    break
    except httpx.TimeoutException:
        raise ToolError("the request timed out") from None
    except httpx.HTTPError as e:
        raise ToolError(f"the request failed: {type(e).__name__}: {e}") from None
    return response, bytes(data)


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


# -- is this destination safe to reach from here? ------------------------------------------
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Awaitable[list[str]]]

_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)")
_NUMERIC_LABEL = re.compile(r"(0x[0-9a-f]*|[0-9]+)")


@dataclass(frozen=True, slots=True)
class Target:
    """A checked destination: connect to ``address``, say ``host`` in Host and SNI."""

    scheme: str
    host: str
    port: int
    address: str


async def system_resolver(host: str, port: int) -> list[str]:
    """Every address the OS resolver gives for ``host``."""
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as e:
        raise ToolError(f"cannot resolve {host!r}: {e.strerror}") from None
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def unwrap(ip: IPAddress) -> IPAddress:
    """The IPv4 address an IPv6 one carries (mapped, 6to4, Teredo, NAT64), else ``ip``."""
    if not isinstance(ip, ipaddress.IPv6Address):
        return ip
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return ip.ipv4_mapped or ip.sixtofour or (ip.teredo[1] if ip.teredo else ip)


def is_public(ip: IPAddress) -> bool:
    """Whether ``ip``, and the IPv4 address it may carry, are both plainly global."""
    kinds = ("private", "loopback", "link_local", "multicast", "reserved", "unspecified")
    return all(
        c.is_global and not any(getattr(c, f"is_{k}") for k in kinds) for c in {ip, unwrap(ip)}
    )


def literal_ip(host: str) -> IPAddress | None:
    """``host`` as an IP if it is a canonical literal; refuse disguised numeric forms."""
    bare = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        return ipaddress.ip_address(bare.split("%")[0])
    except ValueError:
        pass
    labels = bare.rstrip(".").split(".")
    if any(_NUMERIC_LABEL.fullmatch(label) for label in labels[-1:]):
        # 2130706433, 0x7f.1, 127.1, 0177.0.0.1: the OS would read these as addresses.
        raise ToolError(f"refused host {host!r}: numeric host forms other than a dotted quad")
    return None


async def check_url(
    scheme: str,
    host: str,
    port: int | None,
    allow_hosts: Sequence[str] | None = None,
    resolver: Resolver = system_resolver,
) -> Target:
    """Check a destination and pick the address to connect to; :class:`ToolError` if not."""
    if scheme not in ("http", "https"):
        raise ToolError(f"refused scheme {scheme!r}: only http and https")
    port = port or (443 if scheme == "https" else 80)
    ip = literal_ip(host)
    name = str(ip) if ip is not None else host.lower().rstrip(".")
    if ip is None and not (len(name) <= 253 and all(map(_LABEL.fullmatch, name.split(".")))):
        raise ToolError(f"refused host {name!r}: not a valid host name")
    patterns = [p.lower().rstrip(".") for p in allow_hosts or ()]
    if allow_hosts is not None and not any(
        name.endswith(p[1:]) if p.startswith("*.") else name == p for p in patterns
    ):
        raise ToolError(f"refused host {name!r}: not in the allowed hosts")
    if ip is not None:
        addresses = [ip]
    else:
        addresses = []
        for raw in await resolver(name, port):
            try:
                addresses.append(ipaddress.ip_address(raw.split("%")[0]))
            except ValueError:
                raise ToolError(f"refused host {name!r}: resolved to a non-address") from None
        if not addresses:
            raise ToolError(f"cannot resolve {name!r}")
    for address in addresses:
        if not is_public(address):
            raise ToolError(f"refused host {name!r}: it resolves to a non-public address")
    return Target(scheme, name, port, str(addresses[0]))
