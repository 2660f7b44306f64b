"""A lean Redis client for the bus's hot path: pipelined RESP over one socket, parsed by
hiredis in the protocol callback.

redis-py's asyncio client spends ~80 us of CPU per command (pool checkout, retry wrapper,
stream reader, response callbacks, observability hooks); this spends ~40 us, half of it the
kernel. On a request/reply that is four commands, the largest cost the bus has. Every
command still goes out the moment it is issued (no batching delay), concurrent commands
share the socket (their replies come back in order), and blocking reads (``XREADGROUP
BLOCK``, ``XREAD BLOCK``) get a connection of their own so they never stall the others.

redis-py still opens each connection: its handshake does AUTH/ACL, ``rediss://`` TLS,
``SELECT``, and raises its own errors for bad credentials, which the transport translates.
The socket is then handed to :class:`_Protocol`. Errors keep redis-py's classes
(``ResponseError``, ``NoScriptError``, ``ConnectionError``...), so callers treat both
clients alike. A lost connection fails the commands in flight with ``ConnectionError``;
each is then retried with exponential backoff on a new connection, as redis-py's ``Retry``
would (a retried write may apply twice: the bus is at least once, and its scripts are
idempotent where it matters).
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import deque
from collections.abc import Sequence
from typing import Any

import hiredis
from redis import exceptions as rexc
from redis._parsers.base import BaseParser
from redis.asyncio.connection import ConnectionPool
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff, NoBackoff

Arg = str | bytes | int | float

_RETRIED = (rexc.ConnectionError, rexc.TimeoutError, OSError)


class _ErrorReply(Exception):
    """What hiredis makes of an error reply; mapped to redis-py's class on delivery."""


def _pack_py(args: Sequence[Arg]) -> bytes:
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        b = a if isinstance(a, bytes) else str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(b), b))
    return b"".join(out)


_pack: Any = getattr(hiredis, "pack_command", None) or _pack_py


def pack(args: Sequence[Arg]) -> bytes:
    """One command as RESP bytes (hiredis packs it in C)."""
    return bytes(_pack(tuple(args)))


def _error(reply: _ErrorReply) -> rexc.RedisError:
    err = BaseParser.parse_error(str(reply.args[0]))
    return err if isinstance(err, rexc.RedisError) else rexc.ResponseError(str(reply.args[0]))


class _Multi:
    """The replies of several commands written at once, delivered together (or only
    counted, when the caller needs to know just that they all succeeded)."""

    __slots__ = ("error", "fut", "left", "replies")

    def __init__(self, fut: asyncio.Future[Any], count: int, keep: bool) -> None:
        self.fut = fut
        self.left = count
        self.replies: list[Any] | None = [] if keep else None
        self.error: _ErrorReply | None = None

    def add(self, reply: Any) -> bool:
        """Take one reply; ``True`` once the last one came."""
        if self.replies is not None:
            self.replies.append(reply)
        if self.error is None and type(reply) is _ErrorReply:
            self.error = reply
        self.left -= 1
        return not self.left

    def result(self) -> Any:
        """The list of replies (or their count), or the first error reply."""
        if self.error is not None:
            return self.error
        return self.replies


class _Protocol(asyncio.Protocol):
    """Commands written in order; each reply resolves the oldest waiting future."""

    def __init__(self, transport: asyncio.Transport, owner: object = None) -> None:
        self.transport = transport
        self._owner = owner  # the StreamWriter redis-py made: it closes the socket when freed
        self.reader = hiredis.Reader(replyError=_ErrorReply)
        self.waiters: deque[asyncio.Future[Any] | _Multi] = deque()
        self.closed = False
        self.generation = 0
        self._writable: asyncio.Future[None] | None = None

    def send(self, data: bytes, replies: int = 1, *, keep: bool = True) -> asyncio.Future[Any]:
        """Write ``data`` (``replies`` commands); the future gets the reply, or when there
        are several the list of replies (``None`` if not ``keep``); the first error reply
        fails it."""
        if self.closed:
            raise rexc.ConnectionError("Connection closed")
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.transport.write(data)
        self.waiters.append(fut if replies == 1 else _Multi(fut, replies, keep))
        return fut

    async def drained(self) -> None:
        """Wait while the socket's write buffer is over its high-water mark."""
        if self._writable is not None:
            await asyncio.shield(self._writable)

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        gets, waiters = self.reader.gets, self.waiters
        while True:
            try:
                reply = gets()
            except hiredis.ProtocolError as e:
                self._fail(rexc.ConnectionError(f"Redis protocol error: {e}"))
                self.transport.close()
                return
            if reply is False:
                return
            if not waiters:  # nobody asked: the stream is out of step, drop it
                self._fail(rexc.ConnectionError("unexpected reply from Redis"))
                self.transport.close()
                return
            w = waiters[0]
            if type(w) is _Multi:
                if not w.add(reply):
                    continue
                fut, reply = w.fut, w.result()
            else:
                fut = w  # type: ignore[assignment]
            waiters.popleft()
            if fut.done():
                continue  # its caller was cancelled
            if isinstance(reply, _ErrorReply):
                fut.set_exception(_error(reply))
            else:
                fut.set_result(reply)

    def pause_writing(self) -> None:
        if self._writable is None:
            self._writable = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        if self._writable is not None:
            if not self._writable.done():
                self._writable.set_result(None)
            self._writable = None

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(rexc.ConnectionError("Connection closed by server."))
        self.resume_writing()

    def eof_received(self) -> bool | None:
        return None  # close the transport

    def _fail(self, error: Exception) -> None:
        self.closed = True
        while self.waiters:
            w = self.waiters.popleft()
            fut = w.fut if type(w) is _Multi else w
            if not fut.done():  # type: ignore[union-attr]
                fut.set_exception(error)  # type: ignore[union-attr]

    def close(self) -> None:
        self.closed = True
        self.transport.close()


