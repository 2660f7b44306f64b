"""Per-backend rate limits: requests and tokens per minute, and requests in flight.

A weighted sliding-window log (docs/resilience.md says why, and why not a library): a request
is granted when, counting it, the last ``window`` seconds hold at most ``rpm`` requests and
``tpm`` tokens; its estimated tokens are corrected to the reported usage after the call.
:class:`Limiter` is the algorithm, written once; the log lives in :class:`MemoryLog` or in
Redis (:class:`RedisLog`, shared by every process, timed by the server's clock).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, cast

from massgen.backends.base import Backend
from massgen.errors import ConfigError, TransportError
from massgen.resilience.shared import Shared
from massgen.resilience.wrapper import Wrapper
from massgen.tokens import estimate_request
from massgen.types import Completion, CompletionRequest, StreamChunk

if TYPE_CHECKING:
    import redis.asyncio as aioredis

Sleep = Callable[[float], Awaitable[None]]
Entries = Sequence[tuple[float, int]]
"""A window's log: (time, tokens) per request, oldest first."""

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RateLimit:
    """Limits of one backend; ``None`` means unlimited.

    ``rpm``/``tpm``: requests and tokens per ``window`` seconds (a minute unless tests
    shorten it). ``max_in_flight``: requests running at once through one wrapper (per
    process, even with Redis). ``output_tokens``: what a request that sets no ``max_tokens``
    is assumed to answer with, until its usage is known.
    """

    rpm: int | None = None
    tpm: int | None = None
    max_in_flight: int | None = None
    output_tokens: int = 1024
    window: float = 60.0

    def __post_init__(self) -> None:
        for name in ("rpm", "tpm", "max_in_flight"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError("must be at least 1", key=f"rate_limit.{name}")
        if self.output_tokens < 0:
            raise ConfigError("must not be negative", key="rate_limit.output_tokens")
        if self.window <= 0:
            raise ConfigError("must be positive", key="rate_limit.window")

    def estimate(self, request: CompletionRequest) -> int:
        """Tokens ``request`` is charged before its usage is known (tool-call arguments and
        tool declarations count too, by the estimator memory uses)."""
        answer = self.output_tokens if request.max_tokens is None else request.max_tokens
        return estimate_request(request) + answer


def wait_for(live: Entries, now: float, limit: RateLimit, tokens: int) -> float:
    """Seconds until ``tokens`` more fit beside the ``live`` entries; 0 when they fit now."""
    wait = 0.0
    if limit.rpm is not None and len(live) >= limit.rpm:
        wait = live[len(live) - limit.rpm][0] + limit.window - now
    if limit.tpm is not None:
        excess = sum(t for _, t in live) + tokens - limit.tpm
        for at, spent in live:
            if excess <= 0:
                break
            excess -= spent
            if excess <= 0:
                wait = max(wait, at + limit.window - now)
    return wait


@dataclass(frozen=True, slots=True)
class Grant:
    """A request let through: its log entry ``id``, the ``tokens`` charged, and ``at``, the
    log's clock when it was granted. Without ``rpm`` and ``tpm`` nothing is logged: ``id``
    is empty and ``at`` is 0."""

    id: str
    tokens: int
    at: float


class Log(Protocol):
    """Where a limit's log lives. ``append`` is one atomic step: drop the entries that left
    the window, then log the request if it fits (:func:`wait_for` is 0); it returns the
    log's clock and, when the request did not fit, the live entries."""

    async def append(
        self, entry_id: str, tokens: int, limit: RateLimit
    ) -> tuple[float, Entries | None]: ...

    async def settle(self, grant: Grant, tokens: int) -> None: ...


class MemoryLog:
    """The log in this process. ``clock`` (seconds) is injectable for tests."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.entries: dict[str, list[float]] = {}  # id -> [at, tokens], oldest first

    async def append(
        self, entry_id: str, tokens: int, limit: RateLimit
    ) -> tuple[float, Entries | None]:
        now, entries = self.clock(), self.entries
        while entries:
            first = next(iter(entries))
            if entries[first][0] + limit.window > now:
                break
            del entries[first]
        live = [(at, int(spent)) for at, spent in entries.values()]
        if wait_for(live, now, limit, tokens) > 0:
            return now, live
        entries[entry_id] = [now, tokens]
        return now, None

    async def settle(self, grant: Grant, tokens: int) -> None:
        if grant.id in self.entries:
            self.entries[grant.id][1] = tokens


# KEYS[1]: ZSET, member '{id}:{tokens}', score: grant time in µs (the server's clock).
# ARGV: window µs, rpm (0: none), tpm (0: none), tokens, id, key ttl ms[, now µs].
# Returns {now} when logged, else {now, the live log WITHSCORES}; the wait is Python's.
_APPEND = """
local now = tonumber(ARGV[7])
if not now then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[1]))
local rpm, tpm, cost = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local log, total = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES'), 0
for i = 1, #log, 2 do total = total + tonumber(string.match(log[i], ':(%d+)$')) end
if (rpm > 0 and #log / 2 >= rpm) or (tpm > 0 and total + cost > tpm) then return {now, log} end
redis.call('ZADD', KEYS[1], now, ARGV[5] .. ':' .. ARGV[4])
redis.call('PEXPIRE', KEYS[1], ARGV[6])
return {now}
"""

# ARGV: the logged member, the corrected one.
_SETTLE = """
local at = redis.call('ZSCORE', KEYS[1], ARGV[1])
if at then redis.call('ZREM', KEYS[1], ARGV[1]); redis.call('ZADD', KEYS[1], at, ARGV[2]) end
"""


class RedisLog:
    """The log in Redis at ``{prefix}ratelimit:{key}`` (expires a second after the window
    when unused), timed by the Redis server's clock unless you pass ``clock`` (tests do).
    The client is the caller's to close."""

    def __init__(
        self, client: aioredis.Redis, prefix: str, key: str, *, clock: Callable[[], float] | None
    ) -> None:
        self.key = f"{prefix}ratelimit:{key}"
        self._clock = clock
        self._append = client.register_script(_APPEND)
        self._settle = client.register_script(_SETTLE)

    async def append(
        self, entry_id: str, tokens: int, limit: RateLimit
    ) -> tuple[float, Entries | None]:
        window = round(limit.window * 1e6)
        args: list[int | str] = [window, limit.rpm or 0, limit.tpm or 0, tokens, entry_id]
        args.append(window // 1000 + 1000)
        if self._clock is not None:
            args.append(round(self._clock() * 1e6))
        out = await self._append(keys=[self.key], args=args)
        if len(out) == 1:
            return int(out[0]) / 1e6, None
        members, times = out[1][::2], out[1][1::2]
        live = [
            (float(at) / 1e6, int(m.rsplit(b":", 1)[1]))
            for m, at in zip(members, times, strict=True)
        ]
        return int(out[0]) / 1e6, live

    async def settle(self, grant: Grant, tokens: int) -> None:
        await self._settle(
            keys=[self.key], args=[f"{grant.id}:{grant.tokens}", f"{grant.id}:{tokens}"]
        )


class Limiter:
    """Waits for room under ``limit`` in ``log``. Waiters in one process queue in FIFO
    order, so a large request is not starved by small ones and only the head polls."""

    def __init__(self, limit: RateLimit, log: Log, *, sleep: Sleep = asyncio.sleep) -> None:
        self.limit = limit
        self.log = log
        self._sleep = sleep
        self._queue = asyncio.Lock()

    async def acquire(self, tokens: int) -> Grant:
        """Wait until a request of ``tokens`` fits, and log it. A request larger than ``tpm``
        is charged ``tpm``: it waits for an empty window instead of forever."""
        limit = self.limit
        tokens = max(0, tokens if limit.tpm is None else min(tokens, limit.tpm))
        if limit.rpm is None and limit.tpm is None:
            return Grant("", tokens, 0.0)
        entry_id = uuid.uuid4().hex
        async with self._queue:
            while True:
                now, live = await self.log.append(entry_id, tokens, limit)
                if live is None:
                    return Grant(entry_id, tokens, now)
                await self._sleep(max(wait_for(live, now, limit, tokens), 1e-6))

    async def settle(self, grant: Grant, tokens: int) -> None:
        """Charge ``tokens`` instead of the estimate, if the entry is still in the window."""
        if grant.id:
            await self.log.settle(grant, max(0, tokens))


class MemoryLimiter(Limiter):
    """A limit counted in this process."""

    def __init__(
        self,
        limit: RateLimit,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        super().__init__(limit, MemoryLog(clock), sleep=sleep)


class RedisLimiter(Limiter):
    """A limit shared through Redis by every process and machine limiting ``key``, counted
    in this process while Redis is unreachable (:mod:`massgen.resilience.shared`)."""

    def __init__(
        self,
        client: aioredis.Redis,
        prefix: str,
        key: str,
        limit: RateLimit,
        *,
        clock: Callable[[], float] | None = None,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        remote, local = RedisLog(client, prefix, key, clock=clock), MemoryLog()
        self.fallback = Shared(f"rate limit {key}", remote, local, both=frozenset({"settle"}))
        super().__init__(limit, cast(Log, self.fallback), sleep=sleep)


class RateLimitedBackend(Wrapper):
    """Wraps a backend; same interface, each call first waits for a slot (at most
    ``max_in_flight`` at once), then for room under the limiter's rates."""

    def __init__(self, inner: Backend, limiter: Limiter) -> None:
        super().__init__(inner)
        self.limiter = limiter
        bound = limiter.limit.max_in_flight
        self._slots = asyncio.Semaphore(bound) if bound else None

    @contextlib.asynccontextmanager
    async def _turn(self, request: CompletionRequest) -> AsyncIterator[Grant]:
        async with self._slots or contextlib.nullcontext():
            yield await self.limiter.acquire(self.limiter.limit.estimate(request))

    async def _settle(self, grant: Grant, completion: Completion) -> None:
        """Charge what the provider reported (nothing for a cached answer); keep the
        estimate when it reported no usage. A limiter failing here is logged, not raised."""
        used = 0 if completion.cached else completion.usage.total_tokens
        if (used or completion.cached) and used != grant.tokens:
            try:
                await self.limiter.settle(grant, used)
            except TransportError as e:
                log.warning("rate limit of %s: usage not recorded: %s", self.name, e)

    async def complete(self, request: CompletionRequest) -> Completion:
        async with self._turn(request) as grant:
            completion = await self.inner.complete(request)
            await self._settle(grant, completion)
            return completion

    async def stream(self, request: CompletionRequest) -> AsyncIterator[StreamChunk]:
        async with self._turn(request) as grant:
            async for chunk in self.inner.stream(request):
                if chunk.completion is not None:
                    await self._settle(grant, chunk.completion)
                yield chunk
