"""R13: the HTTP tool never reaches the host itself, the private network or metadata.

A loopback listener counts connections; every attack must leave it at 0. Tests cannot
reach public addresses, so the allowed path injects a resolver that gives a "public" name
a public address, and a transport that carries connections for that address (only) to a
loopback front server.
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import AsyncIterator, Callable

import httpx
import pytest

from massgen.errors import ToolError
from massgen.tools import APICall
from massgen.tools.http import Resolver, check_url, is_public, literal_ip

PUBLIC_IP = "93.184.216.34"


class Listener:
    """A tiny HTTP server on 127.0.0.1 that counts connections and answers ``reply()``."""

    def __init__(self, reply: Callable[[bytes], bytes]) -> None:
        self.reply = reply
        self.connections = 0
        self.requests: list[bytes] = []
        self.port = 0
        self.server: asyncio.Server | None = None

    async def start(self) -> Listener:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        head = await reader.readuntil(b"\r\n\r\n")
        self.requests.append(head)
        writer.write(self.reply(head))
        await writer.drain()
        writer.close()
        await writer.wait_closed()

    async def close(self) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()


def http_reply(status: str, body: bytes = b"", headers: str = "") -> bytes:
    return (
        f"HTTP/1.1 {status}\r\nContent-Length: {len(body)}\r\n"
        f"Content-Type: text/plain\r\nConnection: close\r\n{headers}\r\n"
    ).encode() + body


@pytest.fixture
async def target() -> AsyncIterator[Listener]:
    """What an attacker wants to reach: must see 0 connections."""
    listener = await Listener(lambda _: http_reply("200 OK", b"INTERNAL-SECRET")).start()
    yield listener
    await listener.close()


class ToLoopback(httpx.AsyncBaseTransport):
    """Carries requests for PUBLIC_IP to a loopback port; anything else is a test failure."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.inner = httpx.AsyncHTTPTransport()
        self.hosts: list[str] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.hosts.append(request.url.host)
        assert request.url.host == PUBLIC_IP, f"the tool tried to connect to {request.url.host}"
        request.url = request.url.copy_with(host="127.0.0.1", port=self.port)
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


def resolver_for(table: dict[str, list[str]]) -> Resolver:
    async def resolve(host: str, port: int) -> list[str]:
        return table[host]

    return resolve


def attacks(port: int) -> list[str]:
    return [
        f"http://127.0.0.1:{port}/",
        f"http://localhost:{port}/",
        f"http://2130706433:{port}/",
        f"http://0x7f.1:{port}/",
        f"http://0x7f000001:{port}/",
        f"http://0177.0.0.1:{port}/",
        f"http://127.1:{port}/",
        f"http://[::ffff:127.0.0.1]:{port}/",
        f"http://[::ffff:7f00:1]:{port}/",
        f"http://[::1]:{port}/",
        f"http://[64:ff9b::7f00:1]:{port}/",
        f"http://0.0.0.0:{port}/",
        "http://169.254.169.254/latest/meta-data/",
        "http://[fd00:ec2::254]/latest/meta-data/",
        "http://10.0.0.1/",
        "http://192.168.1.1/",
        "http://100.64.0.1/",
        f"http://rebind.test:{port}/",
        f"ftp://127.0.0.1:{port}/",
        "file:///etc/passwd",
        f"http://user:pw@127.0.0.1:{port}/",
    ]


async def test_attacks_never_reach_the_listener(target: Listener) -> None:
    # The system resolver would send `localhost` to loopback; `rebind.test` is a name whose
    # DNS answer is loopback (and, to be sure, a public address too: all must be public).
    names = {"localhost": ["127.0.0.1"], "rebind.test": [PUBLIC_IP, "127.0.0.1"]}
    tool = APICall(resolver=resolver_for(names))
    for url in attacks(target.port):
        with pytest.raises(ToolError, match="refused|bad URL"):
            await tool.run({"url": url})
    assert target.connections == 0


async def test_the_system_resolver_is_checked_too(target: Listener) -> None:
    with pytest.raises(ToolError, match="non-public"):
        await APICall().run({"url": f"http://localhost:{target.port}/"})
    assert target.connections == 0