async def _reply(conn: _Protocol, fut: asyncio.Future[Any], seconds: float) -> Any:
    """``fut``'s reply; after ``seconds`` without one, ``conn`` is closed (failing every
    command on it) and a :class:`redis.exceptions.TimeoutError` raised."""
    try:
        async with asyncio.timeout(seconds):
            return await fut
    except TimeoutError:
        if fut.done() and not fut.cancelled():
            return fut.result()  # the reply came as the time ran out
        error = rexc.TimeoutError(f"no reply from Redis in {seconds:g} s")
        conn.close()
        conn._fail(error)
        raise error from None


def _retrieve(fut: asyncio.Future[Any]) -> None:
    """Mark a failed connect as seen (its waiters, if any, got the error already)."""
    if not fut.cancelled():
        fut.exception()


class RespClient:
    """Pipelined commands on one shared connection, blocking ones on spare connections.

    Built from the redis-py client's pool so both use the same URL, credentials, TLS and
    database. Connection errors are retried ``retries`` times with exponential backoff
    (``base`` doubling, at most ``cap`` seconds apart). A reply that does not come within
    ``reply_timeout`` seconds (past a blocking command's own wait) means a frozen server or
    a dead link, which TCP alone may not notice for hours: that connection is closed, which
    fails every command waiting on it, and the commands are retried on a new one."""

    def __init__(
        self,
        pool: ConnectionPool,
        *,
        retries: int,
        backoff_cap: float,
        base: float = 0.05,
        reply_timeout: float = 30.0,
    ) -> None:
        self._pool = pool
        self._retries = retries
        self._reply_timeout = reply_timeout
        self._backoff = ExponentialBackoff(cap=backoff_cap, base=base)
        self._shared: _Protocol | None = None
        self._opening: asyncio.Future[_Protocol] | None = None
        self._spare: list[_Protocol] = []
        self._busy: set[_Protocol] = set()
        self._shas: dict[str, str] = {}
        self._generation = 0  # bumped by aclose: connections opened before it are dropped

    async def _open(self) -> _Protocol:
        """A new connection: redis-py does the handshake, then the socket is ours."""
        generation = self._generation
        pool = self._pool
        kwargs = {**pool.connection_kwargs, "retry": Retry(NoBackoff(), 0), "protocol": 2}
        conn: Any = pool.connection_class(**kwargs)
        try:  # the handshake waits for replies too: a frozen server must not hang it
            async with asyncio.timeout(self._reply_timeout):
                await conn.connect()
        except TimeoutError:
            await conn.disconnect()
            raise rexc.TimeoutError(
                f"no reply from Redis in {self._reply_timeout:g} s (connecting)"
            ) from None
        reader: asyncio.StreamReader = conn._reader
        writer: asyncio.StreamWriter = conn._writer
        conn._reader = conn._writer = None  # handed over: redis-py must not close it
        transport = writer.transport
        proto = _Protocol(transport, writer)  # type: ignore[arg-type]
        transport.set_protocol(proto)
        leftover = bytes(getattr(reader, "_buffer", b""))
        if leftover:
            proto.data_received(leftover)
        if generation != self._generation:  # closed while connecting
            proto.close()
            raise rexc.ConnectionError("client closed")
        proto.generation = generation
        return proto

    async def _shared_conn(self) -> _Protocol:
        conn = self._shared
        if conn is not None and not conn.closed:
            return conn
        if self._opening is None:
            self._opening = asyncio.ensure_future(self._open_shared())
            self._opening.add_done_callback(_retrieve)
        return await asyncio.shield(self._opening)

    async def _open_shared(self) -> _Protocol:
        """One connect for every caller that found the shared connection gone."""
        me = asyncio.current_task()
        try:
            conn = await self._open()
        finally:
            if self._opening is me:
                self._opening = None
        current = self._shared
        if current is not None and not current.closed and current is not conn:
            conn.close()  # another connect won the race (only across aclose): keep one
            return current
        self._shared = conn
        return conn

    async def _retrying(self, args: Sequence[Arg], *, blocking: bool, wait: float = 0.0) -> Any:
        return await self._retrying_packed(pack(args), 1, blocking=blocking, wait=wait)

    async def _retrying_packed(
        self, data: bytes, replies: int, *, blocking: bool, keep: bool = True, wait: float = 0.0
    ) -> Any:
        failures = 0
        while True:
            try:
                if blocking:
                    return await self._blocking(data, wait + self._reply_timeout)
                conn = await self._shared_conn()
                fut = conn.send(data, replies, keep=keep)
                if conn._writable is not None:
                    await conn.drained()
                return await _reply(conn, fut, self._reply_timeout)
            except rexc.AuthenticationError:
                raise
            except _RETRIED:
                failures += 1
                if failures > self._retries:
                    raise
                await asyncio.sleep(self._backoff.compute(failures))

    async def _blocking(self, data: bytes, seconds: float) -> Any:
        conn = None
        while self._spare:
            conn = self._spare.pop()
            if not conn.closed:
                break
            conn = None
        if conn is None:
            conn = await self._open()
        self._busy.add(conn)
        try:
            result = await _reply(conn, conn.send(data), seconds)
        except rexc.ResponseError:
            self._give_back(conn)  # an error reply: the connection is in step
            raise
        except BaseException:
            self._busy.discard(conn)
            conn.close()  # a reply may still be on its way: never reuse the connection
            raise
        self._give_back(conn)
        return result

    def _give_back(self, conn: _Protocol) -> None:
        self._busy.discard(conn)
        if not conn.closed and conn.generation == self._generation:
            self._spare.append(conn)
        else:
            conn.close()

    async def call(self, *args: Arg) -> Any:
        """Run one command (pipelined with the others) and return its raw reply."""
        return await self._retrying(args, blocking=False)

    async def pipeline(self, commands: Sequence[Sequence[Arg]]) -> list[Any]:
        """Run several commands in one write; their replies, in order. Not atomic: after a
        lost connection the whole batch is sent again."""
        if not commands:
            return []
        data = b"".join([bytes(_pack(tuple(c))) for c in commands])
        if len(commands) == 1:
            return [await self._retrying_packed(data, 1, blocking=False)]
        return list(await self._retrying_packed(data, len(commands), blocking=False))

    async def pipeline_ok(self, commands: Sequence[Sequence[Arg]]) -> None:
        """Like :meth:`pipeline` when only success matters: the replies are counted, not
        kept (the bulk-send path)."""
        if commands:
            data = b"".join([bytes(_pack(tuple(c))) for c in commands])
            n = len(commands)
            await self._retrying_packed(data, n, blocking=False, keep=n == 1)

    async def call_blocking(self, *args: Arg, wait: float) -> Any:
        """Run a blocking command on a connection of its own; ``wait`` is how long the
        command itself may block (its reply is then due within the reply timeout)."""
        return await self._retrying(args, blocking=True, wait=wait)

    async def script(self, source: str, keys: Sequence[Arg], args: Sequence[Arg]) -> Any:
        """``EVALSHA``, loading the script first if the server does not know it (a restarted
        Redis forgets them)."""
        sha = self._shas.get(source)
        if sha is None:
            sha = self._shas[source] = hashlib.sha1(source.encode()).hexdigest()
        cmd: list[Arg] = ["EVALSHA", sha, len(keys), *keys, *args]
        try:
            return await self._retrying(cmd, blocking=False)
        except rexc.NoScriptError:
            await self._retrying(("SCRIPT", "LOAD", source), blocking=False)
            return await self._retrying(cmd, blocking=False)

    async def aclose(self) -> None:
        """Close every connection; the client opens new ones if used again."""
        self._generation += 1
        conns = [*self._spare, *self._busy]
        if self._shared is not None:
            conns.append(self._shared)
        self._spare.clear()
        self._busy.clear()
        self._shared = None
        for c in conns:
            c.close()
