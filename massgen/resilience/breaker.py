"""A circuit breaker per backend endpoint: stop hammering an endpoint that is down.

After ``failures`` consecutive calls that *trip* it (5xx, 529, 408, timeouts, connection
errors), the circuit opens: calls fail at once with :class:`CircuitOpen`, no request sent.
After ``cooldown`` seconds one call, the probe, is let through (half-open) while every other
caller still fails fast; the probe's success closes the circuit, its failure re-opens it for
another cooldown.

Any answer from the endpoint that is not a tripping failure counts as a success, because it
proves the endpoint is alive: 4xx are the caller's fault (400, 401, 404...) and 429 means
"alive but busy" (the rate limiter and the retry wrapper deal with it). Errors that are not
provider errors (cancellation, bugs) count as nothing.

The state lives in a :class:`BreakerState`: in-process by default, or in Redis
(:class:`RedisBreakerState`) so every process and machine using an endpoint shares one
circuit. The breaker emits no events; the live view reads :attr:`CircuitBreaker.state` or
subscribes to its changes.
"""

from __future__ import annotations

import itertools
import logging
import os
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit

from massgen.backends.base import Backend
from massgen.errors import ConfigError, ProviderError, RateLimited, TransportError
from massgen.types import Completion, CompletionRequest, StreamChunk

if TYPE_CHECKING:
    import redis.asyncio as aioredis

Clock = Callable[[], float]

log = logging.getLogger(__name__)

_KEY_TTL_MS = 86_400_000  # an idle circuit's Redis keys vanish after a day (it closes)


class _Tokens:
    """Names for callers, unique across processes and machines: a random prefix per
    process (renewed in a forked child) and a counter. A uuid4 per call cost more than the
    rest of the breaker's bookkeeping."""

    def __init__(self) -> None:
        self.renew()
        os.register_at_fork(after_in_child=self.renew)

    def renew(self) -> None:
        self._prefix = uuid.uuid4().hex[:16] + "-"
        self._count = itertools.count()

    def __call__(self) -> str:
        return f"{self._prefix}{next(self._count)}"


_token = _Tokens()


class CircuitState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitOpen(ProviderError):
    """The endpoint's circuit is open: the call failed fast, no request was sent.

    Never retried (the point is not to call); ``retry_after`` is the time left before the
    next probe, when known.
    """

    retryable = False

    def __init__(self, key: str, *, provider: str = "", retry_after: float | None = None) -> None:
        self.key = key
        when = f"; next probe in {retry_after:.1f}s" if retry_after else "; a probe is running"
        super().__init__(
            f"circuit open for {key}{when}", provider=provider, retry_after=retry_after
        )


@dataclass(frozen=True, slots=True)
class BreakerPolicy:
    """``failures`` consecutive tripping failures open the circuit for ``cooldown`` seconds.

    ``probe_timeout`` bounds how long one probe holds the half-open permit: if its process
    dies mid-call, another caller may probe after that long.
    """

    failures: int = 5
    cooldown: float = 30.0
    probe_timeout: float = 120.0

    def __post_init__(self) -> None:
        if self.failures < 1:
            raise ConfigError("must be at least 1", key="breaker.failures")
        if self.cooldown <= 0:
            raise ConfigError("must be positive", key="breaker.cooldown")
        if self.probe_timeout <= 0:
            raise ConfigError("must be positive", key="breaker.probe_timeout")


@dataclass(frozen=True, slots=True)
class StateChange:
    """What a listener hears: circuit ``key`` went from ``previous`` to ``state``."""

    key: str
    previous: CircuitState
    state: CircuitState


Listener = Callable[[StateChange], None]


@dataclass(frozen=True, slots=True)
class Admission:
    """A state store's answer to "may I call?". ``retry_after``: seconds left while open."""

    state: CircuitState
    allowed: bool
    retry_after: float | None = None


def trips(error: BaseException) -> bool:
    """True for failures that say the endpoint is unwell: 5xx (529 too), 408, timeouts and
    connection errors. Not 429, other 4xx, or anything that is not a provider error."""
    if not isinstance(error, ProviderError) or not error.retryable:
        return False
    if error.status is None:
        return not isinstance(error, RateLimited)  # a 429 without its status
    return error.status >= 500 or error.status == 408


