"""massgen's keep-alive HTTP/1.1 pool (:mod:`massgen.backends.http_pool`), on loopback.

Most cases run against the provider simulator; the framings and failures it does not serve
(close-delimited bodies, a server that closes idle connections, a stream held open until the
test has read its first line) come from a few lines of raw asyncio server below.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import socket
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import httpx
import pytest

from massgen.backends import http_pool
from massgen.backends.http_pool import Pool, StatusError, TransportError, proxy_for
from massgen.backends.openai_http import HTTPChatClient
from massgen.errors import ProviderConnectionError, ProviderTimeout, RateLimited
from tests.sim.sim_types import Drop, Fault, Hang, Text
from tests.sim.simulator import ProviderSimulator

KEY = "sk-canary-0123456789abcdef"
BODY = json.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}]}).encode()
STREAM_BODY = json.dumps(
    {"model": "m", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
).encode()

_PROXY_VARS = ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "NO_PROXY")


@pytest.fixture(autouse=True)
def _no_proxy_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in _PROXY_VARS:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


@pytest.fixture
async def pool() -> AsyncIterator[Pool]:
    p = Pool()
    yield p
    await p.aclose()


def chat_url(sim: ProviderSimulator) -> str:
    return sim.openai_base_url + "/chat/completions"


async def post(pool: Pool, url: str, body: bytes = BODY, seconds: float = 5.0) -> bytes:
    async with pool.request("POST", url, content=body, seconds=seconds) as response:
        await response.raise_for_status()
        return await response.aread()


def client_for(url: str, timeout: float = 5.0) -> HTTPChatClient:
    return HTTPChatClient(provider="openai", api_key=KEY, base_url=url, timeout=timeout)


def unused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class RawServer:
    """What a raw loopback server saw: connections accepted, requests read."""

    def __init__(self) -> None:
        self.connections = 0
        self.url = ""


@asynccontextmanager
async def raw_server(handler: Handler) -> AsyncIterator[RawServer]:
    """Serve ``handler`` per connection on loopback, in the test's own event loop."""
    seen = RawServer()
    tasks: set[asyncio.Task[None]] = set()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.connections += 1
        tasks.add(asyncio.current_task())  # type: ignore[arg-type]
        try:
            await handler(reader, writer)
        except ConnectionError:
            pass
        finally:
            writer.close()
            await writer.wait_closed()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    seen.url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/v1/chat/completions"
    try:
        yield seen
    finally:
        server.close()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await server.wait_closed()


async def read_request(reader: asyncio.StreamReader) -> bytes:
    """One request's head and body (it has a Content-Length), or b"" at EOF."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return b""
    length = next(
        int(line.split(b":")[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    return head + await reader.readexactly(length)


def reply_with(*responses: bytes, close: bool = False) -> Handler:
    """Answer each request on a connection with the next of ``responses``; then, with
    ``close``, close the connection (as a server whose keep-alive expired)."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for response in responses:
            if not await read_request(reader):
                return
            writer.write(response)
            await writer.drain()
            if close:
                return
        await read_request(reader)

    return handler


def content_length(body: bytes, *extra: str) -> bytes:
    head = ["HTTP/1.1 200 OK", "Content-Type: application/json", f"Content-Length: {len(body)}"]
    return ("\r\n".join([*head, *extra]) + "\r\n\r\n").encode() + body


# -- keep-alive ------------------------------------------------------------------------------


async def test_sequential_requests_reuse_one_connection(sim: ProviderSimulator, pool: Pool) -> None:
    sim.script([Text(f"answer {n}") for n in range(5)])
    for n in range(5):
        reply = json.loads(await post(pool, chat_url(sim)))
        assert reply["choices"][0]["message"]["content"] == f"answer {n}"
    assert sim.stats.requests == 5
    assert sim.stats.connections == 1


async def test_streams_read_to_the_end_reuse_their_connection(
    sim: ProviderSimulator, pool: Pool
) -> None:
    for _ in range(3):
        async with pool.request("POST", chat_url(sim), content=STREAM_BODY, seconds=5) as r:
            lines = [line async for line in r.aiter_lines()]
        assert "data: [DONE]" in lines
    assert sim.stats.connections == 1


