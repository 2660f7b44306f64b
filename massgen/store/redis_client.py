"""The one place that builds redis-py clients: one per Redis URL and event loop in a process, shared
by the bus, the Redis store and the shared guards (:func:`shared_client`, :class:`RedisLease`);
and :class:`RedisStore`, the store over standalone Redis: keys at ``{prefix}kv:{key}`` (STRING,
``PX`` expiry on the server clock), logs at ``{prefix}log:{log}`` (LIST), apart from the bus'
keys. Search needs no Redis module: each process searches an in-memory SQLite copy of the logs it
searches, copying only what a log gained since, known from its count of appends at
``{prefix}logn:{log}`` (which outlives trims). Importing this module imports redis."""

from __future__ import annotations

import asyncio
import functools
import inspect
import sqlite3
import weakref
from collections.abc import Callable, Collection, Coroutine
from typing import Any, TypeVar

import redis.asyncio as aioredis
from redis import exceptions as rexc
from redis.asyncio.connection import parse_url
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff

from massgen.errors import ConfigError, TransportError
from massgen.redact import redact_url
from massgen.store import TRIM, SQLiteStore, Text, match_any, search_log, transaction
from massgen.store.base import Store, check_count, check_ttl

REPLY_TIMEOUT = 30.0
"""Seconds a reply may take past a blocking command's own wait: beyond it a frozen server or a
dead link that TCP has not noticed is a timeout, handled like a lost connection."""
RETRIES = 12  # reconnections 50 ms doubling to 1 s apart (~9 s): they ride out a Redis restart
MAX_CONNECTIONS = 10_000  # each blocking read (an inbox, a reply stream) holds one as it waits


def check_url(url: str) -> None:
    """Raise a :class:`ConfigError` (without the password) for a URL redis-py cannot parse."""
    try:
        parse_url(url)
    except ValueError as e:
        hint = "use redis://[user:password@]host[:port][/db] or rediss:// for TLS"
        raise ConfigError(f"invalid Redis URL {redact_url(url)!r}", hint=hint) from e


C = TypeVar("C", bound=type)


def map_errors(
    translate: Callable[[Any, rexc.RedisError], Exception], *, skip: Collection[str] = ()
) -> Callable[[C], C]:
    """A class decorator: each public coroutine method (but ``skip``) re-raises redis-py errors
    as ``translate(self, error)``, an error of our tree that does not show the URL's password."""

    def mapped(fn: Callable[..., Coroutine[Any, Any, Any]]) -> Callable[..., Any]:
        @functools.wraps(fn)
        async def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
            try:
                return await fn(self, *args, **kwargs)
            except rexc.RedisError as e:
                raise translate(self, e) from e

        return wrapper

    def decorate(cls: C) -> C:
        for name, fn in list(vars(cls).items()):
            if inspect.iscoroutinefunction(fn) and not name.startswith("_") and name not in skip:
                setattr(cls, name, mapped(fn))
        return cls

    return decorate


def redis_client(
    url: str,
    *,
    retries: int = RETRIES,
    connect_timeout: float = 5.0,
    reply_timeout: float = REPLY_TIMEOUT,
) -> aioredis.Redis:
    """A new client that rides out short outages: a lost connection or a timeout is retried
    ``retries`` times with exponential backoff; a burst waits for a free connection."""
    check_url(url)
    pool = aioredis.BlockingConnectionPool.from_url(
        url,
        max_connections=MAX_CONNECTIONS,
        retry=Retry(ExponentialBackoff(cap=1.0, base=0.05), retries),
        retry_on_error=[rexc.ConnectionError, rexc.TimeoutError],
        socket_connect_timeout=connect_timeout,
        socket_timeout=reply_timeout,
    )
    return aioredis.Redis.from_pool(pool)


_SHARED: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[Any, list[Any]]] = (
    weakref.WeakKeyDictionary()
)


