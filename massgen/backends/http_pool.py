"""A keep-alive HTTP/1.1 client on asyncio streams, for massgen's own Chat Completions calls.

Why not ``httpx`` here: at a batch's ~200 requests in flight, httpcore's pool spends most of
the process's CPU re-sorting its connections on every request (encode/httpcore#1035). This
pool does the one thing the client needs, in O(1) per request: per origin (scheme, host,
port) a deque of idle connections, the most recently used taken first, so a burst reuses warm
sockets and the rest age out. Requests are written here; responses are read by httptools'
``HttpResponseParser`` (llhttp, as uvicorn uses it): content-length, chunked (extensions,
trailers) and close-delimited bodies, 1xx replies skipped, keep-alive as the reply says.
asyncio streams and :mod:`ssl` do the I/O.

What it does, and what it leaves out on purpose:

- ``POST`` (or any method) with a body of bytes and a ``Content-Length``; the response's
  status and headers, then its body read whole (:meth:`Response.aread`) or line by line as it
  arrives (:meth:`Response.aiter_lines`, for server-sent events).
- A connection goes back to the pool only once its response was read to the end and both
  sides may go on; otherwise (an abandoned stream, an error, ``Connection: close``) it is
  closed.
- An idle connection the server has closed is noticed before reuse (``at_eof``) and dropped.
  If a reused connection fails while the request is being written, the request is sent once
  more on a new connection: the server cannot have acted on it. Once it is written nothing is
  resent; a POST to an LLM API is not safe to repeat, and the retry wrapper owns that choice.
- Timeouts: connecting, each write and each read (as ``httpx`` counts them), and waiting for
  a connection when ``max_connections`` are all busy (waiters are served first come, first
  served). A timeout raises :class:`TimeoutError`; every other failure (refused, reset,
  closed mid-response, a reply that is not HTTP) raises :class:`TransportError`.
- A body sent with ``Content-Encoding: gzip`` or ``deflate`` is decoded as it arrives,
  streamed or whole: some servers and proxies compress even when the request did not ask.
- No proxies, no redirects, no other content codings, no HTTP/2, no ``Expect: 100-continue``, no
  ``HEAD`` (a reply is framed as if it has the body its headers announce); line ends in a
  response's head must be ``\r\n``. The caller keeps ``httpx`` for a URL that a proxy
  environment variable applies to (:func:`proxy_for`).
"""

from __future__ import annotations

import asyncio
import codecs
import functools
import re
import ssl
import time
import urllib.request
import weakref
import zlib
from collections import deque
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from httptools import HttpParserError, HttpParserUpgrade, HttpResponseParser

_READ_SIZE = 65536
_MAX_HEAD = 65536
"""Bytes a response may take to finish its head (1xx replies included): llhttp sets none."""
_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_DEFAULT_PORTS = {"http": 80, "https": 443}
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_BAD_VALUE = re.compile(r"[\x00\r\n]|^[ \t]|[ \t]$")
_INCOMPLETE = "the server closed the connection before the response was complete"


class TransportError(Exception):
    """The connection failed: refused, reset, closed before the response ended, or the reply
    was not HTTP/1.1. The message names what happened, never a header."""


class _Stop(Exception):
    """Raised in a parser callback to stop parsing; :meth:`Response._feed` says why."""


class StatusError(Exception):
    """The server answered with a status outside 2xx; the whole reply is kept for the caller
    to map (status, headers for ``Retry-After``, the body with the provider's message)."""

    def __init__(self, status: int, headers: Mapping[str, str], content: bytes) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status
        self.headers = headers
        self.content = content


def proxy_for(url: str, environ: Mapping[str, str] | None = None) -> str | None:
    """The proxy the environment sets for ``url``, or ``None`` if it goes direct.

    Read as ``httpx`` reads it (``trust_env``): ``HTTPS_PROXY`` for ``https://`` URLs,
    ``HTTP_PROXY`` for ``http://``, ``ALL_PROXY`` for both, in either case, unless
    ``NO_PROXY`` excludes the host.
    """
    proxies = (
        urllib.request.getproxies_environment()
        if environ is None
        else {
            name[:-6].lower(): value
            for name, value in environ.items()
            if value and name.lower().endswith("_proxy")
        }
    )
    parts = urlsplit(url)
    proxy = proxies.get(parts.scheme) or proxies.get("all")
    if not proxy:
        return None
    host = parts.hostname or ""
    bypass = urllib.request.proxy_bypass_environment  # type: ignore[attr-defined]
    if bypass(host, proxies):
        return None
    return proxy