async def test_an_error_reply_read_whole_keeps_its_connection(
    sim: ProviderSimulator, pool: Pool
) -> None:
    sim.script([Fault(429, retry_after=2), Text("ok")])
    with pytest.raises(StatusError) as info:
        await post(pool, chat_url(sim))
    assert info.value.status == 429
    assert info.value.headers["retry-after"] == "2"
    assert b"Rate limit" in info.value.content
    assert json.loads(await post(pool, chat_url(sim)))["choices"][0]["message"]["content"] == "ok"
    assert sim.stats.connections == 1


async def test_fetch_reads_the_whole_reply_and_keeps_the_connection(
    sim: ProviderSimulator, pool: Pool
) -> None:
    sim.script([Fault(429, retry_after=2), Text("ok")])
    status, headers, body = await pool.fetch("POST", chat_url(sim), content=BODY, seconds=5)
    assert (status, headers["retry-after"]) == (429, "2") and b"Rate limit" in body
    status, _, body = await pool.fetch("POST", chat_url(sim), content=BODY, seconds=5)
    assert status == 200 and json.loads(body)["choices"][0]["message"]["content"] == "ok"
    assert sim.stats.connections == 1


async def test_a_stream_abandoned_midway_closes_its_connection(
    sim: ProviderSimulator, pool: Pool
) -> None:
    sim.script([Text("one two three four five six")])
    async with pool.request("POST", chat_url(sim), content=STREAM_BODY, seconds=5) as r:
        assert await anext(aiter(r.aiter_lines()))  # then stop reading
    await post(pool, chat_url(sim))
    assert sim.stats.connections == 2  # the unfinished one was not reused


async def test_connections_idle_past_the_keepalive_expiry_are_not_reused(
    sim: ProviderSimulator,
) -> None:
    pool = Pool(keepalive_expiry=0.0)
    try:
        for _ in range(3):
            await post(pool, chat_url(sim))
        assert not pool._pools[http_pool.Origin.of(chat_url(sim))].idle  # closed, not kept
    finally:
        await pool.aclose()
    assert sim.stats.connections == 3


async def test_an_idle_connection_the_server_closed_is_replaced() -> None:
    """A server whose keep-alive expired closes the idle socket; the pool notices the EOF
    before reuse and opens a new connection, so the request succeeds."""
    async with raw_server(reply_with(content_length(b"{}"), close=True)) as server:
        pool = Pool()
        try:
            assert await post(pool, server.url) == b"{}"
            (idle,) = pool._pools[http_pool.Origin.of(server.url)].idle
            assert await idle.reader.read() == b""  # wait (without a timer) for the FIN
            assert await post(pool, server.url) == b"{}"
        finally:
            await pool.aclose()
    assert server.connections == 2