async def test_a_redirect_to_loopback_is_refused(target: Listener) -> None:
    hops = [
        f"http://127.0.0.1:{target.port}/admin",
        f"http://2130706433:{target.port}/",
        f"http://[::ffff:127.0.0.1]:{target.port}/",
        "http://169.254.169.254/latest/meta-data/",
        f"http://inside.test:{target.port}/",
    ]
    for hop in hops:
        redirect = http_reply("302 Found", headers=f"Location: {hop}\r\n")
        front = await Listener(lambda _, r=redirect: r).start()  # type: ignore[misc]
        transport = ToLoopback(front.port)
        names = {"api.example.com": [PUBLIC_IP], "inside.test": ["127.0.0.1"]}
        tool = APICall(resolver=resolver_for(names), transport=transport)
        try:
            with pytest.raises(ToolError, match="refused"):
                await tool.run({"url": "http://api.example.com/start"})
        finally:
            await front.close()
        assert front.connections == 1
    assert target.connections == 0


async def test_the_allowed_path_pins_the_address_and_keeps_the_host() -> None:
    front = await Listener(lambda _: http_reply("200 OK", b'{"ok": true}' + b"x" * 100)).start()
    transport = ToLoopback(front.port)
    tool = APICall(
        resolver=resolver_for({"api.example.com": [PUBLIC_IP]}),
        transport=transport,
        max_bytes=20,
        headers={"Authorization": "Bearer from-settings"},
    )
    try:
        out = await tool.run(
            {
                "url": "http://api.example.com/v1/things?q=1",
                "method": "post",
                "body": {"a": 1},
                "headers": {"Host": "evil.internal", "X-Trace": "1"},
            }
        )
    finally:
        await front.close()
    assert out.startswith("HTTP 200 OK\ncontent-type: text/plain\n\n")
    assert out.endswith('{"ok": true}xxxxxxxx\n[... cut at 20 bytes]')
    head = front.requests[0].decode()
    assert head.startswith("POST /v1/things?q=1 HTTP/1.1")
    assert "host: api.example.com\r\n" in head.lower()
    assert "evil.internal" not in head and "x-trace: 1" in head.lower()
    assert "authorization: bearer from-settings" in head.lower()
    assert transport.hosts == [PUBLIC_IP]
    assert "from-settings" not in repr(tool.settings)


async def test_a_redirect_to_a_public_host_is_followed() -> None:
    replies = iter(
        [
            http_reply("301 Moved", headers="Location: http://cdn.example.net/final\r\n"),
            http_reply("200 OK", b"arrived"),
        ]
    )
    front = await Listener(lambda _: next(replies)).start()
    names = {"api.example.com": [PUBLIC_IP], "cdn.example.net": [PUBLIC_IP]}
    tool = APICall(resolver=resolver_for(names), transport=ToLoopback(front.port))
    try:
        out = await tool.run({"url": "http://api.example.com/start"})
    finally:
        await front.close()
    assert out.endswith("\n\narrived")
    assert "host: cdn.example.net" in front.requests[1].decode().lower()


async def test_allowlist_methods_and_redirect_limit() -> None:
    tool = APICall(
        resolver=resolver_for({"api.example.com": [PUBLIC_IP]}), allow_hosts=["*.example.org"]
    )
    with pytest.raises(ToolError, match="not in the allowed hosts"):
        await tool.run({"url": "http://api.example.com/"})
    with pytest.raises(ToolError, match="method DELETE not allowed"):
        await tool.run({"url": "http://x.example.org/", "method": "DELETE"})
    loop = await Listener(lambda _: http_reply("302 Found", headers="Location: /again\r\n")).start()
    looping = APICall(
        resolver=resolver_for({"api.example.com": [PUBLIC_IP]}),
        transport=ToLoopback(loop.port),
        max_redirects=2,
    )
    try:
        with pytest.raises(ToolError, match="more than 2 redirects"):
            await looping.run({"url": "http://api.example.com/"})
    finally:
        await loop.close()
    assert loop.connections == 3


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "::1",
        "::ffff:10.0.0.1",
        "2002:7f00:1::",
        "169.254.169.254",
        "fe80::1",
        "224.0.0.1",
    ],
)
def test_non_public_addresses(address: str) -> None:
    assert not is_public(ipaddress.ip_address(address))


def test_public_addresses_and_names() -> None:
    assert is_public(ipaddress.ip_address(PUBLIC_IP))
    assert is_public(ipaddress.ip_address("2606:4700::1111"))
    assert literal_ip("example.com") is None
    assert literal_ip("[2606:4700::1111]") == ipaddress.ip_address("2606:4700::1111")


