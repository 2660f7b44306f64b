"""Per-backend rate limits: requests and tokens per minute, and requests in flight.

A request waits (on the event loop, never blocking it) until it fits. Its tokens are
estimated before the call (prompt estimate plus ``max_tokens``) and corrected to the
provider's reported usage after it.

The algorithm is a weighted sliding-window log: every granted request is logged with its
time and tokens, and a new one is granted when, counting it, the last ``window`` seconds hold
at most ``rpm`` requests and ``tpm`` tokens. So no window of that length ever holds more than
the limits (a fixed window lets twice through at its edge, GCRA a burst plus the rate), yet a
team fanning out may burst up to the limits at once. One log entry per request.

Why hand-written: aiolimiter (a leaky bucket) lives in one process, takes no clock and cannot
correct a charge; pyrate-limiter and limits log a weight of n as n entries (a 200k-token
minute would be 200k Redis members) and read the client's clock. Here the same algorithm
runs in Python (:class:`MemoryLimiter`) and in one Lua script (:class:`RedisLimiter`, shared
by processes and machines, timed by the Redis server's clock), so turning Redis on changes
where a limit is counted, not how.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from massgen.backends.base import Backend
from massgen.errors import ConfigError, TransportError
from massgen.types import Completion, CompletionRequest, StreamChunk

if TYPE_CHECKING:
    import redis.asyncio as aioredis

Sleep = Callable[[float], Awaitable[None]]

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
        """Tokens ``request`` is charged before its usage is known."""
        from massgen.memory.tokens import estimate_message, estimate_tools

        # The estimator memory uses: tool-call arguments and tool declarations count too.
        answer = self.output_tokens if request.max_tokens is None else request.max_tokens
        prompt = sum(estimate_message(m) for m in request.messages)
        return prompt + estimate_tools(request.tools) + answer


@dataclass(frozen=True, slots=True)
class Grant:
    """A request let through: its log entry ``id``, the ``tokens`` charged, and ``at``, the
    limiter's clock when it was granted (the Redis server's, in seconds, for Redis). Without
    ``rpm`` and ``tpm`` nothing is logged: ``id`` is empty and ``at`` is 0."""

    id: str
    tokens: int
    at: float


class Limiter(Protocol):
    """What :class:`RateLimitedBackend` needs: wait for room, then correct the charge."""

    limit: RateLimit

    async def acquire(self, tokens: int) -> Grant: ...

    async def settle(self, grant: Grant, tokens: int) -> None: ...

    async def aclose(self) -> None: ...


class _WaitingLimiter(ABC):
    """The waiting loop both limiters share. Waiters in one process queue in FIFO order, so
    a large request is not starved by small ones and only the head of the queue polls."""

    def __init__(self, limit: RateLimit, sleep: Sleep) -> None:
        self.limit = limit
        self._sleep = sleep
        self._queue = asyncio.Lock()

    @abstractmethod
    async def _try(self, entry_id: str, tokens: int) -> Grant | float:
        """Grant now, or say how many seconds until the request would fit."""

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
                got = await self._try(entry_id, tokens)
                if isinstance(got, Grant):
                    return got
                await self._sleep(got)

    async def aclose(self) -> None:  # noqa: B027 (a deliberate no-op default)
        """Release what the limiter holds; the in-process one holds nothing."""


@dataclass(slots=True)
class _Entry:
    id: str
    at: float
    tokens: int


def _wait(log: deque[_Entry], total: int, now: float, limit: RateLimit, tokens: int) -> float:
    """Seconds until ``tokens`` more fit in the window; 0 when they fit now. ``log`` holds
    the live entries, oldest first, ``total`` their tokens."""
    wait = 0.0
    if limit.rpm is not None and len(log) >= limit.rpm:
        wait = log[len(log) - limit.rpm].at + limit.window - now
    if limit.tpm is not None and total + tokens > limit.tpm:
        excess = total + tokens - limit.tpm
        for entry in log:
            excess -= entry.tokens
            if excess <= 0:
                wait = max(wait, entry.at + limit.window - now)
                break
    return wait


class MemoryLimiter(_WaitingLimiter):
    """The log in this process. ``clock`` (seconds) and ``sleep`` are injectable for tests."""

    def __init__(
        self,
        limit: RateLimit,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        super().__init__(limit, sleep)
        self._clock = clock
        self._log: deque[_Entry] = deque()
        self._by_id: dict[str, _Entry] = {}
        self._total = 0

    async def _try(self, entry_id: str, tokens: int) -> Grant | float:
        now = self._clock()
        while self._log and self._log[0].at + self.limit.window <= now:
            gone = self._log.popleft()
            self._total -= gone.tokens
            del self._by_id[gone.id]
        wait = _wait(self._log, self._total, now, self.limit, tokens)
        if wait > 0:
            return wait
        entry = _Entry(entry_id, now, tokens)
        self._log.append(entry)
        self._by_id[entry_id] = entry
        self._total += tokens
        return Grant(entry_id, tokens, now)

    async def settle(self, grant: Grant, tokens: int) -> None:
        """Charge ``tokens`` instead of the estimate, if the entry is still in the window."""
        entry = self._by_id.get(grant.id)
        if entry is not None:
            self._total += max(0, tokens) - entry.tokens
            entry.tokens = max(0, tokens)


# KEYS[1]: ZSET log, member '{id}:{tokens}', score = grant time in µs (server clock).
# KEYS[2]: STRING, the sum of the tokens in the log.
# ARGV: window µs, rpm (0: none), tpm (0: none), tokens, id, key ttl ms[, now µs].
# Returns {1, now µs} when granted (and logged), else {0, µs until it would fit}.
_ACQUIRE = """
local now = tonumber(ARGV[7])
if not now then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local window, rpm, tpm = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local cost = tonumber(ARGV[4])
local function weight(member) return tonumber(string.match(member, ':(%d+)$')) end
local total = tonumber(redis.call('GET', KEYS[2]) or '0')
local gone = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now - window)
local n = redis.call('ZCARD', KEYS[1]) - #gone
if #gone > 0 then
  for _, m in ipairs(gone) do total = total - weight(m) end
  if n == 0 then total = 0 end
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
  redis.call('SET', KEYS[2], total, 'PX', ARGV[6])
