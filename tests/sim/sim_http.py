"""A small HTTP/1.1 server on asyncio streams: just what the provider simulator needs.

Why not ``http.server``: it spends a thread per connection and cannot hold hundreds of slow
requests cheaply, nor drop a connection mid-body on purpose. Here one event loop serves every
connection, keep-alive included, and a handler gets an :class:`Exchange` that can answer
whole, stream chunk by chunk, wait for the client to give up, or cut the line.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from http import HTTPStatus
from urllib.parse import parse_qsl

log = logging.getLogger(__name__)

_MAX_HEAD = 1 << 20


@dataclass(frozen=True, slots=True)
class HttpRequest:
    """One parsed request; header names are lower-case."""

    method: str
    path: str
    query: Mapping[str, str]
    headers: Mapping[str, str]
    body: bytes
    keep_alive: bool


def reason(status: int) -> str:
    if status == 529:
        return "Overloaded"
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


def encode_head(status: int, headers: Iterable[tuple[str, str]]) -> bytes:
    """Status line and headers, up to and including the blank line."""
    lines = [f"HTTP/1.1 {status} {reason(status)}"]
    lines += [f"{name}: {value}" for name, value in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def encode_response(
    status: int,
    body: bytes,
    headers: Iterable[tuple[str, str]] = (),
    content_type: str = "application/json",
) -> bytes:
    """A whole response with a ``Content-Length``."""
    head = [("content-type", content_type), ("content-length", str(len(body))), *headers]
    return encode_head(status, head) + body


def encode_chunk(data: bytes) -> bytes:
    """One piece of a ``Transfer-Encoding: chunked`` body."""
    return b"%x\r\n%s\r\n" % (len(data), data)


LAST_CHUNK = b"0\r\n\r\n"


class Exchange:
    """The response side of one request: write bytes, wait for a hang-up, or cut the line."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self.aborted = False
        self.started = False

    async def write(self, data: bytes) -> None:
        """Send ``data``; a client that has gone away is not an error here."""
        self.started = True
        if self._writer.is_closing():
            return
        self._writer.write(data)
        with contextlib.suppress(ConnectionError):
            await self._writer.drain()

    async def respond(
        self,
        status: int,
        body: bytes,
        headers: Iterable[tuple[str, str]] = (),
        content_type: str = "application/json",
    ) -> None:
        """A whole response with a ``Content-Length``."""
        await self.write(encode_response(status, body, headers, content_type))

    async def abort(self, data: bytes = b"") -> None:
        """Send ``data`` (maybe nothing), then close the connection without finishing."""
        if data:
            await self.write(data)
        self.aborted = True
        self._writer.transport.abort()

    async def wait_disconnected(self) -> None:
        """Return once the client closes its side (it gave up waiting)."""
        with contextlib.suppress(ConnectionError):
            while await self._reader.read(65536):
                pass


Handler = Callable[[HttpRequest, Exchange], Awaitable[None]]


class HttpServer:
    """Serves ``handler`` on one event loop; :meth:`close` ends every connection at once."""

    def __init__(self, handler: Handler, on_connect: Callable[[], None] | None = None) -> None:
        self._handler = handler
        self._on_connect = on_connect
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self, host: str, port: int) -> int:
        """Listen on ``host:port`` (0 picks a free port); returns the port."""
        self._server = await asyncio.start_server(
            self._accept, host, port, limit=_MAX_HEAD, backlog=1024
        )
        return int(self._server.sockets[0].getsockname()[1])

    def serves(self, task: asyncio.Task[object]) -> bool:
        """Whether ``task`` is one of this server's connection tasks."""
        return task in self._tasks

    def stop_accepting(self) -> None:
        """Take no new connections, yet leave the listener open for those being accepted.

        Closing an ``asyncio.Server`` while a connection is half-way through being accepted
        leaks that socket on Python 3.11 (``Server._attach`` asserts), so a clean shutdown
        stops accepting first, lets the loop finish setting up those connections, and only
        then calls :meth:`close`.
        """
        if self._server is not None and self._server.is_serving():
            loop = asyncio.get_running_loop()
            for sock in self._server.sockets:
                loop.remove_reader(sock.fileno())

    async def close(self) -> None:
        """Stop listening and end every connection, hanging requests included.

        Safe to call again, e.g. once connections accepted during the first call arrived.
        """
        if self._server is not None:
            self._server.close()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for writer in list(self._writers):  # tasks cancelled before they ever ran
            writer.transport.abort()
        self._writers.clear()
        if self._server is not None:
            await self._server.wait_closed()

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # A plain callback (not a coroutine) so the writer is known from the first moment:
        # close() can then end connections whose task never got to run.
        self._writers.add(writer)
        task = asyncio.ensure_future(self._serve(reader, writer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        if self._on_connect is not None:
            self._on_connect()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    request = await _read_request(reader)
                except ValueError as e:
                    body = f'{{"error": "bad request: {e}"}}'.encode()
                    await Exchange(reader, writer).respond(400, body, [("connection", "close")])
                    break
                if request is None:
                    break
                exchange = Exchange(reader, writer)
                try:
                    await self._handler(request, exchange)
                except Exception:
                    log.exception("simulator handler failed on %s", request.path)
                    if not exchange.started:
                        await exchange.respond(500, b'{"error": "simulator handler failed"}')
                if exchange.aborted or not request.keep_alive:
                    break
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()


async def _read_request(reader: asyncio.StreamReader) -> HttpRequest | None:
    """The next request on the connection, or ``None`` when the client closed it cleanly."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as e:
        if e.partial.strip():
            raise
        return None
    lines = head.decode("latin-1").split("\r\n")
    try:
        method, target, version = lines[0].split(" ", 2)
    except ValueError:
        raise ValueError("malformed request line") from None
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    if "chunked" in headers.get("transfer-encoding", "").lower():
        body = await _read_chunked(reader)
    else:
        length = int(headers.get("content-length", "0") or 0)
        body = await reader.readexactly(length) if length else b""
    path, _, query = target.partition("?")
    connection = headers.get("connection", "").lower()
    keep_alive = connection != "close" and (version == "HTTP/1.1" or connection == "keep-alive")
    return HttpRequest(method, path, dict(parse_qsl(query)), headers, body, keep_alive)


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    parts: list[bytes] = []
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
        if size == 0:
            while await reader.readuntil(b"\r\n") != b"\r\n":
                pass
            return b"".join(parts)
        parts.append(await reader.readexactly(size))
        await reader.readexactly(2)