async def test_check_url_rejects_bad_names() -> None:
    for host in ("exa mple.com", "-bad.com", "a" * 300):
        with pytest.raises(ToolError, match="not a valid host"):
            await check_url("http", host, None, resolver=resolver_for({}))


# -- R17: credentials stay with their origin ---------------------------------------------------
class ToOrigins(httpx.AsyncBaseTransport):
    """Carries requests for PUBLIC_IP to the loopback server listening for their port, so two
    real servers stand for two origins (same address, different ports)."""

    def __init__(self, ports: dict[int, int]) -> None:
        self.ports = ports
        self.inner = httpx.AsyncHTTPTransport()
        self.schemes: list[str] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        assert request.url.host == PUBLIC_IP, f"the tool tried to connect to {request.url.host}"
        port = request.url.port or (443 if request.url.scheme == "https" else 80)
        self.schemes.append(request.url.scheme)
        # plain HTTP on loopback whatever the scheme: the origin is what is under test
        request.url = request.url.copy_with(scheme="http", host="127.0.0.1", port=self.ports[port])
        request.extensions.pop("sni_hostname", None)
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


SECRET = "Bearer canary-token-5150"
CREDENTIALS = ("authorization", "x-api-key", "cookie", "canary")


def credentials_in(head: bytes) -> list[str]:
    text = head.decode().lower()
    return [c for c in CREDENTIALS if c in text]


async def two_origins(
    first: list[bytes], second: list[bytes]
) -> tuple[Listener, Listener, APICall]:
    a_replies, b_replies = iter(first), iter(second)
    a = await Listener(lambda _: next(a_replies)).start()
    b = await Listener(lambda _: next(b_replies)).start()
    names = {"api.example.com": [PUBLIC_IP], "other.example.net": [PUBLIC_IP]}
    tool = APICall(
        resolver=resolver_for(names),
        transport=ToOrigins({80: a.port, 8080: b.port}),
        headers={"Authorization": SECRET, "X-Api-Key": "canary-key-5150"},
    )
    return a, b, tool


def moved(location: str, status: str = "302 Found") -> bytes:
    return http_reply(status, headers=f"Location: {location}\r\n")


@pytest.mark.parametrize(
    "location",
    [
        "http://api.example.com:8080/next",  # same host, another port
        "http://other.example.net:8080/next",  # another host
        "//other.example.net:8080/next",  # scheme-relative
    ],
)
@pytest.mark.parametrize("status", ["301 Moved", "302 Found", "303 See Other", "307 Temporary"])
async def test_credentials_never_follow_a_redirect_to_another_origin(
    location: str, status: str
) -> None:
    a, b, tool = await two_origins([moved(location, status)], [http_reply("200 OK", b"there")])
    try:
        out = await tool.run(
            {
                "url": "http://api.example.com/start",
                "headers": {"Cookie": "session=canary-cookie", "X-Trace": "7"},
            }
        )
    finally:
        await a.close()
        await b.close()
    assert out.endswith("\n\nthere")
    assert credentials_in(a.requests[0]) == list(CREDENTIALS)  # the origin got them all
    assert b.connections == 1
    assert credentials_in(b.requests[0]) == []  # the other origin: none
    assert "x-trace: 7" in b.requests[0].decode().lower()  # other headers still go


async def test_credentials_follow_a_redirect_within_the_origin() -> None:
    a, b, tool = await two_origins(
        [moved("/next"), moved("http://API.example.com:80/last"), http_reply("200 OK", b"ok")], []
    )
    try:
        await tool.run({"url": "http://api.example.com/start"})
    finally:
        await a.close()
        await b.close()
    assert len(a.requests) == 3 and b.connections == 0
    for head in a.requests:
        assert "authorization: bearer canary-token-5150" in head.decode().lower()


async def test_credentials_never_follow_https_down_to_http_on_the_same_host_and_port() -> None:
    a_replies = iter([moved("http://api.example.com:443/next"), http_reply("200 OK", b"ok")])
    a = await Listener(lambda _: next(a_replies)).start()
    transport = ToOrigins({443: a.port})
    tool = APICall(
        resolver=resolver_for({"api.example.com": [PUBLIC_IP]}),
        transport=transport,
        headers={"Authorization": SECRET, "X-Api-Key": "canary-key-5150"},
    )
    try:
        await tool.run({"url": "https://api.example.com/start"})
    finally:
        await a.close()
    assert transport.schemes == ["https", "http"]
    assert credentials_in(a.requests[0]) == ["authorization", "x-api-key", "canary"]
    assert credentials_in(a.requests[1]) == []