@dataclass(frozen=True, slots=True)
class Origin:
    """Where connections go: one pool each."""

    scheme: str
    host: str
    port: int

    @classmethod
    def of(cls, url: str) -> Origin:
        parts = urlsplit(url)
        if parts.scheme not in _DEFAULT_PORTS or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        return cls(parts.scheme, parts.hostname, parts.port or _DEFAULT_PORTS[parts.scheme])


class _Connection:
    """One socket."""

    __slots__ = ("idle_since", "reader", "writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.idle_since = 0.0

    def usable(self) -> bool:
        """False once the server has closed (or reset) this idle connection."""
        return not (
            self.reader.at_eof()
            or self.reader.exception() is not None
            or self.writer.transport.is_closing()
        )

    async def send(self, data: bytes, seconds: float) -> None:
        writer = self.writer
        writer.write(data)
        if writer.transport.get_write_buffer_size():
            async with asyncio.timeout(seconds):
                await writer.drain()
        else:
            await writer.drain()  # cannot wait: nothing is buffered; raises if the peer is gone

    async def read(self, seconds: float) -> bytes:
        """What has arrived (``b""`` at EOF), waiting at most ``seconds``; errors mapped."""
        try:
            async with asyncio.timeout(seconds):
                return await self.reader.read(_READ_SIZE)
        except TimeoutError:
            raise
        except (ConnectionError, OSError) as e:
            raise TransportError(_describe(e)) from e


class Response:
    """A response whose body has not been read yet; use it inside :meth:`Pool.request`.

    It is also the protocol object of its httptools parser: the ``on_*`` methods are the
    parser's callbacks, not for callers.
    """

    __slots__ = (
        "_body",
        "_complete",
        "_conn",
        "_decoder",
        "_done",
        "_fault",
        "_head",
        "_keep_alive",
        "_parser",
        "_timeout",
        "headers",
        "status",
    )

    def __init__(self, conn: _Connection, seconds: float) -> None:
        self._conn = conn
        self._timeout = seconds
        self._parser = HttpResponseParser(self)
        self._body: list[bytes] = []
        """Pieces of the body parsed and not yet handed out."""
        self._head = False
        """The final (not 1xx) head was parsed: ``status`` and ``headers`` are set."""
        self._complete = False
        """The parser has seen the response's end."""
        self._done = False
        """:meth:`read_chunk` has handed out the end: the caller read the body whole."""
        self._keep_alive = False
        self._fault = ""
        """Why a callback stopped the parser, for the error :meth:`_feed` raises."""
        self._decoder: _Decoder | None = None
        """Set for a gzip or deflate body (``Content-Encoding``)."""
        self.status = 0
        self.headers: dict[str, str] = {}
        """Header names in lower case; of a repeated header, the last value."""

    @property
    def reusable(self) -> bool:
        """Read to its end by the caller, and the server keeps the connection open."""
        return self._done and self._keep_alive

    async def read_chunk(self) -> bytes | None:
        """The next piece of the body as it arrives (decoded if it came compressed), or
        ``None`` at its end."""
        decoder = self._decoder
        if decoder is None:
            return await self._read_raw()
        while (data := await self._read_raw()) is not None:
            if data := decoder.decode(data):
                return data
        self._decoder = None
        return decoder.flush() or None

    async def _read_raw(self) -> bytes | None:
        """The next piece of the body as it came on the wire, or ``None`` at its end."""
        body = self._body
        while not body:
            if self._complete:
                self._done = True
                return None
            await self._receive()
        if len(body) == 1:
            return body.pop()
        data = b"".join(body)
        body.clear()
        return data

    async def _receive_head(self) -> None:
        received = 0
        while not self._head:
            data = await self._conn.read(self._timeout)
            if not data:
                if received:
                    raise TransportError(_INCOMPLETE)
                raise TransportError("the server closed the connection without a response")
            received += len(data)
            self._feed(data)
            if received > _MAX_HEAD and not self._head:
                raise TransportError("invalid HTTP response: the head is too long")

    async def _receive(self) -> None:
        """Parse what arrives next into the body, or end a close-delimited body at EOF."""
        data = await self._conn.read(self._timeout)
        if data:
            self._feed(data)
            return
        # httptools has no call for "the connection ended" (llhttp_finish): a body with
        # neither length nor chunks ends here, any other is cut short.
        headers = self.headers
        if "content-length" in headers or "transfer-encoding" in headers:
            raise TransportError(_INCOMPLETE)
        self._keep_alive = False
        self._end()

    def _feed(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except (HttpParserError, HttpParserUpgrade) as e:
            if self._fault:
                raise TransportError(f"invalid HTTP response: {self._fault}") from None
            if not self._complete:
                raise TransportError(f"invalid HTTP response: {e}") from None
            self._keep_alive = False  # bytes after the response's end: not reused

    def _end(self) -> None:
        self._complete = True
        # The parser holds this response's callbacks: a cycle, which a batch's raised GC
        # threshold would keep alive for long. Nothing is parsed after the end.
        del self._parser

    # -- httptools' callbacks --------------------------------------------------------------

    def on_message_begin(self) -> None:
        if self._complete:
            raise _Stop  # more bytes after the response: stop there

    def on_header(self, name: bytes, value: bytes) -> None:
        if not self._head:  # after the head: a chunked body's trailers, ignored
            self.headers[name.decode("latin-1").lower()] = value.rstrip(b" \t").decode("latin-1")

    def on_headers_complete(self) -> None:
        parser = self._parser
        status = parser.get_status_code()
        if status < 200:
            if status == 101:
                self._fault = "101 Switching Protocols"
                raise _Stop
            self.headers = {}  # an interim reply (100 Continue): the real one follows
            return
        coding = self.headers.get("transfer-encoding")
        if coding is not None and coding.rsplit(",", 1)[-1].strip().lower() != "chunked":
            # llhttp would read such a body up to EOF; only chunked is spoken here.
            self._fault = f"transfer-encoding {coding[:40]!r}"
            raise _Stop
        self.status = status
        self._keep_alive = parser.should_keep_alive()
        self._head = True
        coding = self.headers.get("content-encoding", "").strip().lower()
        if coding in _DECODABLE:
            self._decoder = _Decoder(coding)

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        if self._head:  # not the end of a 1xx
            self._end()

    async def raise_for_status(self) -> None:
        """Read an error reply's body and raise :class:`StatusError`; a 2xx passes."""
        if not 200 <= self.status < 300:
            raise StatusError(self.status, self.headers, await self.aread())

    async def aread(self) -> bytes:
        """The whole body."""
        parts = []
        while (chunk := await self.read_chunk()) is not None:
            parts.append(chunk)
        return b"".join(parts)

    def aiter_lines(self) -> AsyncIterator[str]:
        """The body's lines (UTF-8, without their ``\\r\\n``, ``\\n`` or ``\\r``) as they arrive."""
        return _Lines(self)


_DECODABLE = frozenset({"gzip", "x-gzip", "deflate"})


class _Decoder:
    """Incremental gzip or deflate decoding. ``deflate`` is meant to be zlib-wrapped, but
    some servers send it raw; the first bytes tell which (as browsers and httpx do)."""

    __slots__ = ("_coding", "_inflate")

    def __init__(self, coding: str) -> None:
        self._coding = coding
        self._inflate: zlib._Decompress | None = None

    def decode(self, data: bytes) -> bytes:
        inflate = self._inflate
        if inflate is None:
            if self._coding == "deflate":
                wrapped = (
                    len(data) >= 2 and (data[0] & 0x0F) == 8 and (data[0] * 256 + data[1]) % 31 == 0
                )
                inflate = zlib.decompressobj(zlib.MAX_WBITS if wrapped else -zlib.MAX_WBITS)
            else:
                inflate = zlib.decompressobj(16 + zlib.MAX_WBITS)
            self._inflate = inflate
        try:
            return inflate.decompress(data)
        except zlib.error as e:
            raise TransportError(
                f"invalid HTTP response: a {self._coding} body that does not decode"
            ) from e

    def flush(self) -> bytes:
        if self._inflate is None:
            return b""
        if not self._inflate.eof:
            raise TransportError(_INCOMPLETE)
        return self._inflate.flush()


class _Lines:
    """An async iterator rather than an async generator: nothing is left to finalize when the
    caller stops early."""

    __slots__ = ("_buffer", "_decoder", "_ended", "_pending", "_response")

    def __init__(self, response: Response) -> None:
        self._response = response
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self._pending: deque[str] = deque()
        self._buffer = ""
        self._ended = False

    def __aiter__(self) -> _Lines:
        return self

    async def __anext__(self) -> str:
        while not self._pending:
            if self._ended:
                raise StopAsyncIteration
            chunk = await self._response.read_chunk()
            if chunk is None:
                self._ended = True
                text = self._buffer + self._decoder.decode(b"", final=True)
                self._buffer = ""
                if text:
                    self._pending.extend(_LINE_BREAK.split(text.removesuffix("\r")))
                continue
            text = self._buffer + self._decoder.decode(chunk)
            # A "\r" at the end may be the first half of "\r\n": keep it for the next piece.
            keep = text.endswith("\r")
            lines = _LINE_BREAK.split(text[:-1] if keep else text)
            self._buffer = lines.pop() + ("\r" if keep else "")
            self._pending.extend(lines)
        return self._pending.popleft()


@dataclass(slots=True)
class _OriginPool:
    """The connections to one origin: idle ones (most recent last), waiters, and a count."""

    idle: deque[_Connection] = field(default_factory=deque)
    waiters: deque[asyncio.Future[_Connection | None]] = field(default_factory=deque)
    opened: int = 0
    """Connections open or being opened, idle or busy."""


class Pool:
    """Keep-alive HTTP/1.1 connections, one pool per origin; see the module docs.

    Made and used on one event loop. ``max_connections`` bounds the connections per origin
    (``None``: no bound); idle connections older than ``keepalive_expiry`` seconds are
    closed rather than reused.
    """

    def __init__(
        self,
        *,
        ssl_context: ssl.SSLContext | None = None,
        max_connections: int | None = None,
        keepalive_expiry: float = 30.0,
    ) -> None:
        self._ssl = ssl_context
        self._max = max_connections
        self._expiry = keepalive_expiry
        self._pools: dict[Origin, _OriginPool] = {}
        self._busy: set[_Connection] = set()
        self._closing: weakref.WeakSet[asyncio.StreamWriter] = weakref.WeakSet()
        """Sockets told to close; asyncio closes them on its next turn, which :meth:`aclose`
        waits for (a caller may block the loop right after, and a server see them open)."""
        self._closed = False

    @property
    def is_closed(self) -> bool:
        return self._closed

    @asynccontextmanager
    async def request(
        self,
        method: str,
        url: str,
        *,
        headers: Iterable[tuple[str, str]] = (),
        content: bytes = b"",
        seconds: float,
    ) -> AsyncIterator[Response]:
        """Send a request; yields the response with its body still to read.

        ``seconds`` bounds each step on its own (connecting, waiting for a free connection,
        each write, each read), as httpx's timeouts do: a long stream that keeps sending is
        not cut off.

        Leaving the block returns the connection to the pool if the body was read to the end,
        and closes it otherwise.
        """
        pool, conn, response = await self._exchange(method, url, headers, content, seconds)
        try:
            yield response
        finally:
            # Even after an error of the caller's (a 429 it raises on): a reply read to its
            # end leaves the connection ready for the next request.
            self._finish(pool, conn, response)

    async def fetch(
        self,
        method: str,
        url: str,
        *,
        headers: Iterable[tuple[str, str]] = (),
        content: bytes = b"",
        seconds: float,
    ) -> tuple[int, dict[str, str], bytes]:
        """Send a request and read its whole reply: status, headers (as
        :attr:`Response.headers`) and body, whatever the status. :meth:`request` without the
        context manager, which costs more per call than the rest of a small exchange."""
        pool, conn, response = await self._exchange(method, url, headers, content, seconds)
        try:
            body = await response.aread()
        finally:
            self._finish(pool, conn, response)
        return response.status, response.headers, body

    async def _exchange(
        self,
        method: str,
        url: str,
        headers: Iterable[tuple[str, str]],
        content: bytes,
        seconds: float,
    ) -> tuple[_OriginPool, _Connection, Response]:
        """Send the request and read the reply's head; the body is the caller's to read."""
        origin, target, host = _parse(url)
        pool = self._pools.setdefault(origin, _OriginPool())
        conn = await self._send(
            origin, pool, _request(method, target, host, headers, content), seconds
        )
        response: Response | None = None
        try:
            response = Response(conn, seconds)
            await response._receive_head()
        except BaseException:
            self._finish(pool, conn, response)
            raise
        return pool, conn, response

    def _finish(self, pool: _OriginPool, conn: _Connection, response: Response | None) -> None:
        """A reply read to its end leaves the connection ready for the next request."""
        if response is not None and response.reusable:
            self._release(pool, conn)
        else:
            self._discard(pool, conn)

    async def aclose(self) -> None:
        """Close every connection, idle or busy; the pool is not used after this."""
        self._closed = True
        for pool in self._pools.values():
            for conn in pool.idle:
                self._close(conn)
            pool.idle.clear()
            for waiter in pool.waiters:
                if not waiter.done():
                    waiter.set_exception(TransportError("the client was closed"))
            pool.waiters.clear()
        for conn in self._busy:
            self._close(conn)
        self._busy.clear()
        closing = list(self._closing)
        await asyncio.gather(*(w.wait_closed() for w in closing), return_exceptions=True)

    # -- connections ---------------------------------------------------------------------------

    async def _send(
        self,
        origin: Origin,
        pool: _OriginPool,
        data: bytes,
        seconds: float,
    ) -> _Connection:
        """A connection with the request written on it."""
        conn = await self._acquire(pool, seconds)
        reused = conn is not None
        if conn is None:
            conn = await self._connect(origin, pool, seconds)
        try:
            try:
                await conn.send(data, seconds)
            except TimeoutError:
                raise
            except (ConnectionError, OSError) as e:
                if not reused:
                    raise TransportError(_describe(e)) from e
                # A stale keep-alive connection: the server never saw the request, so it goes
                # once more, on a new connection in the same slot.
                self._busy.discard(conn)
                self._close(conn)
                conn = await self._connect(origin, pool, seconds)
                try:
                    await conn.send(data, seconds)
                except TimeoutError:
                    raise
                except (ConnectionError, OSError) as e2:
                    raise TransportError(_describe(e2)) from e2
        except BaseException:
            self._discard(pool, conn)
            raise
        return conn

    async def _acquire(self, pool: _OriginPool, seconds: float) -> _Connection | None:
        """An idle connection, or ``None``: the caller may open a new one (already counted)."""
        if self._closed:
            raise TransportError("the client was closed")
        idle = pool.idle
        while idle:
            conn = idle.pop()
            if conn.usable() and time.monotonic() - conn.idle_since < self._expiry:
                self._busy.add(conn)
                return conn
            self._drop(pool, conn)
        if self._max is None or pool.opened < self._max:
            pool.opened += 1
            return None
        waiter: asyncio.Future[_Connection | None] = asyncio.get_running_loop().create_future()
        pool.waiters.append(waiter)
        try:
            async with asyncio.timeout(seconds):
                handed = await waiter
        except BaseException:
            if not waiter.done():
                pool.waiters.remove(waiter)
            elif not waiter.cancelled() and waiter.exception() is None:
                self._pass_on(pool, waiter.result())  # handed to us just as we gave up
            raise
        if self._closed or (handed is not None and not handed.usable()):
            # Closed meanwhile, or it went stale on the way: open a new one in its slot.
            if handed is not None:
                self._close(handed)
            if self._closed:
                pool.opened -= 1
                raise TransportError("the client was closed")
            return None
        if handed is not None:
            self._busy.add(handed)
        return handed

    async def _connect(self, origin: Origin, pool: _OriginPool, seconds: float) -> _Connection:
        """A new connection in a slot already counted in ``pool.opened``."""
        try:
            async with asyncio.timeout(seconds):
                reader, writer = await asyncio.open_connection(
                    origin.host,
                    origin.port,
                    ssl=(self._ssl or True) if origin.scheme == "https" else None,
                    server_hostname=origin.host if origin.scheme == "https" else None,
                    limit=_READ_SIZE,
                )
        except BaseException as e:
            self._pass_on(pool, None)
            if isinstance(e, (ConnectionError, OSError)) and not isinstance(e, TimeoutError):
                raise TransportError(_describe(e)) from e
            raise
        conn = _Connection(reader, writer)
        self._busy.add(conn)
        return conn

    def _release(self, pool: _OriginPool, conn: _Connection) -> None:
        """Back to the pool: to the first waiter, or the idle deque."""
        self._busy.discard(conn)
        if self._closed:
            self._close(conn)
            return
        conn.idle_since = time.monotonic()
        self._pass_on(pool, conn)

    def _discard(self, pool: _OriginPool, conn: _Connection) -> None:
        """Close a busy connection that cannot be reused; its slot goes to a waiter."""
        if conn in self._busy:
            self._busy.discard(conn)
            self._close(conn)
            self._pass_on(pool, None)

    def _drop(self, pool: _OriginPool, conn: _Connection) -> None:
        """Close an idle connection and free its slot (nobody waits while one is idle)."""
        self._close(conn)
        pool.opened -= 1

    def _close(self, conn: _Connection) -> None:
        # abort, not close: nothing is left to flush, and a TLS goodbye the server may never
        # answer would hold aclose up to asyncio's 30 s shutdown timeout.
        conn.writer.transport.abort()
        self._closing.add(conn.writer)

    def _pass_on(self, pool: _OriginPool, conn: _Connection | None) -> None:
        """Hand a counted slot, with its connection or (``None``) without, to the first
        waiter; if nobody waits, the connection goes idle or the slot is freed."""
        while pool.waiters:
            waiter = pool.waiters.popleft()
            if not waiter.done():
                waiter.set_result(conn)
                return
        if conn is None:
            pool.opened -= 1
            return
        idle = pool.idle
        idle.append(conn)
        # The oldest idle connections go once they expire or the server closes them, so
        # sockets left over from a burst do not linger half-closed.
        while idle and not (
            conn.idle_since - idle[0].idle_since < self._expiry and idle[0].usable()
        ):
            self._drop(pool, idle.popleft())


def _request(
    method: str, target: str, host: str, headers: Iterable[tuple[str, str]], content: bytes
) -> bytes:
    """A request's bytes, head and body."""
    return b"%s %s HTTP/1.1\r\nHost: %s\r\n%s%s%s" % (
        _ascii(method, "method"),
        _ascii(target, "target"),
        _ascii(host, "host"),
        _header_block(tuple(headers)),
        b"Content-Length: %d\r\nConnection: keep-alive\r\n\r\n" % len(content),
        content,
    )


def _ascii(text: str, what: str) -> bytes:
    if "\r" in text or "\n" in text or " " in text:
        raise ValueError(f"invalid request {what}: {text[:60]!r}")
    return text.encode("ascii")


@functools.lru_cache(maxsize=64)
def _header_block(headers: tuple[tuple[str, str], ...]) -> bytes:
    """``Name: value\\r\\n`` lines, checked as h11 would: a token for the name, no line
    break or NUL in the value, no space around it (a key with a newline must never split
    the request). A client sends the same headers each time, hence the cache."""
    lines = []
    for name, value in headers:
        if not _TOKEN.fullmatch(name) or _BAD_VALUE.search(value):
            raise ValueError(f"invalid request header {name[:40]!r}")
        lines.append(f"{name}: {value}\r\n")
    return "".join(lines).encode("latin-1")


@functools.lru_cache(maxsize=64)
def _parse(url: str) -> tuple[Origin, str, str]:
    """The origin, request target and ``Host`` header of a URL (a client asks one URL)."""
    parts = urlsplit(url)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return Origin.of(url), target, parts.netloc.rpartition("@")[2]


def _describe(exc: BaseException) -> str:
    """A short reason for a socket error: ``strerror`` rather than the errno tuple."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__