end
local wait = 0
if rpm > 0 and n >= rpm then
  local e = redis.call('ZRANGE', KEYS[1], n - rpm, n - rpm, 'WITHSCORES')
  wait = tonumber(e[2]) + window - now
end
if tpm > 0 and total + cost > tpm then
  local excess = total + cost - tpm
  local log = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
  for i = 1, #log, 2 do
    excess = excess - weight(log[i])
    if excess <= 0 then
      wait = math.max(wait, tonumber(log[i + 1]) + window - now)
      break
    end
  end
end
if wait > 0 then return {0, wait} end
redis.call('ZADD', KEYS[1], now, ARGV[5] .. ':' .. ARGV[4])
redis.call('PEXPIRE', KEYS[1], ARGV[6])
redis.call('SET', KEYS[2], total + cost, 'PX', ARGV[6])
return {1, now}
"""

# KEYS: as above. ARGV: logged member, corrected member, token difference.
_SETTLE = """
local at = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not at then return 0 end
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[1], at, ARGV[2])
redis.call('INCRBY', KEYS[2], ARGV[3])
return 1
"""


class RedisLimiter(_WaitingLimiter):
    """The log in Redis, shared by every process and machine limiting ``key``.

    Keys: ``{prefix}ratelimit:{key}`` (ZSET, the log) and ``{prefix}ratelimit:{key}:tokens``
    (STRING, its token sum); both expire a second after the window when unused. Pass
    ``client`` to share one connection pool (it is then not closed here). Times are the
    Redis server's, one clock for every machine, unless you pass ``clock`` (tests do).
    """

    def __init__(
        self,
        url: str,
        prefix: str,
        key: str,
        limit: RateLimit,
        *,
        client: aioredis.Redis | None = None,
        clock: Callable[[], float] | None = None,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        super().__init__(limit, sleep)
        self._clock = clock
        from redis.exceptions import RedisError

        from massgen.resilience.shared import LocalFallback, unreachable
        from massgen.store.redis_store import SHARED_STATE_RETRIES, redis_client

        self._owned = client is None
        self._r: aioredis.Redis = client or redis_client(url, retries=SHARED_STATE_RETRIES)
        self._redis_error = RedisError
        self._unreachable = unreachable
        self.keys = [f"{prefix}ratelimit:{key}", f"{prefix}ratelimit:{key}:tokens"]
        self._acquire = self._r.register_script(_ACQUIRE)
        self._settle = self._r.register_script(_SETTLE)
        self.local = MemoryLimiter(limit, sleep=sleep)
        """Counts in this process while Redis is unreachable."""
        self.fallback = LocalFallback(f"rate limit {key}")

    async def _run(self, script: Any, args: list[Any]) -> Any:
        """The script's answer, or ``None`` when Redis is unreachable (the caller then
        counts locally)."""
        if self.fallback.active:
            return None
        try:
            out = await script(keys=self.keys, args=args)
        except self._redis_error as e:
            if self._unreachable(e):
                self.fallback.lost(e)
                return None
            raise TransportError(f"rate limit log in Redis: {type(e).__name__}") from e
        self.fallback.back()
        return out

    async def _try(self, entry_id: str, tokens: int) -> Grant | float:
        limit = self.limit
        window_us = round(limit.window * 1_000_000)
        args = [
            window_us,
            limit.rpm or 0,
            limit.tpm or 0,
            tokens,
            entry_id,
            window_us // 1000 + 1000,
        ]
        if self._clock is not None:
            args.append(round(self._clock() * 1_000_000))
        out = await self._run(self._acquire, args)
        if out is None:
            return await self.local._try(entry_id, tokens)
        granted, value = out
        if granted:
            return Grant(entry_id, tokens, int(value) / 1_000_000)
        return int(value) / 1_000_000

    async def settle(self, grant: Grant, tokens: int) -> None:
        """Charge ``tokens`` instead of the estimate, if the entry is still in the window
        (in Redis, or in the local log when it was granted there)."""
        if not grant.id:
            return
        await self.local.settle(grant, tokens)
        tokens = max(0, tokens)
        old, new = f"{grant.id}:{grant.tokens}", f"{grant.id}:{tokens}"
        await self._run(self._settle, [old, new, tokens - grant.tokens])

    async def aclose(self) -> None:
        if self._owned:
            await self._r.aclose()


class RateLimitedBackend(Backend):
    """Wraps a backend; same interface, each call first waits for a slot (at most
    ``max_in_flight`` at once) and then for room under the limiter's rates. Closing the
    wrapper closes the limiter too."""

    def __init__(self, inner: Backend, limiter: Limiter) -> None:
        super().__init__(model=inner.model, name=inner.name)
        self.inner = inner
        self.limiter = limiter
        self.provider = inner.provider
        self.supports_tools = inner.supports_tools
        bound = limiter.limit.max_in_flight
        self._slots = asyncio.Semaphore(bound) if bound else None

    def describe(self) -> str:
        return self.inner.describe()

    @contextlib.asynccontextmanager
    async def _turn(self, request: CompletionRequest) -> AsyncIterator[Grant]:
        async with self._slots or contextlib.nullcontext():
            yield await self.limiter.acquire(self.limiter.limit.estimate(request))

    async def _settle(self, grant: Grant, completion: Completion) -> None:
        """Charge what the provider reported (nothing for a cached answer); keep the
        estimate when it reported no usage. The answer matters more than the bookkeeping:
        a limiter that fails here is logged, not raised."""
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

    async def aclose(self) -> None:
        try:
            await self.inner.aclose()
        finally:
            await self.limiter.aclose()