async def test_credentials_once_dropped_stay_dropped() -> None:
    """Another origin may send the exchange back to the first: it still gets no credential
    (the chain is no longer the one the credential was configured for)."""
    a, b, tool = await two_origins(
        [moved("http://other.example.net:8080/"), http_reply("200 OK", b"back")],
        [moved("http://api.example.com/again")],
    )
    try:
        assert (await tool.run({"url": "http://api.example.com/"})).endswith("back")
    finally:
        await a.close()
        await b.close()
    assert credentials_in(a.requests[0]) == ["authorization", "x-api-key", "canary"]
    assert credentials_in(b.requests[0]) == []
    assert credentials_in(a.requests[1]) == []


async def test_a_model_header_cannot_shadow_a_configured_one() -> None:
    a, b, tool = await two_origins([http_reply("200 OK", b"ok")], [])
    try:
        await tool.run({"url": "http://api.example.com/", "headers": {"authorization": "mine"}})
    finally:
        await a.close()
        await b.close()
    head = a.requests[0].decode().lower()
    assert head.count("authorization:") == 1 and "mine" not in head


# -- R20: time_limit is one deadline for the whole exchange ------------------------------------
class Drip:
    """A loopback HTTP server that answers slowly: the head (status line and headers) and then
    the body one byte at a time, ``gap`` seconds apart, for as long as the client listens."""

    def __init__(self, head: bytes, *, body: bool = True, gap: float = 0.05) -> None:
        self.head = head
        self.body = body
        self.gap = gap
        self.port = 0
        self.connections = 0

    async def start(self) -> Drip:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        await reader.readuntil(b"\r\n\r\n")
        try:
            for i in range(len(self.head)):  # the head, a byte at a time too
                writer.write(self.head[i : i + 1])
                await writer.drain()
                await asyncio.sleep(self.gap / 10)
            while self.body:
                writer.write(b"x")
                await writer.drain()
                await asyncio.sleep(self.gap)
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    async def close(self) -> None:
        self.server.close()
        await self.server.wait_closed()


DRIP_HEAD = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 1000000\r\n"
    b"Connection: close\r\n\r\n"
)


async def timed_call(tool: APICall, url: str, limit: float) -> tuple[float, str]:
    """Run the call under a deadline well past the bound; the error text and elapsed time."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    async with asyncio.timeout(limit * 3):  # a guard for the test, not the bound asserted
        with pytest.raises(ToolError) as err:
            await tool.run({"url": url})
    return loop.time() - started, str(err.value)


async def test_a_slow_drip_body_is_cut_at_the_time_limit() -> None:
    drip = await Drip(DRIP_HEAD).start()
    tool = APICall(
        resolver=resolver_for({"api.example.com": [PUBLIC_IP]}),
        transport=ToLoopback(drip.port),
        time_limit=1.0,
    )
    try:
        elapsed, message = await timed_call(tool, "http://api.example.com/", 1.0)
    finally:
        await drip.close()
    assert "longer than 1s" in message
    assert 1.0 <= elapsed <= 1.1


async def test_the_time_limit_spans_every_redirect() -> None:
    # Each hop alone stays under the limit (a slow head, then a redirect); together they
    # pass it, and the last hop drips its body.
    slow = moved("http://api.example.com/b").replace(b"\r\n\r\n", b"\r\nX-Pad: " + b"p" * 60)
    slow += b"\r\n\r\n"
    first = await Drip(slow, body=False, gap=0.05).start()  # about 0.8 s for its head
    last = await Drip(DRIP_HEAD).start()
    names = {"api.example.com": [PUBLIC_IP]}
    ports = iter([first.port, last.port])

    class Hops(ToLoopback):
        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            self.port = next(ports)
            return await super().handle_async_request(request)

    tool = APICall(resolver=resolver_for(names), transport=Hops(0), time_limit=1.5)
    try:
        elapsed, message = await timed_call(tool, "http://api.example.com/a", 1.5)
    finally:
        await first.close()
        await last.close()
    assert first.connections == 1 and last.connections == 1
    assert "longer than 1.5s" in message
    assert 1.5 <= elapsed <= 1.65
