"""The one place that builds redis-py clients: one per Redis URL and event loop in a process,
shared by the bus, the Redis store and the shared guards (:func:`shared_client`,
:class:`RedisLease`). Importing this module imports redis."""

from __future__ import annotations

import asyncio
import inspect
import weakref
from typing import Any

import redis.asyncio as aioredis
from redis import exceptions as rexc
from redis.asyncio.connection import parse_url
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff

from massgen.errors import ConfigError
from massgen.redact import redact_url

REPLY_TIMEOUT = 30.0
"""Seconds a reply may take past a blocking command's own wait: beyond it a frozen server or a
dead link that TCP has not noticed is a timeout, handled like a lost connection."""
RETRIES = 12
"""Reconnection attempts, 50 ms doubling to 1 s apart (about 9 s): long enough to ride out a
Redis restart under every provider call and every agent."""
MAX_CONNECTIONS = 10_000
"""Each blocking read (an agent's inbox, its reply stream) holds a connection while it waits."""


def check_url(url: str) -> None:
    """Raise a :class:`ConfigError` (without the password) for a URL redis-py cannot parse."""
    try:
        parse_url(url)
    except ValueError as e:
        raise ConfigError(
            f"invalid Redis URL {redact_url(url)!r}",
            hint="use redis://[user:password@]host[:port][/db] or rediss:// for TLS",
        ) from e


def redis_client(
    url: str,
    *,
    retries: int = RETRIES,
    connect_timeout: float = 5.0,
    max_connections: int = MAX_CONNECTIONS,
    reply_timeout: float = REPLY_TIMEOUT,
) -> aioredis.Redis:
    """A new client that rides out short outages: a lost connection or a timeout is retried
    ``retries`` times with exponential backoff; a burst waits for a free connection."""
    check_url(url)
    pool = aioredis.BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
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
    for key, entry in list(clients.items()):
        if entry[0] is client:
            entry[1] -= 1
            if entry[1] > 0:
                return
            del clients[key]
            break
    await client.aclose()


class RedisLease:
    """A user's hold on the shared client of one URL: taken on first use inside the event
    loop (so you may build the owner anywhere), given back by :meth:`aclose`."""

    def __init__(self, url: str, **options: Any) -> None:
        check_url(url)
        self.url = url
        self._options = options
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
