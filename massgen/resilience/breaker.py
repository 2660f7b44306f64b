"""A circuit breaker per endpoint (docs/resilience.md): the state machine, written once, and
its state in this process (:class:`BreakerState`) or in Redis (:class:`RedisBreakerState`)."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import urlsplit

from massgen.backends.base import Backend
from massgen.errors import CircuitOpen, ConfigError, ProviderError, RateLimited, TransportError
from massgen.resilience.shared import Shared
from massgen.resilience.wrapper import Call, Wrapper
from massgen.types import Completion, CompletionRequest, StreamChunk

if TYPE_CHECKING:
    from massgen.store.redis_client import RedisLease

log = logging.getLogger(__name__)
_TTL_MS = 86_400_000  # an idle circuit's Redis keys vanish after a day (it closes)


class CircuitState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(frozen=True, slots=True)
class BreakerPolicy:
    """``failures`` tripping failures in a row open the circuit for ``cooldown`` seconds; a
    probe holds the half-open permit at most ``probe_timeout`` seconds (its process may die)."""

    failures: int = 5
    cooldown: float = 30.0
    probe_timeout: float = 120.0

    def __post_init__(self) -> None:
        if self.failures < 1:
            raise ConfigError("must be at least 1", key="breaker.failures")
        for name in ("cooldown", "probe_timeout"):
            if getattr(self, name) <= 0:
                raise ConfigError("must be positive", key=f"breaker.{name}")


def trips(error: BaseException | None) -> bool:
    """True when the endpoint is unwell: 5xx (529 too), 408, timeouts, connection errors;
    not 429 or another 4xx (the caller's fault, or a limit the rate limiter handles)."""
    if not isinstance(error, ProviderError) or not error.retryable:
        return False
    if error.status is None:
        return not isinstance(error, RateLimited)  # a 429 without its status
    return error.status >= 500 or error.status == 408


def endpoint_key(backend: Backend) -> str:
    """``provider:base_url`` (or ``provider:name``) without credentials, query or fragment:
    the key ends up in Redis and in messages."""
    if isinstance(base_url := getattr(backend, "base_url", None), str) and base_url:
        parts = urlsplit(base_url)
        port = f":{parts.port}" if parts.port else ""
        where = f"{parts.scheme}://{parts.hostname or ''}{port}{parts.path.rstrip('/')}"
    else:
        where = backend.name
    return f"{backend.provider}:{where}"


class BreakerState:
    """A circuit's state in this process; every store's steps are atomic. ``record`` counts a
    failure at ``now`` (``None``: resets), and returns when it opened (``None``: closed)."""

    def __init__(self) -> None:
        self.failures = 0
        self.opened: float | None = None
        self.probe: tuple[str, float] | None = None  # (token, expires at)

    async def opened_at(self) -> float | None:
        return self.opened

    async def record(self, now: float | None, threshold: int) -> float | None:
        self.failures = 0 if now is None else self.failures + 1
        if now is not None and self.opened is None and self.failures >= threshold:
            self.opened = now
        return self.opened

    async def set_open(self, now: float | None) -> None:
        self.failures, self.opened = 0, now

    async def take_probe(self, token: str, now: float, ttl: float) -> bool:
        if free := self.probe is None or self.probe[1] <= now:
            self.probe = (token, now + ttl)
        return free

    async def drop_probe(self, token: str) -> None:
        if self.probe is not None and self.probe[0] == token:
            self.probe = None


# Give the permit back only if it is still ours (it may have expired and gone to another).
_DROP_PROBE = "if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end"


class RedisBreakerState(BreakerState):
    """The state in Redis (docs/resilience.md), one round trip a step; the lease is the caller's."""

    def __init__(self, lease: RedisLease, prefix: str, key: str) -> None:
        self._lease = lease
        self.hash, self.probe_key = f"{prefix}breaker:{key}", f"{prefix}breaker:{key}:probe"

    async def _do(self, *commands: tuple[str | int, ...]) -> list[Any]:
        pipe = self._lease.client.pipeline(transaction=False)  # no MULTI: no step needs it
        for command in commands:
            pipe.execute_command(*command)
        return await pipe.execute()

    async def opened_at(self) -> float | None:
        at = await self._lease.client.hget(self.hash, "opened_at")
        return None if at is None else float(at)

    async def record(self, now: float | None, threshold: int) -> float | None:
        h, opened = self.hash, ("HGET", self.hash, "opened_at")
        if now is None:
            _, at = await self._do(("HDEL", h, "failures"), opened)
        else:
            count = ("HINCRBY", h, "failures", 1)
            failures, at, _ = await self._do(count, opened, ("PEXPIRE", h, _TTL_MS))
            if at is None and failures >= threshold:  # the first opener's time stands
                _, at = await self._do(("HSETNX", h, "opened_at", repr(now)), opened)
        return None if at is None else float(at)

    async def set_open(self, now: float | None) -> None:
        h = self.hash
        step = ("DEL", h) if now is None else ("HSET", h, "opened_at", repr(now))
        await self._do(step, ("PEXPIRE", h, _TTL_MS))

    async def take_probe(self, token: str, now: float, ttl: float) -> bool:
        px = max(1, round(ttl * 1000))
        return bool(await self._lease.client.set(self.probe_key, token, nx=True, px=px))

    async def drop_probe(self, token: str) -> None:
        await self._lease.client.register_script(_DROP_PROBE)(keys=[self.probe_key], args=[token])


def redis_state(lease: RedisLease, prefix: str, key: str) -> BreakerState:
    """The circuit ``key`` in Redis, kept here while Redis is away."""
    remote, local = RedisBreakerState(lease, prefix, key), BreakerState()
    return cast(BreakerState, Shared(f"circuit breaker {key}", remote, local, both={"drop_probe"}))


class CircuitBreaker:
    """The circuit of one endpoint, shared by the backends that call it. ``clock`` is a wall
    clock by default: Redis-shared circuits compare machines' times."""

    def __init__(
        self,
        key: str,
        policy: BreakerPolicy | None = None,
        *,
        state: BreakerState | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.key, self.policy, self.clock = key, policy or BreakerPolicy(), clock
        self.store = state or BreakerState()
        self.state = CircuitState.CLOSED  # as this process last saw it (see refresh)

    def _at(self, opened: float | None, now: float) -> CircuitState:
        if opened is None:
            return CircuitState.CLOSED
        return CircuitState.OPEN if now < opened + self.policy.cooldown else CircuitState.HALF_OPEN

    async def refresh(self) -> CircuitState:
        """Read the current state from the store (other processes may change it)."""
        self.state = self._at(await self.store.opened_at(), self.clock())
        return self.state

    async def enter(self, provider: str = "") -> str | None:
        """Admit one call or raise :class:`CircuitOpen`; a half-open probe gets a token."""
        now, opened = self.clock(), await self.store.opened_at()
        self.state = state = self._at(opened, now)
        if state is CircuitState.CLOSED:
            return None
        if state is CircuitState.OPEN:
            assert opened is not None
            left = opened + self.policy.cooldown - now
            raise CircuitOpen(self.key, provider=provider, retry_after=left)
        token = uuid.uuid4().hex
        if not await self.store.take_probe(token, now, self.policy.probe_timeout):
            raise CircuitOpen(self.key, provider=provider)
        return token

    async def failed(self, probe: str | None, error: BaseException | None) -> None:
        """The call admitted by :meth:`enter` raised ``error`` (``None``: it answered)."""
        now = self.clock() if trips(error) else None
        # A CircuitOpen from further in, a cancellation or a bug says nothing of the endpoint.
        said = isinstance(error, ProviderError | None) and not isinstance(error, CircuitOpen)
        try:
            if said and probe is not None:
                await self.store.set_open(now)
                self.state = CircuitState.CLOSED if now is None else CircuitState.OPEN
            elif said:
                opened = await self.store.record(now, self.policy.failures)
                if opened is None or opened == now:  # a late outcome leaves an open one be
                    self.state = CircuitState.CLOSED if opened is None else CircuitState.OPEN
            if probe is not None:
                await self.store.drop_probe(probe)
        except TransportError as e:
            log.warning("circuit %s: outcome not recorded: %s", self.key, e)


class BreakerBackend(Wrapper):
    """Wraps a backend; calls guarded by ``breaker``."""

    def __init__(self, inner: Backend, breaker: CircuitBreaker) -> None:
        super().__init__(inner)
        self.breaker = breaker

    async def complete(self, request: CompletionRequest) -> Completion:
        probe = await self.breaker.enter(self.provider)  # as around(), without its generators
        try:
            done = await self.inner.complete(request)
        except BaseException as error:
            await self.breaker.failed(probe, error)
            raise
        await self.breaker.failed(probe, None)
        return done

    async def around(self, request: CompletionRequest, call: Call) -> AsyncIterator[StreamChunk]:
        probe = await self.breaker.enter(self.provider)
        try:
            async for chunk in call(request):
                yield chunk
        except BaseException as error:  # a stream dropped unread too (GeneratorExit)
            await self.breaker.failed(probe, error)
            raise
        await self.breaker.failed(probe, None)
