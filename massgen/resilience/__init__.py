"""Wrappers that make a backend survive real providers.

The whole stack, outermost first: cache → retry → request log → rate limit → circuit
breaker → backend.
A cache hit costs nothing and waits for no limit. Every retry attempt passes the rate
limiter (so retries honour rpm/tpm) and the breaker (so a dead endpoint opens it after a few
attempts, and an open circuit, which is not retryable, stops the retries at once).

Rate limit and breaker hold one endpoint's state, so ``massgen.team.guard`` puts them
around each configured backend; :func:`wrap` adds retry and cache, per backend object,
in the orchestrator, with the request log (:mod:`massgen.resilience.requestlog`): one
DEBUG line per attempt, whatever the backend.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from massgen.backends.base import Backend
from massgen.resilience.requestlog import LoggedBackend
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
    """Layer the resilience wrappers around ``backend``; absent settings add nothing (the
    request log, which costs nothing while DEBUG logging is off, is always there)."""
    backend = LoggedBackend(backend)
    if retry is not None and retry.max_retries > 0:
        backend = RetryingBackend(backend, retry)
    if cache is not None:
        from massgen.resilience.cache import CachingBackend

        backend = CachingBackend(backend, cache.store, cache.ttl)
    return backend


__all__ = ["CacheSettings", "RetryPolicy", "RetryingBackend", "retry_listener", "wrap"]
