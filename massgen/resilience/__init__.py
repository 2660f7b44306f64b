"""Wrappers that make a backend survive real providers, and :func:`wrap`, which stacks them:
cache → retry → request log → rate limit → circuit breaker → backend (docs/resilience.md).
Retry sits outside: every attempt honours the limits and counts toward the breaker."""

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
from massgen.resilience.ratelimit import Limiter, RateLimit, RateLimitedBackend, RedisLimiter
from massgen.resilience.requestlog import LoggedBackend
from massgen.resilience.retry import RetryingBackend, RetryPolicy
from massgen.resilience.wrapper import Bound, Wrapper

if TYPE_CHECKING:
    from massgen.store.base import Store
    from massgen.store.redis_client import RedisLease


@dataclass(frozen=True, slots=True)
class Guards:
    """An endpoint's guards, from its backend's config; shared through ``redis`` if given
    (its owner gives the lease back)."""

    breaker: BreakerPolicy | None = None
    rate_limit: RateLimit | None = None
    redis: RedisLease | None = None
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
    """The whole stack around ``backend``; absent settings add nothing (the request log costs
    nothing while DEBUG logging is off, and is always there)."""
    g, key = guards or Guards(), endpoint_key(backend)
    if g.breaker is not None:
        state = redis_state(g.redis, g.prefix, key) if g.redis is not None else None
        backend = BreakerBackend(backend, CircuitBreaker(key, g.breaker, state=state))
    if g.rate_limit is not None:
        shared = f"{key}:{backend.model}" if backend.model else key  # providers limit per model
        limit = g.rate_limit
        limiter = RedisLimiter(g.redis, g.prefix, shared, limit) if g.redis else Limiter(limit)
        backend = RateLimitedBackend(backend, limiter)
    backend = LoggedBackend(backend)
    if retry is not None and retry.max_retries > 0:
        backend = RetryingBackend(backend, retry)
    if cache is not None:
        from massgen.resilience.cache import CachingBackend

        backend = CachingBackend(backend, cache.store, cache.ttl)
    return backend


__all__ = ["Bound", "CacheSettings", "Guards", "RetryPolicy", "RetryingBackend", "Wrapper", "wrap"]
