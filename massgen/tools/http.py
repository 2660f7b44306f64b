"""The tools that call out over HTTP: ``api_call``, one request to a public API guarded against
SSRF (every hop passes :func:`check_url` and goes to the checked address), and
``web_search``, the provider's own search or a search API (docs/tools.md)."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import re
import socket
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, model_validator

from massgen.backends.base import Backend, innermost
from massgen.errors import ConfigError, ToolError
from massgen.tools.base import BuiltinTool, ToolSettings
from massgen.tools.context import ToolContext
from massgen.types import CompletionRequest, NativeTool

if TYPE_CHECKING:
    import httpx

    from massgen.tools.runner import ToolBox

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
                    origin = origin or (t.scheme, t.host, t.port)
                    if (t.scheme, t.host, t.port) != origin:
                        # Another origin: it gets no credential, now or later in the chain.
                        secrets = {}
                        extra = {k: v for k, v in extra.items() if k.lower() not in _CREDENTIALS}
                    # To the checked address; the name kept in Host and SNI.
                    host = f"{t.host}:{t.port}" if parsed.port else t.host  # None: the default
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
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
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
    if _NUMERIC_LABEL.fullmatch(bare.rstrip(".").rsplit(".", 1)[-1]):
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
    found = [name] if ip is not None else await resolver(name, port)
    try:
        addresses = [ipaddress.ip_address(raw.split("%")[0]) for raw in found]
    except ValueError:
        raise ToolError(f"refused host {name!r}: resolved to a non-address") from None
    if not addresses:
        raise ToolError(f"cannot resolve {name!r}")
    if not all(map(is_public, addresses)):
        raise ToolError(f"refused host {name!r}: it resolves to a non-public address")
    return Target(scheme, name, port, str(addresses[0]))


# -- web_search ---------------------------------------------------------------------------
DEFAULT_URLS = {
    "brave": "https://api.search.brave.com/res/v1/web/search",
    "tavily": "https://api.tavily.com/search",
}


class WebSearchSettings(ToolSettings):
    mode: Literal["auto", "native", "api"] = "auto"  # auto: native where offered, else API
    provider: Literal["searxng", "brave", "tavily"] = "searxng"  # the API ``url`` speaks
    url: str | None = None  # required for searxng; the others default to their public API
    api_key: SecretStr | None = None  # for brave/tavily; never shown or logged
    max_results: int = Field(default=5, ge=1, le=50)
    max_snippet: int = Field(default=300, gt=0)  # characters kept of each snippet
    time_limit: float = Field(default=10.0, gt=0)  # one search in all, every byte included
    max_bytes: int = Field(default=2_000_000, gt=0)  # more is an error (cut JSON won't parse)
    max_uses: int | None = Field(default=None, ge=1)  # native searches per request (Anthropic)
    allowed_domains: tuple[str, ...] = ()  # only these (and their subdomains)
    blocked_domains: tuple[str, ...] = ()  # never these (and their subdomains)

    @model_validator(mode="after")
    def _one_domain_list(self) -> WebSearchSettings:
        if self.allowed_domains and self.blocked_domains:
            raise ValueError("set allowed_domains or blocked_domains, not both")
        return self


class WebSearch(BuiltinTool[WebSearchSettings]):
    """Search the web; returns titles, URLs and snippets of the top results."""

    @classmethod
    def plan_turn(
        cls, backend: Backend, request: CompletionRequest, tools: ToolBox, ctx: ToolContext
    ) -> tuple[Backend, CompletionRequest]:
        """Swap ``web_search`` tools for the provider's own search where their mode says so."""
        searches = [t for t in tools.tools.values() if isinstance(t, WebSearch)]
        model = request.model or backend.model or None
        others = len(request.tools) > len(searches)
        chosen = {
            t.name: t.check_backend(backend, model=model, with_functions=others) for t in searches
        }
        native = {name: tool for name, tool in chosen.items() if tool is not None}
        if not native:
            return backend, request
        if len(native) > 1:
            raise ConfigError("only one web_search tool may search natively", key="mode")
        specs = tuple(t for t in request.tools if t.name not in native)
        return backend, replace(
            request,
            tools=specs,
            tool_choice=request.tool_choice if specs else None,
            native_tools=(*request.native_tools, *native.values()),
        )

    def setup(self) -> None:
        s = self.settings
        self.url: str | None = None
        url = s.url or DEFAULT_URLS.get(s.provider)
        if url and not url.startswith(("http://", "https://")):
            raise ConfigError("must be an http(s) URL", key="url")
        if s.mode != "api" and (not url or (s.provider != "searxng" and s.api_key is None)):
            return  # no search API: native only
        if not url:
            raise ConfigError("a searxng search needs `url:`", key="url")
        if s.provider != "searxng" and s.api_key is None:
            raise ConfigError(f"{s.provider} needs an API key", key="api_key")
        self.url = url.rstrip("/")

    def check_backend(
        self, backend: Backend, *, model: str | None = None, with_functions: bool = False
    ) -> NativeTool | None:
        """The provider-side search to declare on ``backend``, or ``None`` to call the search
        API; :class:`ConfigError` when the mode cannot be served."""
        s, real = self.settings, innermost(backend)
        native = NativeTool("web_search", s.max_uses, s.allowed_domains, s.blocked_domains)
        if s.mode == "api":
            return None
        if real.supports_native(native, model=model, with_functions=with_functions):
            return native
        where = real.describe() + (f" (model {model})" if model else "")
        if s.mode == "native":
            beside = " next to other tools" if with_functions and real.native_tools else ""
            message = f"`{self.name}` wants the provider's own search, but {where} has none{beside}"
            hint = "use mode: auto or api with a search API; native search exists on anthropic, "
            hint += "google, openai and xai (which models and domain filters: docs/tools.md)"
            raise ConfigError(message, key="mode", hint=hint)
        if self.url is None:
            message = f"`{self.name}` cannot search: {where} has no provider-side search "
            message += "and no search API is configured"
            hint = "set `url:` (SearXNG) or `provider:` brave/tavily with `api_key:` under "
            hint += f"tools.{self.name}, or give the agent a backend with native search"
            raise ConfigError(message, key="provider", hint=hint)
        return None

    async def execute(
        self,
        query: Annotated[str, Field(min_length=1, max_length=400, description="search terms")],
        max_results: Annotated[int | None, Field(ge=1, le=50)] = None,
    ) -> str:
        s, url = self.settings, self.url
        if url is None:
            raise ToolError("no search API is configured: search runs on the provider's side")
        count = min(max_results or s.max_results, s.max_results)
        key = s.api_key.get_secret_value() if s.api_key is not None else ""
        method, target = "GET", url + "/search"
        request: dict[str, Any] = {"params": {"q": query, "format": "json"}}
        if s.provider == "brave":
            target = url
            request = {"params": {"q": query, "count": count}}
            request["headers"] = {"X-Subscription-Token": key, "Accept": "application/json"}
        elif s.provider == "tavily":
            method, target = "POST", url
            request = {"json": {"query": query, "max_results": count}}
            request["headers"] = {"Authorization": f"Bearer {key}"}
        try:
            async with asyncio.timeout(s.time_limit), client(s.time_limit, trust_env=True) as c:
                response, raw = await fetch(c, method, target, s.max_bytes, **request)
        except TimeoutError:
            raise ToolError(f"the search took longer than {s.time_limit:g}s") from None
        if response.status_code != 200:
            raise ToolError(f"the search API answered HTTP {response.status_code}")
        if response.headers.get("content-encoding", "identity") not in ("identity", ""):
            raise ToolError("the search API answered compressed, though asked not to")
        if len(raw) > s.max_bytes:
            raise ToolError(f"the search API answered more than {s.max_bytes} bytes")
        try:
            data = json.loads(raw)
        except ValueError:
            raise ToolError("the search API did not answer JSON") from None
        if not isinstance(data, dict):
            raise ToolError("unexpected answer from the search API")
        if s.provider == "brave":
            web = data.get("web")
            items, snippet = web.get("results") if isinstance(web, dict) else None, "description"
        else:
            items, snippet = data.get("results"), "content"
        lines: list[str] = []
        for item in items if isinstance(items, list) else []:
            if not (isinstance(item, dict) and item.get("url")):
                continue
            link = str(item["url"])
            if len(lines) == count or not in_domains(link, s.allowed_domains, s.blocked_domains):
                continue
            text = " ".join(str(item.get(snippet) or "").split())
            if len(text) > s.max_snippet:
                text = text[: s.max_snippet - 1] + "…"
            title = " ".join(str(item.get("title") or "").split())
            lines.append(f"{len(lines) + 1}. {title}\n   {link}\n   {text}")
        return "\n".join(lines) or "no results"


def in_domains(url: str, allowed: tuple[str, ...], blocked: tuple[str, ...]) -> bool:
    """Whether ``url``'s host passes the domain lists (a domain covers its subdomains)."""
    host = "." + (urlsplit(url).hostname or "").lower().rstrip(".")

    def under(domains: tuple[str, ...]) -> bool:
        return any(host.endswith("." + d.lower().strip(".")) for d in domains)

    return (not allowed or under(allowed)) and not under(blocked)
