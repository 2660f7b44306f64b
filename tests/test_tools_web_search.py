"""web_search against a fake search server on loopback, in each provider's format."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from urllib.parse import parse_qs, urlsplit

import pytest

from massgen.errors import ConfigError, ToolError
from massgen.tools import WebSearch

KEY = "sk-search-canary-91"
ITEMS = [
    {"title": "Paris", "url": "https://en.wikipedia.org/wiki/Paris", "snippet": "Capital " * 80},
    {"title": "Paris, Texas", "url": "https://example.org/tx", "snippet": "A  city\nin Texas"},
    {"title": "Plaster", "url": "https://example.org/p", "snippet": "of Paris"},
]


class FakeSearch:
    """Answers SearXNG, Brave and Tavily requests; records what it was sent."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, dict[str, str], bytes]] = []
        self.status = 200
        self.port = 0

    async def start(self) -> None:
        self.server = await asyncio.start_server(self.serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = (await reader.readuntil(b"\r\n\r\n")).decode()
        method, target, _ = head.split("\r\n")[0].split(" ")
        headers = dict(
            (k.strip().lower(), v.strip())
            for k, v in (line.split(":", 1) for line in head.split("\r\n")[1:] if ":" in line)
        )
        body = await reader.readexactly(int(headers.get("content-length", "0")))
        self.seen.append((method, target, headers, body))
        path = urlsplit(target).path
        data: dict[str, object]
        if path == "/search":  # searxng
            data = {
                "results": [
                    {"title": i["title"], "url": i["url"], "content": i["snippet"]} for i in ITEMS
                ]
            }
        elif path == "/brave":
            data = {
                "web": {
                    "results": [
                        {"title": i["title"], "url": i["url"], "description": i["snippet"]}
                        for i in ITEMS
                    ]
                }
            }
        else:
            data = {
                "results": [
                    {"title": i["title"], "url": i["url"], "content": i["snippet"]} for i in ITEMS
                ]
            }
        payload = json.dumps(data).encode()
        writer.write(
            f"HTTP/1.1 {self.status} X\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n".encode()
            + payload
        )
        await writer.drain()
        writer.close()
        await writer.wait_closed()


@pytest.fixture
async def fake() -> AsyncIterator[FakeSearch]:
    server = FakeSearch()
    await server.start()
    yield server
    server.server.close()
    await server.server.wait_closed()


async def test_searxng(fake: FakeSearch) -> None:
    tool = WebSearch(url=f"http://127.0.0.1:{fake.port}/", max_snippet=20, max_results=2)
    out = await tool.run({"query": "capital of France"})
    assert out.splitlines() == [
        "1. Paris",
        "   https://en.wikipedia.org/wiki/Paris",
        "   Capital Capital Cap…",
        "2. Paris, Texas",
        "   https://example.org/tx",
        "   A city in Texas",
    ]
    method, target, _, _ = fake.seen[0]
    assert method == "GET"
    assert parse_qs(urlsplit(target).query) == {"q": ["capital of France"], "format": ["json"]}


async def test_brave_and_tavily_send_their_keys(fake: FakeSearch) -> None:
    brave = WebSearch(provider="brave", url=f"http://127.0.0.1:{fake.port}/brave", api_key=KEY)
    assert "3. Plaster" in await brave.run({"query": "paris", "max_results": 3})
    _, target, headers, _ = fake.seen[0]
    assert headers["x-subscription-token"] == KEY
    assert parse_qs(urlsplit(target).query)["count"] == ["3"]
    tavily = WebSearch(provider="tavily", url=f"http://127.0.0.1:{fake.port}/tavily", api_key=KEY)
    out = await tavily.run({"query": "paris", "max_results": 1})
    assert out.startswith("1. Paris") and "2." not in out
    method, _, headers, body = fake.seen[1]
    assert method == "POST" and headers["authorization"] == f"Bearer {KEY}"
    assert json.loads(body) == {"query": "paris", "max_results": 1}
    assert KEY not in repr(tavily.settings)


async def test_errors_are_tool_errors(fake: FakeSearch) -> None:
    fake.status = 500
    tool = WebSearch(url=f"http://127.0.0.1:{fake.port}")
    with pytest.raises(ToolError, match="HTTP 500"):
        await tool.run({"query": "x"})
    with pytest.raises(ToolError, match="bad arguments"):
        await tool.run({"query": ""})


def test_settings_are_checked() -> None:
    with pytest.raises(ConfigError) as err:
        WebSearch(mode="api")
    assert err.value.key == "url"
    with pytest.raises(ConfigError) as err:
        WebSearch(mode="api", provider="brave")
    assert err.value.key == "api_key"
    with pytest.raises(ConfigError) as err:
        WebSearch(url="ftp://x")
    assert err.value.key == "url"
    with pytest.raises(ConfigError) as err:
        WebSearch(allowed_domains=["a.org"], blocked_domains=["b.org"])
    assert "not both" in err.value.message
    # auto/native without a search API is no error yet: the backend may search itself
    assert WebSearch().url is None and WebSearch(mode="native", provider="brave").url is None


async def test_domain_lists_filter_api_results(fake: FakeSearch) -> None:
    url = f"http://127.0.0.1:{fake.port}/"
    allowed = await WebSearch(url=url, allowed_domains=["wikipedia.org"]).run({"query": "p"})
    assert "en.wikipedia.org" in allowed and "example.org" not in allowed
    blocked = await WebSearch(url=url, blocked_domains=["example.org"]).run({"query": "p"})
    assert blocked.startswith("1. Paris\n") and "example.org" not in blocked


class Flood:
    """A search API that answers a (declared) 200 MB JSON document, written in 64 KB pieces
    for as long as the client reads, or drips one byte every ``gap`` seconds; counts what it
    managed to send."""

    SIZE = 200 * 1024 * 1024

    def __init__(self, gap: float = 0.0) -> None:
        self.gap = gap
        self.sent = 0
        self.port = 0

    async def start(self) -> Flood:
        self.server = await asyncio.start_server(self.serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {self.SIZE}\r\nConnection: close\r\n\r\n".encode()
        )
        piece = b'{"results": [' + b" " * (65536 - 13) if not self.gap else b" "
        try:
            while self.sent < self.SIZE:
                writer.write(piece)
                await writer.drain()
                self.sent += len(piece)
                piece = b" " * len(piece)
                if self.gap:
                    await asyncio.sleep(self.gap)
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    async def close(self) -> None:
        self.server.close()
        await self.server.wait_closed()


async def test_a_huge_answer_is_cut_at_max_bytes() -> None:
    flood = await Flood().start()
    tool = WebSearch(url=f"http://127.0.0.1:{flood.port}", max_bytes=1_000_000)
    try:
        async with asyncio.timeout(30):
            with pytest.raises(ToolError, match="more than 1000000 bytes"):
                await tool.run({"query": "x"})
    finally:
        await flood.close()
    # what the server got out before the client hung up: the cap plus socket buffers
    assert flood.sent < 16 * 1024 * 1024


async def test_a_slow_answer_is_cut_at_the_time_limit() -> None:
    drip = await Flood(gap=0.05).start()
    tool = WebSearch(url=f"http://127.0.0.1:{drip.port}", time_limit=1.0)
    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        async with asyncio.timeout(3):  # a guard for the test, not the bound asserted
            with pytest.raises(ToolError, match="longer than 1s"):
                await tool.run({"query": "x"})
    finally:
        await drip.close()
    assert 1.0 <= loop.time() - started <= 1.1
