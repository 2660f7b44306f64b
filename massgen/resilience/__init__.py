"""Wrappers that make a backend survive real providers, and :func:`wrap`, which stacks them:
cache → retry → request log → rate limit → circuit breaker → backend (docs/resilience.md).
Retry sits outside so every attempt honours the limits and counts toward the breaker, whose
:class:`~massgen.errors.CircuitOpen` is not retried.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from massgen.backends.base import Backend
from massgen.resilience.breaker import (
    BreakerBackend,
    BreakerPolicy,
    CircuitBreaker,
    endpoint_key,
    redis_state,
)
from massgen.resilience.ratelimit import MemoryLimiter, RateLimit, RateLimitedBackend, RedisLimiter
from massgen.resilience.requestlog import LoggedBackend
from massgen.resilience.retry import RetryingBackend, RetryPolicy
from massgen.resilience.wrapper import Bound, Wrapper

if TYPE_CHECKING:
    import redis.asyncio as aioredis

    from massgen.store.base import Store


@dataclass(frozen=True, slots=True)
class Guards:
    """An endpoint's own guards, from its backend's config: a circuit breaker and a rate
    limit, their state in ``redis`` (under ``prefix``) when given, shared by every process."""

    breaker: BreakerPolicy | None = None
    rate_limit: RateLimit | None = None
    redis: aioredis.Redis | None = None
    prefix: str = ""


@dataclass(frozen=True, slots=True)
class CacheSettings:
    store: Store
    ttl: float | None = None


def wrap(
    backend: Backend,
    guards: Guards | None = None,
    *,
    retry: RetryPolicy | None = None,
    cache: CacheSettings | None = None,
) -> Backend:
    """The whole stack around ``backend``; absent settings add nothing (the request log,
    which costs nothing while DEBUG logging is off, is always there)."""
    if guards is not None:
        backend = _guard(backend, guards)
    backend = LoggedBackend(backend)
    if retry is not None and retry.max_retries > 0:
        backend = RetryingBackend(backend, retry)
    if cache is not None:
        from massgen.resilience.cache import CachingBackend

        backend = CachingBackend(backend, cache.store, cache.ttl)
    return backend


def _guard(backend: Backend, guards: Guards) -> Backend:
    key, redis = endpoint_key(backend), guards.redis
    if guards.breaker is not None:
        state = redis_state(redis, guards.prefix, key) if redis is not None else None
        backend = BreakerBackend(backend, CircuitBreaker(key, guards.breaker, state=state))
    if guards.rate_limit is not None:
        # Providers limit per model: processes share one log per endpoint and model.
        shared = f"{key}:{backend.model}" if backend.model else key
        limit = guards.rate_limit
        limiter = (
            RedisLimiter(redis, guards.prefix, shared, limit)
            if redis is not None
            else MemoryLimiter(limit)
        )
        backend = RateLimitedBackend(backend, limiter)
    return backend


__all__ = [
    "Bound",
    "CacheSettings",
    "Guards",
    "RetryPolicy",
    "RetryingBackend",
    "Wrapper",
    "wrap",
]
