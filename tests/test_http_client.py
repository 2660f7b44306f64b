"""massgen's own OpenAI-compatible client (:mod:`massgen.backends.openai_http`) on loopback.

What a user relies on: connections kept alive and shared, a proxy from the environment, TLS
verified against the trust store (or ``SSL_CERT_FILE``), timeouts and refusals as our
errors, a cancelled stream's connection closed, and no session left unclosed. Most cases run
against the provider simulator; the rest against a few lines of raw asyncio server below.
"""

from __future__ import annotations

import asyncio
import base64
import gc
import json
import socket
import ssl
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trustme

from massgen.backends import create_backend
from massgen.backends._common import tls_context
from massgen.backends.openai import OpenAIBackend
from massgen.backends.openai_http import HTTPChatClient
from massgen.config.models import ObservabilityConfig
from massgen.errors import ProviderConnectionError, ProviderTimeout
from massgen.observability import start_tracing
from massgen.observability.otlp import Span
from massgen.types import ChatMessage, CompletionRequest
from tests.otlp import Receiver
from tests.procs import run_massgen
from tests.sim.sim_types import Hang, Text
from tests.sim.simulator import ProviderSimulator

KEY = "sk-canary-0123456789abcdef"
ASK = CompletionRequest(messages=(ChatMessage("user", "hi"),))
_PROXY_VARS = ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "NO_PROXY")
Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@pytest.fixture(autouse=True)
def _no_proxy_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in _PROXY_VARS:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


def backend(url: str, timeout: float = 5.0) -> OpenAIBackend:
    return OpenAIBackend("gpt-4o-mini", api_key=KEY, base_url=url, timeout=timeout)


def unused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@asynccontextmanager
async def raw_server(handler: Handler, **kw: object) -> AsyncIterator[int]:
    """Serve ``handler`` per connection on loopback, in the test's own event loop; yields
    the port."""
    tasks: set[asyncio.Task[None]] = set()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        tasks.add(asyncio.current_task())  # type: ignore[arg-type]
        try:
            await handler(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0, **kw)  # type: ignore[arg-type]
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await server.wait_closed()