def endpoint_key(backend: Backend) -> str:
    """``provider:base_url`` (or ``provider:name`` without one): the endpoint a circuit
    guards. Credentials, query and fragment are dropped from the URL so the key never
    carries a secret (it ends up in Redis and in messages)."""
    base_url = getattr(backend, "base_url", None)
    if isinstance(base_url, str) and base_url:
        parts = urlsplit(base_url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
        where = f"{parts.scheme}://{host}{port}{parts.path.rstrip('/')}"
    else:
        where = backend.name
    return f"{backend.provider}:{where}"


class BreakerState(Protocol):
    """Where a circuit's state lives. Each method is one atomic step.

    ``token`` names the caller holding the probe permit; ``None`` for an ordinary call.
    The recording methods return the state the step left, or ``None`` when it changed
    nothing (a late answer to a call made before the circuit opened).
    """

    async def admit(
        self, now: float, cooldown: float, probe_timeout: float, token: str
    ) -> Admission: ...

    async def record_failure(
        self, now: float, threshold: int, token: str | None
    ) -> CircuitState | None: ...

    async def record_success(self, token: str | None) -> CircuitState | None: ...

    async def release(self, token: str) -> None: ...

    async def peek(self, now: float, cooldown: float) -> CircuitState: ...

    async def aclose(self) -> None: ...


class MemoryBreakerState:
    """The state in this process. Each step runs without awaiting, so it is atomic."""

    def __init__(self) -> None:
        self.failures = 0
        self.opened_at: float | None = None
        self._probe: tuple[str, float] | None = None  # (token, expires at)

    def _state(self, now: float, cooldown: float) -> CircuitState:
        if self.opened_at is None:
            return CircuitState.CLOSED
        if now < self.opened_at + cooldown:
            return CircuitState.OPEN
        return CircuitState.HALF_OPEN

    async def admit(
        self, now: float, cooldown: float, probe_timeout: float, token: str
    ) -> Admission:
        state = self._state(now, cooldown)
        if state is CircuitState.CLOSED:
            return Admission(state, True)
        if state is CircuitState.OPEN:
            assert self.opened_at is not None
            return Admission(state, False, self.opened_at + cooldown - now)
        if self._probe is not None and self._probe[1] > now:
            return Admission(state, False)
        self._probe = (token, now + probe_timeout)
        return Admission(state, True)

    async def record_failure(
        self, now: float, threshold: int, token: str | None
    ) -> CircuitState | None:
        if token is not None:
            self.opened_at = now
            self._release(token)
            return CircuitState.OPEN
        if self.opened_at is not None:
            return None
        self.failures += 1
        if self.failures >= threshold:
            self.opened_at = now
            return CircuitState.OPEN
        return CircuitState.CLOSED

    async def record_success(self, token: str | None) -> CircuitState | None:
        if token is not None:
            self.opened_at = None
            self.failures = 0
            self._release(token)
            return CircuitState.CLOSED
        if self.opened_at is not None:
            return None
        self.failures = 0
        return CircuitState.CLOSED

    def _release(self, token: str) -> None:
        if self._probe is not None and self._probe[0] == token:
            self._probe = None

    async def release(self, token: str) -> None:
        self._release(token)

    async def peek(self, now: float, cooldown: float) -> CircuitState:
        return self._state(now, cooldown)

    async def aclose(self) -> None:
        pass


# Lua: each script is one atomic step on KEYS[1] (HASH failures, opened_at) and KEYS[2]
# (STRING probe permit, SET NX PX). Times are the caller's clock, in seconds, as strings:
# Lua numbers returned to Redis would be truncated to integers.
_ADMIT = """
local opened = redis.call('HGET', KEYS[1], 'opened_at')
if not opened then return {'closed', 1, ''} end
local left = tonumber(opened) + tonumber(ARGV[2]) - tonumber(ARGV[1])
if left > 0 then return {'open', 0, tostring(left)} end
if redis.call('SET', KEYS[2], ARGV[4], 'NX', 'PX', ARGV[3]) then return {'half_open', 1, ''} end
return {'half_open', 0, ''}
"""

# ARGV: now, threshold, token ('' for an ordinary call), key ttl ms.
_FAILURE = """
if ARGV[3] ~= '' then
  redis.call('HSET', KEYS[1], 'opened_at', ARGV[1])
  if redis.call('GET', KEYS[2]) == ARGV[3] then redis.call('DEL', KEYS[2]) end
  redis.call('PEXPIRE', KEYS[1], ARGV[4])
  return 'open'
end
if redis.call('HEXISTS', KEYS[1], 'opened_at') == 1 then return false end
local n = redis.call('HINCRBY', KEYS[1], 'failures', 1)
redis.call('PEXPIRE', KEYS[1], ARGV[4])
if n >= tonumber(ARGV[2]) then
  redis.call('HSET', KEYS[1], 'opened_at', ARGV[1])
  return 'open'
end
return 'closed'
"""

# ARGV: token ('' for an ordinary call).
_SUCCESS = """
if ARGV[1] ~= '' then
  redis.call('DEL', KEYS[1])
  if redis.call('GET', KEYS[2]) == ARGV[1] then redis.call('DEL', KEYS[2]) end
  return 'closed'
end
if redis.call('HEXISTS', KEYS[1], 'opened_at') == 1 then return false end
if redis.call('HEXISTS', KEYS[1], 'failures') == 1 then redis.call('DEL', KEYS[1]) end
return 'closed'
"""

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
"""


_LOCAL = object()  # a step that went to the local state: Redis was unreachable


class RedisBreakerState:
    """The state in Redis, shared by every process and machine with the same ``key``.

    Keys: ``{prefix}breaker:{key}`` (HASH: ``failures``, ``opened_at``) and
    ``{prefix}breaker:{key}:probe`` (STRING: the probe holder's token, SET NX PX
    ``probe_timeout``). Pass ``client`` to share one connection pool (it is then not closed
    here). ``opened_at`` is the callers' clock, so use a wall clock (the default) when
    machines share a circuit.

    A lost connection is retried with backoff (a Redis restart only delays a call); while
    Redis stays unreachable past that, the circuit is kept in this process (see
    :mod:`massgen.resilience.shared`) rather than failing the call.
    """

    def __init__(
        self,
        url: str,
        prefix: str,
        key: str,
        *,
        client: aioredis.Redis | None = None,
    ) -> None:
        from redis.exceptions import RedisError

        from massgen.resilience.shared import LocalFallback, unreachable
        from massgen.store.redis_store import SHARED_STATE_RETRIES, redis_client

        self._owned = client is None
        self._r: aioredis.Redis = client or redis_client(url, retries=SHARED_STATE_RETRIES)
        self._redis_error = RedisError
        self._unreachable = unreachable
        self.keys = [f"{prefix}breaker:{key}", f"{prefix}breaker:{key}:probe"]
        self._admit = self._r.register_script(_ADMIT)
        self._failure = self._r.register_script(_FAILURE)
        self._success = self._r.register_script(_SUCCESS)
        self._release = self._r.register_script(_RELEASE)
        self.local = MemoryBreakerState()
        """Stands in for Redis while it is unreachable."""
        self.fallback = LocalFallback(f"circuit breaker {key}")

    async def _run(self, script: Any, keys: list[str], args: list[Any]) -> Any:
        """The script's answer, or ``_LOCAL`` when the step must go to the local state."""
        if self.fallback.active:
            return _LOCAL
        try:
            out = await script(keys=keys, args=args)
        except self._redis_error as e:
            if self._unreachable(e):
                self.fallback.lost(e)
                return _LOCAL
            raise TransportError(f"circuit breaker state in Redis: {type(e).__name__}") from e
        self.fallback.back()
        return out

    async def admit(
        self, now: float, cooldown: float, probe_timeout: float, token: str
    ) -> Admission:
        out = await self._run(
            self._admit, self.keys, [repr(now), repr(cooldown), _ms(probe_timeout), token]
        )
        if out is _LOCAL:
            return await self.local.admit(now, cooldown, probe_timeout, token)
        state, allowed, left = out
        return Admission(CircuitState(_text(state)), bool(allowed), float(left) if left else None)

    async def record_failure(
        self, now: float, threshold: int, token: str | None
    ) -> CircuitState | None:
        out = await self._run(
            self._failure, self.keys, [repr(now), threshold, token or "", _KEY_TTL_MS]
        )
        if out is _LOCAL:
            return await self.local.record_failure(now, threshold, token)
        return CircuitState(_text(out)) if out else None

    async def record_success(self, token: str | None) -> CircuitState | None:
        out = await self._run(self._success, self.keys, [token or ""])
        if out is _LOCAL:
            return await self.local.record_success(token)
        return CircuitState(_text(out)) if out else None

    async def release(self, token: str) -> None:
        await self.local.release(token)  # a probe the local state admitted
        await self._run(self._release, self.keys[1:], [token])

    async def peek(self, now: float, cooldown: float) -> CircuitState:
        if self.fallback.active:
            return await self.local.peek(now, cooldown)
        try:
            opened = await self._r.hget(self.keys[0], "opened_at")
        except self._redis_error as e:
            if self._unreachable(e):
                self.fallback.lost(e)
                return await self.local.peek(now, cooldown)
            raise TransportError(f"circuit breaker state in Redis: {type(e).__name__}") from e
        self.fallback.back()
        if opened is None:
            return CircuitState.CLOSED
        if now < float(opened) + cooldown:
            return CircuitState.OPEN
        return CircuitState.HALF_OPEN

    async def aclose(self) -> None:
        if self._owned:
            await self._r.aclose()


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class CircuitBreaker:
    """The circuit of one endpoint. Share one instance among the backends that call it.

    ``clock`` gives seconds; a wall clock by default because Redis-shared circuits compare
    times taken on different machines. Tests pass a fake one.
    """

    def __init__(
        self,
        key: str,
        policy: BreakerPolicy | None = None,
        *,
        state: BreakerState | None = None,
        clock: Clock = time.time,
    ) -> None:
        self.key = key
        self.policy = policy or BreakerPolicy()
        self.store: BreakerState = state or MemoryBreakerState()
        self.clock = clock
        self._state = CircuitState.CLOSED
        self._listeners: list[Listener] = []

    @property
    def state(self) -> CircuitState:
        """The state this process last saw (see :meth:`refresh` for Redis's current one)."""
        return self._state

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener`` on every state change this process sees; returns an
        unsubscribe function. Listeners run inline: keep them quick and let them not raise."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    def _observe(self, state: CircuitState | None) -> None:
        if state is None or state is self._state:
            return
        change = StateChange(self.key, self._state, state)
        self._state = state
        for listener in list(self._listeners):
            listener(change)

    async def refresh(self) -> CircuitState:
        """Read the current state from the store (it may change through other processes)."""
        self._observe(await self.store.peek(self.clock(), self.policy.cooldown))
        return self._state

    @asynccontextmanager
    async def call(self, provider: str = "") -> AsyncIterator[None]:
        """Guard one call: raises :class:`CircuitOpen` instead of entering when the circuit
        is open (or half-open with a probe running), and records how the call ended."""
        probe = await self.enter(provider)
        try:
            yield
        except BaseException as error:
            await self.failed(probe, error)
            raise
        await self.succeeded(probe)

    async def enter(self, provider: str = "") -> str | None:
        """The first half of :meth:`call`: admit one call or raise :class:`CircuitOpen`.
        Returns the probe token when this call is the half-open probe, else ``None``; pass
        it to :meth:`succeeded` or :meth:`failed` when the call ends."""
        token = _token()
        admission = await self.store.admit(
            self.clock(), self.policy.cooldown, self.policy.probe_timeout, token
        )
        self._observe(admission.state)
        if not admission.allowed:
            raise CircuitOpen(self.key, provider=provider, retry_after=admission.retry_after)
        return token if admission.state is CircuitState.HALF_OPEN else None

    async def succeeded(self, probe: str | None) -> None:
        """The call admitted by :meth:`enter` answered."""
        await self._record(self.store.record_success(probe))

    async def failed(self, probe: str | None, error: BaseException) -> None:
        """The call admitted by :meth:`enter` raised ``error``."""
        if trips(error):
            await self._record(self.store.record_failure(self.clock(), self.policy.failures, probe))
        elif isinstance(error, ProviderError) and not isinstance(error, CircuitOpen):
            await self._record(self.store.record_success(probe))
        elif probe is not None:
            await self._record(self.store.release(probe))

    async def _record(self, step: Awaitable[CircuitState | None]) -> None:
        """Record how a call ended. The answer or error in hand matters more than the
        bookkeeping, so a store that fails here is logged, not raised."""
        try:
            self._observe(await step)
        except TransportError as e:
            log.warning("circuit %s: outcome not recorded: %s", self.key, e)

    async def aclose(self) -> None:
        await self.store.aclose()


class BreakerBackend(Backend):
    """Wraps a backend; same interface, calls guarded by ``breaker``. Closing the wrapper
    closes the breaker's state store too."""

    def __init__(self, inner: Backend, breaker: CircuitBreaker) -> None:
        super().__init__(model=inner.model, name=inner.name)
        self.inner = inner
        self.breaker = breaker
        self.provider = inner.provider
        self.supports_tools = inner.supports_tools

    def describe(self) -> str:
        return self.inner.describe()

    async def complete(self, request: CompletionRequest) -> Completion:
        # call()'s steps spelled out: a context manager per request costs more than the rest.
        breaker = self.breaker
        probe = await breaker.enter(self.provider)
        try:
            completion = await self.inner.complete(request)
        except BaseException as error:
            await breaker.failed(probe, error)
            raise
        await breaker.succeeded(probe)
        return completion

    async def stream(self, request: CompletionRequest) -> AsyncIterator[StreamChunk]:
        async with self.breaker.call(self.provider):
            async for chunk in self.inner.stream(request):
                yield chunk

    async def aclose(self) -> None:
        try:
            await self.inner.aclose()
        finally:
            await self.breaker.aclose()