def shared_client(url: str, **options: Any) -> aioredis.Redis:
    """This process's client for ``url`` (and ``options`` of :func:`redis_client`) on the
    running event loop; give it back with :func:`release_client` when you are done."""
    clients = _SHARED.setdefault(asyncio.get_running_loop(), {})
    bound = inspect.signature(redis_client).bind(url, **options)
    bound.apply_defaults()  # the same client whether a default is spelled out or not
    key = tuple(bound.arguments.items())
    entry = clients.get(key)
    if entry is None:
        entry = clients[key] = [redis_client(url, **options), 0]
    entry[1] += 1
    return entry[0]


async def release_client(client: aioredis.Redis) -> None:
    """Give back a client of :func:`shared_client`; the last user's release closes it."""
    clients = _SHARED.get(asyncio.get_running_loop(), {})
    key = next((k for k, entry in clients.items() if entry[0] is client), None)
    if key is not None:
        clients[key][1] -= 1
        if clients[key][1] > 0:
            return
        del clients[key]
    await client.aclose()


class RedisLease:
    """A user's hold on the shared client of one URL: taken on first use inside the event
    loop (so you may build the owner anywhere), given back by :meth:`aclose`."""

    def __init__(self, url: str, **options: Any) -> None:
        check_url(url)
        self.url, self._options = url, options
        self._client: aioredis.Redis | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def client(self) -> aioredis.Redis:
        loop = asyncio.get_running_loop()
        if self._client is None or self._loop is not loop:
            self._client, self._loop = shared_client(self.url, **self._options), loop
        return self._client

    async def aclose(self) -> None:
        if self._client is not None and self._loop is asyncio.get_running_loop():
            await release_client(self._client)
        self._client = self._loop = None


DEFAULT_PREFIX = "massgen:"
_SCAN_BATCH = 1000
Query = tuple[str, Text, int]  # a search: query, text, limit

_APPEND = """
redis.call('RPUSH', KEYS[1], ARGV[1])
if redis.call('EXISTS', KEYS[2]) == 1 then redis.call('INCR', KEYS[2]) end
"""  # RPUSH, counted if the log was ever searched

_GAINED = """
local held = redis.call('LLEN', KEYS[1])
local count = redis.call('GET', KEYS[2])
local appended = count and tonumber(count) or -1
if appended < held then  -- its first search (or appends nobody counted): start counting
    appended = held
    redis.call('SET', KEYS[2], held)
end
local unseen = math.min(appended - tonumber(ARGV[1]), held)
local records = {}
if unseen > 0 then
    local first = held - unseen
    records = redis.call('LRANGE', KEYS[1], first, first + tonumber(ARGV[2]) - 1)
end
return {appended, held, records}
"""  # what a log gained since ARGV[1] appends: appends now, length, oldest unseen records
_PER_TRIP = 500  # a long log is copied in parts: no one reply holds the loop long


def _copy(
    c: sqlite3.Connection, log: str, kept: int, new: list[bytes], then: Query | None = None
) -> list[tuple[float, bytes]]:
    """Trim the copy of ``log`` to its newest ``kept`` records, add ``new``; search if asked."""
    with transaction(c, "DEFERRED"):
        c.execute(TRIM, (log, log, kept))
        c.executemany("INSERT INTO logs (log, record) VALUES (?, ?)", [(log, r) for r in new])
    return [] if then is None else search_log(c, log, *then)


def _bytes(value: bytes | str) -> bytes:  # as redis-py types replies; ours never decode
    return value.encode() if isinstance(value, str) else value


