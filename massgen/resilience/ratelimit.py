"""Per-backend rate limits (rpm, tpm, requests in flight) as a weighted sliding-window log
(docs/resilience.md says why): :class:`Limiter` is the algorithm, over a log in this process
(:class:`MemoryLog`) or in Redis (:class:`RedisLog`, timed by the server's clock)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

from massgen.backends.base import Backend
from massgen.errors import ConfigError, TransportError
from massgen.resilience.shared import Shared
from massgen.resilience.wrapper import Call, Wrapper
from massgen.tokens import estimate_request
from massgen.types import CompletionRequest, StreamChunk

if TYPE_CHECKING:
    from massgen.store.redis_client import RedisLease

Sleep = Callable[[float], Awaitable[None]]
Entries = Sequence[tuple[float, int]]  # a window's log: (time, tokens) per request, oldest first
Appended = tuple[float, Entries | None]  # the log's clock, and the live entries if it was full
log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RateLimit:
    """Limits of one backend (``None``: unlimited), per ``window`` seconds; ``max_in_flight``
    is per process even with Redis; ``output_tokens``: the answer assumed without max_tokens."""

    rpm: int | None = None
    tpm: int | None = None
    max_in_flight: int | None = None
    output_tokens: int = 1024
    window: float = 60.0

    def __post_init__(self) -> None:
        for name, low in (("rpm", 1), ("tpm", 1), ("max_in_flight", 1), ("output_tokens", 0)):
            if (value := getattr(self, name)) is not None and value < low:
                raise ConfigError(f"must be at least {low}", key=f"rate_limit.{name}")
        if self.window <= 0:
            raise ConfigError("must be positive", key="rate_limit.window")

    def estimate(self, request: CompletionRequest) -> int:
        """Tokens charged until the usage is known."""
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
    """A request let through: its log entry (``""``: none), tokens charged, and when."""

    id: str
    tokens: int
    at: float


class MemoryLog:
    """The log in this process, and the steps every log has (each atomic)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.entries: dict[str, list[float]] = {}  # id -> [at, tokens], oldest first
        self._order: deque[str] = deque()  # their ids, to drop the oldest by key
        self._tokens = 0.0  # their sum

    async def append(self, entry_id: str, tokens: int, limit: RateLimit) -> Appended:
        now, order, entries = self.clock(), self._order, self.entries
        while order and (first := entries[order[0]])[0] + limit.window <= now:
            self._tokens -= first[1]
            del entries[order.popleft()]
        full = limit.rpm is not None and len(order) >= limit.rpm
        if full or (limit.tpm is not None and self._tokens + tokens > limit.tpm):
            return now, [(at, int(spent)) for at, spent in entries.values()]
        entries[entry_id] = [now, tokens]
        order.append(entry_id)
        self._tokens += tokens
        return now, None

    async def settle(self, grant: Grant, tokens: int) -> None:
        if (entry := self.entries.get(grant.id)) is not None:
            self._tokens += tokens - entry[1]
            entry[1] = tokens


# KEYS[1]: ZSET, member '{id}:{tokens}', score: grant time in µs (the server's clock).
# ARGV: window µs, rpm (0: none), tpm (0: none), tokens, id, key ttl ms, now µs ('': TIME).
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


class RedisLog(MemoryLog):
    """The log in Redis at ``{prefix}ratelimit:{key}``, on the server's clock by default."""

    def __init__(
        self, lease: RedisLease, prefix: str, key: str, *, clock: Callable[[], float] | None
    ) -> None:
        self.key, self._clock, self._lease = f"{prefix}ratelimit:{key}", clock, lease

    async def append(self, entry_id: str, tokens: int, limit: RateLimit) -> Appended:
        window, clock = round(limit.window * 1e6), self._clock
        at: int | str = "" if clock is None else round(clock() * 1e6)  # "": the server's clock
        args: list[int | str] = [window, limit.rpm or 0, limit.tpm or 0, tokens, entry_id]
        script = self._lease.client.register_script(_APPEND)
        now, *rest = await script(keys=[self.key], args=[*args, window // 1000 + 1000, at])
        if not rest:
            return int(now) / 1e6, None
        pairs = zip(rest[0][::2], rest[0][1::2], strict=True)
        return int(now) / 1e6, [(float(t) / 1e6, int(m.rsplit(b":", 1)[1])) for m, t in pairs]

    async def settle(self, grant: Grant, tokens: int) -> None:
        was, now = f"{grant.id}:{grant.tokens}", f"{grant.id}:{tokens}"
        await self._lease.client.register_script(_SETTLE)(keys=[self.key], args=[was, now])


class Limiter:
    """Waits for room under ``limit`` in ``log`` (this process's by default, on ``clock``),
    FIFO within a process: a large request is not starved by small ones; only the head polls."""

    def __init__(
        self,
        limit: RateLimit,
        log: MemoryLog | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.limit, self.log, self._sleep = limit, log or MemoryLog(clock), sleep
        self._queue = asyncio.Lock()

    async def acquire(self, tokens: int) -> Grant:
        """Wait until a request of ``tokens`` fits, and log it (at most ``tpm``: a larger one
        waits for an empty window instead of forever)."""
        limit = self.limit
        tokens = max(0, tokens if limit.tpm is None else min(tokens, limit.tpm))
        if limit.rpm is None and limit.tpm is None:
            return Grant("", tokens, 0.0)
        entry_id = uuid.uuid4().hex
        async with self._queue:
            while (got := await self.log.append(entry_id, tokens, limit))[1] is not None:
                await self._sleep(max(wait_for(got[1], got[0], limit, tokens), 1e-6))
            return Grant(entry_id, tokens, got[0])

    async def settle(self, grant: Grant, tokens: int) -> None:
        """Charge ``tokens`` instead of the estimate, if the entry is still in the window."""
        if grant.id:
            await self.log.settle(grant, max(0, tokens))


class RedisLimiter(Limiter):
    """A limit shared through Redis by every process limiting ``key``."""

    def __init__(
        self,
        lease: RedisLease,
        prefix: str,
        key: str,
        limit: RateLimit,
        *,
        clock: Callable[[], float] | None = None,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        remote = RedisLog(lease, prefix, key, clock=clock)
        self.fallback = Shared(f"rate limit {key}", remote, MemoryLog(), both={"settle"})
        super().__init__(limit, cast(MemoryLog, self.fallback), sleep=sleep)


class RateLimitedBackend(Wrapper):
    """Wraps a backend; a call waits for one of ``max_in_flight`` slots, then for room."""

    def __init__(self, inner: Backend, limiter: Limiter) -> None:
        super().__init__(inner)
        self.limiter, bound = limiter, limiter.limit.max_in_flight
        self._slots = asyncio.Semaphore(bound) if bound else contextlib.nullcontext()

    async def around(self, request: CompletionRequest, call: Call) -> AsyncIterator[StreamChunk]:
        async with self._slots:
            grant = await self.limiter.acquire(self.limiter.limit.estimate(request))
            async for chunk in call(request):
                if (done := chunk.completion) is not None:
                    # Charge what was reported (nothing for a cached answer; the estimate if
                    # nothing was). A limiter failing here is logged, not raised.
                    used = 0 if done.cached else done.usage.total_tokens
                    if (used or done.cached) and used != grant.tokens:
                        try:
                            await self.limiter.settle(grant, used)
                        except TransportError as e:
                            log.warning("rate limit of %s: usage not recorded: %s", self.name, e)
                yield chunk