async def read_request(reader: asyncio.StreamReader) -> bytes:
    """One request's head and body (it has a Content-Length)."""
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(
        int(line.split(b":")[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    return head + await reader.readexactly(length)


def chunk(text: str, finish: str | None = None) -> bytes:
    choice = {"index": 0, "delta": {"content": text}, "finish_reason": finish}
    return json.dumps({"model": "m", "choices": [choice]}, ensure_ascii=False).encode()


STREAM_HEAD = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
)


def http_chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


# -- keep-alive and the shared session ---------------------------------------------------------


async def test_plain_and_streamed_requests_reuse_one_connection(sim: ProviderSimulator) -> None:
    b = backend(sim.openai_base_url)
    try:
        for _ in range(3):
            await b.complete(ASK)
            _ = [c async for c in b.stream(ASK)]
    finally:
        await b.aclose()
    assert (sim.stats.requests, sim.stats.connections) == (6, 1)


async def test_backends_share_one_session_closed_with_the_last(sim: ProviderSimulator) -> None:
    one, two = backend(sim.openai_base_url), backend(sim.openai_base_url)
    await one.complete(ASK)
    await two.complete(ASK)
    session = one._chat._client  # type: ignore[attr-defined]
    assert session is two._chat._client  # type: ignore[attr-defined]
    assert sim.stats.connections == 1  # the second backend reused the first one's socket
    await one.aclose()
    assert not session.closed
    await two.aclose()
    assert session.closed
    gc.collect()  # an unclosed session or socket would warn here; warnings are errors


async def test_192_requests_in_flight_complete() -> None:
    with ProviderSimulator(latency=0.05) as sim:
        b = backend(sim.openai_base_url)
        try:
            done = await asyncio.gather(*(b.complete(ASK) for _ in range(192)))
        finally:
            await b.aclose()
        assert all(d.text for d in done)
        assert sim.stats.requests == 192
        assert sim.stats.max_concurrency > 100  # not queued behind a small connection limit


def test_a_session_nobody_closed_is_closed_when_asyncio_run_ends() -> None:
    code = textwrap.dedent(
        """
        import asyncio, gc
        from massgen.backends import create_backend
        from massgen.types import ChatMessage, CompletionRequest
        from tests.sim.simulator import ProviderSimulator

        async def main(url):
            b = create_backend("openai", model="m", api_key="k", base_url=url)
            await b.complete(CompletionRequest(messages=(ChatMessage("user", "hi"),)))
            return b._chat._client  # never closed by us

        with ProviderSimulator() as sim:
            session = asyncio.run(main(sim.openai_base_url))
        gc.collect()
        print(session.closed)
        """
    )
    out = subprocess.run(
        [sys.executable, "-W", "error", "-X", "dev", "-c", code],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "True"
    assert "Unclosed" not in out.stderr and "Error" not in out.stderr, out.stderr


# -- server-sent events ------------------------------------------------------------------------


async def test_events_arrive_as_sent_whatever_their_line_ends() -> None:
    """The first event is handed out while the server still holds the rest back; a CR LF
    split across two reads is one line break, a lone CR another, UTF-8 may be split."""
    first_read = asyncio.Event()
    text = chunk("café").split("é".encode())

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(STREAM_HEAD + http_chunk(b"data: " + chunk("one") + b"\r"))
        writer.write(http_chunk(b"\n\r\n"))
        await writer.drain()
        await first_read.wait()
        for part in (b": keep-alive\r\rdata: " + text[0] + b"\xc3", b"\xa9" + text[1] + b"\r\r"):
            writer.write(http_chunk(part))
        writer.write(http_chunk(b"data: [DONE]\n\n") + b"0\r\n\r\n")
        await writer.drain()
        await reader.read()

    async with raw_server(handler) as port:
        client = HTTPChatClient(
            provider="openai", api_key=KEY, base_url=f"http://127.0.0.1:{port}", timeout=5
        )
        try:
            events = client.stream("chat/completions", {"model": "m", "messages": []}, 5)
            first = await anext(events)
            assert first["choices"][0]["delta"]["content"] == "one"
            first_read.set()
            rest = [event async for event in events]
        finally:
            await client.aclose()
    assert rest[0]["choices"][0]["delta"]["content"] == "café"
    assert rest[1] == {"[DONE]": True}


@pytest.mark.parametrize("how", ["cancel", "aclose"])
async def test_a_stream_given_up_midway_closes_its_connection(how: str) -> None:
    hung_up = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(STREAM_HEAD + http_chunk(b"data: " + chunk("one") + b"\n\n"))
        await writer.drain()
        assert await reader.read() == b""  # the client hung up
        hung_up.set()

    async with raw_server(handler) as port:
        b = backend(f"http://127.0.0.1:{port}/v1")
        stream = b.stream(ASK)
        try:
            if how == "aclose":  # the caller stops reading
                assert (await anext(stream)).delta
                await stream.aclose()  # type: ignore[attr-defined]
            else:  # the caller's task is cancelled while it waits for the next event
                task = asyncio.ensure_future(anext(stream))
                assert (await task).delta
                task = asyncio.ensure_future(anext(stream))
                await asyncio.sleep(0)  # let it start waiting
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task
            await asyncio.wait_for(hung_up.wait(), 5)
        finally:
            await b.aclose()


# -- failures ----------------------------------------------------------------------------------


async def test_a_refused_connection_is_a_connection_error() -> None:
    port = unused_port()
    b = backend(f"http://127.0.0.1:{port}/v1")
    try:
        with pytest.raises(ProviderConnectionError, match="connection failed") as info:
            await b.complete(ASK)
    finally:
        await b.aclose()
    assert KEY not in str(info.value) and KEY[:12] not in str(info.value)
    # e.g. configs/local.yaml with no Ollama started: say where, and what to check
    assert f"127.0.0.1:{port} refused it: is the server running?" in str(info.value)


async def test_a_stream_that_stalls_past_the_read_timeout_is_a_timeout() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(STREAM_HEAD + http_chunk(b"data: " + chunk("one") + b"\n\n"))
        await writer.drain()
        await reader.read()  # then nothing more, until the client gives up

    async with raw_server(handler) as port:
        b = backend(f"http://127.0.0.1:{port}/v1", timeout=0.2)
        deltas = []
        try:
            with pytest.raises(ProviderTimeout):
                async for piece in b.stream(ASK):
                    deltas.append(piece.delta)
        finally:
            await b.aclose()
    assert deltas == ["one"]


async def test_a_hang_before_the_reply_is_a_timeout_and_the_socket_is_closed(
    sim: ProviderSimulator,
) -> None:
    sim.script([Hang()])
    b = backend(sim.openai_base_url, timeout=0.1)
    try:
        with pytest.raises(ProviderTimeout):
            await b.complete(ASK)
    finally:
        await b.aclose()
    # aclose has closed the socket given up on: the server sees the hang-up even if this
    # loop blocks now.
    sim.wait_until_idle(timeout=5)


# -- credentials in the URL --------------------------------------------------------------------

PASSWORD = "pw-canary-7c1e3b4d"


def _answering(heads: list[dict[str, str]]) -> Handler:
    """A server that keeps each request's line and headers and answers "ok"."""
    body = json.dumps({"model": "m", "choices": [{"index": 0, "message": {"content": "ok"}}]})

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            line, *fields = (await read_request(reader)).split(b"\r\n\r\n")[0].split(b"\r\n")
            pairs = (f.decode().partition(":") for f in fields)
            heads.append({"": line.decode()} | {k.lower(): v.strip() for k, _, v in pairs})
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\n\r\n%s" % (len(body), body.encode())
            )
            await writer.drain()

    return handler


@pytest.mark.parametrize("client", ["http", "sdk"])
async def test_credentials_in_the_base_url_are_sent_as_basic_auth(client: str) -> None:
    """As the SDK (httpx) does: a local server behind basic auth gets ``user:password``
    (percent-decoded) in place of the key, and the request line carries neither."""
    heads: list[dict[str, str]] = []
    async with raw_server(_answering(heads)) as port:
        url = f"http://ada:{PASSWORD}%40x@127.0.0.1:{port}/v1"
        b = OpenAIBackend("m", client=client, api_key=KEY, base_url=url)
        try:
            assert (await b.complete(ASK)).text == "ok"
        finally:
            await b.aclose()
    token = base64.b64encode(f"ada:{PASSWORD}@x".encode()).decode()
    assert heads[0][""] == "POST /v1/chat/completions HTTP/1.1"
    assert (heads[0]["authorization"], heads[0]["host"]) == (f"Basic {token}", f"127.0.0.1:{port}")


def test_a_failed_run_with_credentials_in_the_base_url_never_shows_the_password(
    tmp_path: Path,
) -> None:
    team = tmp_path / "team.yaml"
    url = f"http://ada:{PASSWORD}@127.0.0.1:{unused_port()}/v1"
    team.write_text(
        "backends:\n"
        f"  local: {{type: vllm, model: m, base_url: '{url}'}}\n"
        "agents: [{name: ada, backend: local}]\n"
        "orchestrator: {max_retries: 0}\n"
    )
    done = run_massgen("run", str(team), "hi", cwd=tmp_path, env={"MASSGEN_LOG": "debug"})
    assert done.returncode != 0
    assert "127.0.0.1" in done.stdout + done.stderr  # the failure names where, not who
    assert PASSWORD not in done.stdout + done.stderr
    described = create_backend("vllm", model="m", base_url=url).describe()  # in agents' errors
    assert PASSWORD not in described and "ada:***@127.0.0.1" in described


# -- proxies -----------------------------------------------------------------------------------


class Proxy:
    """A forward proxy on loopback: plain requests in absolute form, and CONNECT tunnels."""

    def __init__(self) -> None:
        self.heads: list[bytes] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        self.heads.append(head)
        method, target, rest = head.split(b" ", 2)
        if method == b"CONNECT":
            host, _, port = target.decode().rpartition(":")
            up_reader, up_writer = await asyncio.open_connection(host, int(port))
            writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        else:  # http://host:port/path -> /path, to host:port
            hostport, _, path = target.decode().removeprefix("http://").partition("/")
            host, _, port = hostport.rpartition(":")
            up_reader, up_writer = await asyncio.open_connection(host, int(port))
            up_writer.write(b"%s /%s %s" % (method, path.encode(), rest))
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    finally:
        writer.close()


async def test_a_proxy_from_the_environment_carries_the_requests(
    sim: ProviderSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    proxy = Proxy()
    async with raw_server(proxy.handle) as port:
        monkeypatch.setenv("http_proxy", f"http://user:pw@127.0.0.1:{port}")
        b = backend(sim.openai_base_url)
        try:
            sim.script([Text("via the proxy")])
            assert (await b.complete(ASK)).text == "via the proxy"
        finally:
            await b.aclose()
    assert sim.stats.requests == 1
    (head,) = proxy.heads
    assert head.startswith(f"POST {sim.openai_base_url}/chat/completions ".encode())
    assert b"Proxy-Authorization: Basic dXNlcjpwdw==" in head  # user:pw, never in the URL
    assert b"user:pw" not in head


async def test_traces_go_to_the_collector_through_the_proxy_too(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The proxy is read once, when the exporter starts, and carries every export."""
    proxy = Proxy()
    with Receiver() as collector:
        async with raw_server(proxy.handle) as port:
            monkeypatch.setenv("http_proxy", f"http://127.0.0.1:{port}")
            tracing = start_tracing(ObservabilityConfig(otlp=collector.url), {})
            for round_ in (1, 2):
                span = Span(tracing.ended, tracing.ids(None), f"round {round_}", 1, 1_000, {})
                span.end(2_000)
                await tracing.flush()
            await tracing.aclose()
        got = collector.wait(lambda spans: len(spans) == 2)
    assert sorted(s.name for s in got) == ["round 1", "round 2"]
    assert proxy.heads and all(
        head.startswith(f"POST {collector.url}/v1/traces ".encode()) for head in proxy.heads
    )


async def test_all_proxy_carries_the_requests_as_curl_and_httpx_read_it(
    sim: ProviderSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without HTTP(S)_PROXY, ALL_PROXY (here without a scheme, as curl takes it) is the
    proxy: the MCP servers' client (httpx) already used it, massgen's own did not."""
    proxy = Proxy()
    async with raw_server(proxy.handle) as port:
        monkeypatch.setenv("ALL_PROXY", f"127.0.0.1:{port}")
        b = backend(sim.openai_base_url)
        try:
            await b.complete(ASK)
        finally:
            await b.aclose()
    assert [h.split(b" ")[1] for h in proxy.heads] == [
        f"{sim.openai_base_url}/chat/completions".encode()
    ]


async def test_a_socks_proxy_is_said_once_and_requests_go_direct(
    sim: ProviderSimulator, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("all_proxy", "socks5://ada:pw-canary-5@127.0.0.1:1080")
    for _ in range(2):
        b = backend(sim.openai_base_url)
        try:
            await b.complete(ASK)
        finally:
            await b.aclose()
    assert sim.stats.requests == 2
    said = [r.getMessage() for r in caplog.records if "proxy" in r.getMessage()]
    assert len(said) == 1 and "socks5://" in said[0] and "pw-canary-5" not in said[0]


async def test_no_proxy_sends_the_request_direct(
    sim: ProviderSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    proxy = Proxy()
    async with raw_server(proxy.handle) as port:
        monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{port}")
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        b = backend(sim.openai_base_url)
        try:
            await b.complete(ASK)
        finally:
            await b.aclose()
    assert proxy.heads == [] and sim.stats.requests == 1


# -- TLS ---------------------------------------------------------------------------------------


@pytest.fixture
def ca(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[trustme.CA]:
    """A CA the process trusts through ``SSL_CERT_FILE``, as a company's proxy CA would be."""
    ca = trustme.CA()
    bundle = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    monkeypatch.setenv("SSL_CERT_FILE", str(bundle))
    tls_context.cache_clear()
    yield ca
    tls_context.cache_clear()


def tls_server_context(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(context)
    return context


class Counted:
    def __init__(self) -> None:
        self.connections = self.requests = 0

    async def answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        body = json.dumps({"model": "m", "choices": [{"index": 0, "message": {"content": "ok"}}]})
        while True:
            await read_request(reader)
            self.requests += 1
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\n\r\n%s" % (len(body), body.encode())
            )
            await writer.drain()


@pytest.mark.parametrize("via_proxy", [False, True], ids=["direct", "proxy-connect"])
async def test_tls_is_verified_against_ssl_cert_file_and_kept_alive(
    ca: trustme.CA, monkeypatch: pytest.MonkeyPatch, via_proxy: bool
) -> None:
    server, proxy = Counted(), Proxy()
    async with (
        raw_server(server.answer, ssl=tls_server_context(ca)) as port,
        raw_server(proxy.handle) as proxy_port,
    ):
        if via_proxy:
            monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{proxy_port}")
        b = create_backend("openai", model="m", api_key=KEY, base_url=f"https://localhost:{port}")
        try:
            for _ in range(3):
                assert (await b.complete(ASK)).text == "ok"
        finally:
            await b.aclose()
    assert (server.requests, server.connections) == (3, 1)
    assert [h.split(b" ")[:2] for h in proxy.heads] == (
        [[b"CONNECT", f"localhost:{port}".encode()]] if via_proxy else []
    )


async def test_a_certificate_from_an_untrusted_ca_is_refused(ca: trustme.CA) -> None:
    server = Counted()
    async with raw_server(server.answer, ssl=tls_server_context(trustme.CA())) as port:
        b = backend(f"https://localhost:{port}")
        try:
            with pytest.raises(ProviderConnectionError, match="(?i)certificate"):
                await b.complete(ASK)
        finally:
            await b.aclose()
    assert server.requests == 0