async def test_a_request_on_a_stale_connection_goes_once_more_on_a_new_one(
    sim: ProviderSimulator, pool: Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The race the EOF check can lose: the server closed the socket, the pool did not see it
    yet, and writing the request fails. Nothing reached the server, so it is sent again."""
    await post(pool, chat_url(sim))
    (idle,) = pool._pools[http_pool.Origin.of(chat_url(sim))].idle
    idle.writer.transport.abort()
    monkeypatch.setattr(http_pool._Connection, "usable", lambda self: True)
    sim.script([Text("second")])
    reply = json.loads(await post(pool, chat_url(sim)))
    assert reply["choices"][0]["message"]["content"] == "second"
    assert sim.stats.requests == 2
    assert sim.stats.connections == 2


async def test_a_request_written_whole_is_never_sent_twice(
    sim: ProviderSimulator, pool: Pool
) -> None:
    """The server dropped the reused connection after reading the request: it may have acted
    on it, so the POST is not repeated (the retry wrapper decides)."""
    await post(pool, chat_url(sim))
    sim.script([Drop(after="request")])
    with pytest.raises(TransportError, match="closed the connection"):
        await post(pool, chat_url(sim))
    assert sim.stats.requests == 2


async def test_a_connection_close_reply_is_not_reused() -> None:
    reply = content_length(b"{}", "Connection: close")
    async with raw_server(reply_with(reply, close=True)) as server:
        pool = Pool()
        try:
            for _ in range(2):
                assert await post(pool, server.url) == b"{}"
            assert not pool._pools[http_pool.Origin.of(server.url)].idle
        finally:
            await pool.aclose()
    assert server.connections == 2


# -- concurrency -----------------------------------------------------------------------------


async def test_192_concurrent_requests_complete() -> None:
    with ProviderSimulator(latency=0.05) as sim:
        pool = Pool(max_connections=256)
        try:
            replies = await asyncio.gather(*(post(pool, chat_url(sim)) for _ in range(192)))
        finally:
            await pool.aclose()
        assert all(json.loads(r)["choices"] for r in replies)
        assert sim.stats.requests == 192
        assert sim.stats.connections <= 192


async def test_max_connections_bounds_the_sockets_and_queues_the_rest() -> None:
    with ProviderSimulator(latency=0.02) as sim:
        pool = Pool(max_connections=4)
        try:
            replies = await asyncio.gather(*(post(pool, chat_url(sim)) for _ in range(40)))
        finally:
            await pool.aclose()
        assert len(replies) == 40
        assert sim.stats.requests == 40
        assert sim.stats.connections <= 4
        assert sim.stats.max_concurrency <= 4


async def test_waiting_for_a_free_connection_times_out(sim: ProviderSimulator) -> None:
    sim.script([Hang(), Text("free again")])
    pool = Pool(max_connections=1)
    try:
        held = asyncio.ensure_future(post(pool, chat_url(sim), seconds=30))
        await sim.wait_for_requests_async(1)
        with pytest.raises(TimeoutError):
            await post(pool, chat_url(sim), seconds=0.05)
        assert sim.stats.requests == 1  # the second never got a connection
        held.cancel()
        with pytest.raises(asyncio.CancelledError):
            await held
        reply = json.loads(await post(pool, chat_url(sim)))  # the cancelled one freed its slot
        assert reply["choices"][0]["message"]["content"] == "free again"
    finally:
        await pool.aclose()


async def test_a_freed_connection_goes_to_the_first_waiter(sim: ProviderSimulator) -> None:
    pool = Pool(max_connections=1)
    order: list[int] = []

    async def ask(n: int) -> None:
        await post(pool, chat_url(sim))
        order.append(n)

    try:
        tasks = [asyncio.ensure_future(ask(n)) for n in range(6)]
        await asyncio.gather(*tasks)
    finally:
        await pool.aclose()
    assert order == list(range(6))
    assert sim.stats.connections == 1


# -- framing ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "response",
    [
        content_length(b'{"a": 1}'),
        b'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n{"a\r\n5\r\n": 1}\r\n0\r\n\r\n',
        b'HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n{"a": 1}',  # ends when the server closes
    ],
    ids=["content-length", "chunked", "close-delimited"],
)
async def test_every_framing_of_a_body_is_read_whole(response: bytes) -> None:
    async with raw_server(reply_with(response, close=True)) as server:
        pool = Pool()
        try:
            assert await post(pool, server.url) == b'{"a": 1}'
        finally:
            await pool.aclose()


async def test_chunk_extensions_trailers_and_a_100_continue_are_handled() -> None:
    reply = (
        b"HTTP/1.1 100 Continue\r\n\r\n"
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b'4;ext=1\r\n{"a"\r\n4\r\n: 1}\r\n0\r\nX-Trailer: t\r\n\r\n'
    )
    async with raw_server(reply_with(reply, reply)) as server:
        pool = Pool()
        try:
            assert await post(pool, server.url) == b'{"a": 1}'
            assert await post(pool, server.url) == b'{"a": 1}'  # on the same connection
        finally:
            await pool.aclose()
    assert server.connections == 1


@pytest.mark.parametrize(
    ("response", "reused"),
    [
        (b"HTTP/1.1 204 No Content\r\n\r\n", True),
        (b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", False),
    ],
    ids=["204-has-no-body", "http-1.0-is-not-kept"],
)
async def test_bodiless_and_http_1_0_replies(response: bytes, reused: bool) -> None:
    async with raw_server(reply_with(response, response)) as server:
        pool = Pool()
        try:
            for _ in range(2):
                async with pool.request("POST", server.url, content=BODY, seconds=5) as r:
                    assert await r.aread() == b""
        finally:
            await pool.aclose()
    assert server.connections == (1 if reused else 2)


@pytest.mark.parametrize(
    "response",
    [
        b"HTTX/1.1 200 OK\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nBad header\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nX-Pad: " + b"a" * 140_000,  # a head that never ends
    ],
    ids=[
        "status-line",
        "header",
        "content-length",
        "chunk-size",
        "transfer-encoding",
        "upgrade",
        "head-too-long",
    ],
)
async def test_a_reply_that_is_not_http_is_a_transport_error(response: bytes) -> None:
    async with raw_server(reply_with(response)) as server:
        pool = Pool()
        try:
            with pytest.raises(TransportError, match="invalid HTTP response"):
                await post(pool, server.url)
            assert not pool._pools[http_pool.Origin.of(server.url)].idle
        finally:
            await pool.aclose()


@pytest.mark.parametrize(
    "response",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n{}",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Le",
    ],
    ids=["content-length", "chunked", "head"],
)
async def test_a_reply_cut_short_by_the_server_is_a_transport_error(response: bytes) -> None:
    async with raw_server(reply_with(response, close=True)) as server:
        pool = Pool()
        try:
            with pytest.raises(TransportError, match="before the response was complete"):
                await post(pool, server.url)
            assert not pool._pools[http_pool.Origin.of(server.url)].idle
        finally:
            await pool.aclose()


async def test_headers_are_lower_cased_and_trimmed_and_trailers_left_out() -> None:
    reply = (
        b"HTTP/1.1 200 OK\r\nX-Request-ID:  abc  \r\nTransfer-Encoding: chunked\r\n\r\n"
        b"2\r\n{}\r\n0\r\nX-Request-ID: trailer\r\n\r\n"
    )
    async with raw_server(reply_with(reply)) as server:
        pool = Pool()
        try:
            async with pool.request("POST", server.url, content=BODY, seconds=5) as r:
                assert await r.aread() == b"{}"
                assert r.headers["x-request-id"] == "abc"
                assert r.reusable
        finally:
            await pool.aclose()


async def test_a_header_value_with_a_line_break_is_refused_before_sending() -> None:
    pool = Pool()
    try:
        with pytest.raises(ValueError, match="Authorization"):
            async with pool.request(
                "POST",
                "http://127.0.0.1:9/v1",
                headers=[("Authorization", "Bearer k\r\nX-Evil: 1")],
                content=BODY,
                seconds=5,
            ):
                pass
    finally:
        await pool.aclose()


async def test_server_sent_events_arrive_line_by_line() -> None:
    """The first event is read while the server still holds the rest back."""
    first_read = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
        )
        # "\r" ends one chunk and "\n" starts the next: still one line break, not two.
        for part in (b"data: one\r", b"\n\r\n", b"data: caf\xc3", b"\xa9\n\ndata: [DONE]\n\n"):
            writer.write(b"%x\r\n%s\r\n" % (len(part), part))
            await writer.drain()
            if part.endswith(b"\n\r\n"):
                await first_read.wait()
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        await read_request(reader)

    async with raw_server(handler) as server:
        pool = Pool()
        try:
            async with pool.request("POST", server.url, content=BODY, seconds=5) as r:
                lines = aiter(r.aiter_lines())
                assert await anext(lines) == "data: one"
                assert await anext(lines) == ""
                first_read.set()
                rest = [line async for line in lines]
            assert rest == ["data: café", "", "data: [DONE]", ""]
        finally:
            await pool.aclose()


# -- failures --------------------------------------------------------------------------------


async def test_a_hang_past_the_read_timeout_is_a_timeout(sim: ProviderSimulator) -> None:
    sim.script([Hang()])
    client = client_for(sim.openai_base_url)
    try:
        with pytest.raises(ProviderTimeout):
            await client.create({"model": "m", "messages": []}, 0.05)
    finally:
        await client.aclose()
    # aclose has finished closing the socket given up on: blocking this loop now, the server
    # still sees the hang-up (asyncio closes sockets on the loop's next turn).
    sim.wait_until_idle(timeout=5)


async def test_a_refused_connection_is_a_connection_error() -> None:
    client = client_for(f"http://127.0.0.1:{unused_port()}/v1")
    try:
        with pytest.raises(ProviderConnectionError, match="connection failed") as info:
            await client.create({"model": "m", "messages": []}, 5)
    finally:
        await client.aclose()
    assert KEY not in str(info.value)


@pytest.mark.parametrize("after", ["headers", "partial"])
async def test_a_drop_mid_stream_is_a_connection_error(sim: ProviderSimulator, after: str) -> None:
    sim.script([Drop(after=after)])  # type: ignore[arg-type]
    client = client_for(sim.openai_base_url)
    try:
        with pytest.raises(ProviderConnectionError, match="before the response was complete"):
            async for _ in client.stream({"model": "m", "messages": []}, 5):
                pass
    finally:
        await client.aclose()


async def test_status_errors_keep_status_and_retry_after(sim: ProviderSimulator) -> None:
    sim.script([Fault(429, retry_after=3, message=f"slow down {KEY}")])
    client = client_for(sim.openai_base_url)
    try:
        with pytest.raises(RateLimited) as info:
            await client.create({"model": "m", "messages": []}, 5)
    finally:
        await client.aclose()
    assert (info.value.status, info.value.retry_after) == (429, 3.0)
    assert "slow down" in str(info.value) and KEY not in str(info.value)


async def test_aclose_closes_idle_and_busy_connections(sim: ProviderSimulator) -> None:
    pool = Pool()
    await post(pool, chat_url(sim))
    sim.script([Text("one two three four five six")])
    async with pool.request("POST", chat_url(sim), content=STREAM_BODY, seconds=5) as r:
        assert await anext(aiter(r.aiter_lines()))
        conns = [*pool._busy]
        await pool.aclose()
    assert pool.is_closed
    assert conns and all(c.writer.transport.is_closing() for c in conns)
    gc.collect()  # an unclosed socket would warn here, and filterwarnings=error fails the test
    with pytest.raises(TransportError, match="closed"):
        await post(pool, chat_url(sim))


# -- proxies ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "url", "proxied"),
    [
        ({}, "https://api.example.invalid/v1", False),
        ({"HTTPS_PROXY": "http://proxy:3128"}, "https://api.example.invalid/v1", True),
        ({"https_proxy": "http://proxy:3128"}, "https://api.example.invalid/v1", True),
        ({"HTTPS_PROXY": "http://proxy:3128"}, "http://127.0.0.1:8000/v1", False),
        ({"HTTP_PROXY": "http://proxy:3128"}, "http://127.0.0.1:8000/v1", True),
        ({"ALL_PROXY": "http://proxy:3128"}, "http://127.0.0.1:8000/v1", True),
        (
            {"HTTPS_PROXY": "http://proxy:3128", "NO_PROXY": "example.invalid"},
            "https://api.example.invalid/v1",
            False,
        ),
        ({"all_proxy": "http://proxy:3128", "no_proxy": "*"}, "http://127.0.0.1/v1", False),
    ],
)
async def test_a_proxy_in_the_environment_sends_requests_through_httpx(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], url: str, proxied: bool
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert (proxy_for(url) is not None) is proxied
    client = client_for(url)
    try:
        made = client._get_client()
        assert isinstance(made, httpx.AsyncClient if proxied else Pool)
    finally:
        await client.aclose()


def test_the_default_client_loads_no_httpx() -> None:
    """httpx (with httpcore and anyio) costs ~70 ms to import: paid only behind a proxy."""
    code = textwrap.dedent(
        """
        import asyncio, sys
        from massgen.backends import create_backend
        from tests.sim.simulator import ProviderSimulator
        from massgen.types import ChatMessage, CompletionRequest

        async def main(url):
            b = create_backend("openai", model="m", api_key="k", base_url=url)
            try:
                await b.complete(CompletionRequest(messages=(ChatMessage("user", "hi"),)))
            finally:
                await b.aclose()
            print([m for m in ("httpx", "httpcore", "anyio") if m in sys.modules])

        with ProviderSimulator() as sim:
            asyncio.run(main(sim.openai_base_url))
        """
    )
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, env=env
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