@map_errors(
    lambda self, e: TransportError(f"Redis store at {self.where}: {type(e).__name__}: {e}"),
    skip={"aclose"},
)
class RedisStore(Store):
    """A store on the process's shared client for ``url`` (``options``: :func:`redis_client`'s)."""

    def __init__(
        self, url: str = "redis://127.0.0.1:6379/0", *, prefix: str = DEFAULT_PREFIX, **options: Any
    ) -> None:
        self.where, self.prefix = redact_url(url), prefix
        self._lease = RedisLease(url, **options)
        self._copy: SQLiteStore | None = None  # the logs searched here, as far as seen
        self._seen: dict[str, int] = {}  # appends copied, per log
        self._copy_lock = asyncio.Lock()

    @property
    def _r(self) -> aioredis.Redis:
        return self._lease.client

    def __repr__(self) -> str:
        return f"RedisStore({self.where!r}, prefix={self.prefix!r})"

    def _key(self, key: str) -> str:
        return f"{self.prefix}kv:{key}"

    def _log(self, log: str) -> str:
        return f"{self.prefix}log:{log}"

    def _appended(self, log: str) -> str:
        return f"{self.prefix}logn:{log}"

    async def _scan(self, prefix: str) -> list[bytes]:
        literal = "".join("\\" + c if c in "*?[]\\" else c for c in self._key(prefix))
        pattern = literal + "*"  # a MATCH pattern for the keys that start with the prefix
        return [k async for k in self._r.scan_iter(match=pattern, count=_SCAN_BATCH)]

    async def get(self, key: str) -> bytes | None:
        value = await self._r.get(self._key(key))
        return None if value is None else _bytes(value)

    async def set(self, key: str, value: bytes, ttl: float | None = None) -> None:
        check_ttl(ttl)
        px = None if ttl is None else max(1, round(ttl * 1000))
        await self._r.set(self._key(key), value, px=px)

    async def delete(self, key: str) -> bool:
        return bool(await self._r.delete(self._key(key)))

    async def delete_prefix(self, prefix: str) -> int:
        keys = await self._scan(prefix)
        chunks = [keys[i : i + _SCAN_BATCH] for i in range(0, len(keys), _SCAN_BATCH)]
        return sum([int(await self._r.unlink(*chunk)) for chunk in chunks])

    async def count(self, prefix: str = "") -> int:
        return len(await self._scan(prefix))

    async def append(self, log: str, record: bytes) -> None:
        await self._r.eval(_APPEND, 2, self._log(log), self._appended(log), record)

    async def read(self, log: str, start: int = 0, limit: int | None = None) -> list[bytes]:
        check_count("limit", limit)
        if limit == 0:
            return []
        # From the end, the window is at most -start records: cut to ``limit`` here.
        end = -1 if limit is None or start < 0 else start + limit - 1
        return [_bytes(r) for r in await self._r.lrange(self._log(log), start, end)][:limit]

    async def length(self, log: str) -> int:
        return int(await self._r.llen(self._log(log)))

    async def trim(self, log: str, keep_last: int) -> None:
        check_count("keep_last", keep_last)
        if keep_last == 0:
            await self._r.delete(self._log(log))
        else:
            await self._r.ltrim(self._log(log), -keep_last, -1)

    async def search(
        self, log: str, query: str, text: Text, limit: int
    ) -> list[tuple[float, bytes]]:
        """Searches this process's copy of the log, first given what the log gained since."""
        check_count("limit", limit)
        if match_any(query) is None or limit <= 0:
            return []
        keys = [self._log(log), self._appended(log)]
        async with self._copy_lock:  # one search at a time brings the copy up to date
            copy = self._copy = self._copy or SQLiteStore(":memory:")
            seen = self._seen.get(log, 0)
            while True:
                appended, held, new = await self._r.eval(_GAINED, 2, *keys, seen, _PER_TRIP)
                if int(appended) < seen:  # the log was deleted with its count: copy afresh
                    seen = 0
                    continue
                unseen = min(int(appended) - seen, int(held))
                last = len(new) >= unseen
                job = functools.partial(
                    _copy,
                    log=log,
                    kept=int(held) - unseen,
                    new=[_bytes(r) for r in new],
                    then=(query, text, limit) if last else None,
                )
                found = await copy.run(job)
                seen = self._seen[log] = int(appended) - unseen + len(new)
                if last:
                    return found

    async def aclose(self) -> None:
        copy, self._copy = self._copy, None
        self._seen.clear()
        if copy is not None:
            await copy.aclose()
        await self._lease.aclose()
