"""Wrappers that make a backend survive real providers, and :func:`wrap`, which stacks them:
cache → retry → request log → rate limit → circuit breaker → backend (docs/resilience.md)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from massgen.backends.base import Backend
from massgen.errors import ProviderError
from massgen.resilience.breaker import (
    BreakerBackend,
    BreakerPolicy,
    CircuitBreaker,
    endpoint_key,
    redis_state,
)
from massgen.resilience.ratelimit import Limiter, RateLimit, RateLimitedBackend, RedisLimiter
from massgen.resilience.retry import RetryingBackend, RetryPolicy
from massgen.resilience.wrapper import Bound, Call, Wrapper
from massgen.types import Attempt, Completion, CompletionRequest, StreamChunk

if TYPE_CHECKING:
    from massgen.store.base import Store
    from massgen.store.redis_client import RedisLease

log = logging.getLogger("massgen.requests")


@dataclass(frozen=True, slots=True)
class Guards:
    """An endpoint's guards, from its backend's config; shared through ``redis`` if given."""

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
    """The whole stack around ``backend``; absent settings add nothing but the request log."""
    g, key = guards or Guards(), endpoint_key(backend)
    if g.breaker is not None:
        state = redis_state(g.redis, g.prefix, key) if g.redis is not None else None
        backend = BreakerBackend(backend, CircuitBreaker(key, g.breaker, state=state))
    if (limit := g.rate_limit) is not None:
        shared = f"{key}:{backend.model}" if backend.model else key  # providers limit per model
        limiter = RedisLimiter(g.redis, g.prefix, shared, limit) if g.redis else Limiter(limit)
        backend = RateLimitedBackend(backend, limiter)
    backend = LoggedBackend(backend)
    if retry is not None and retry.max_retries > 0:
        backend = RetryingBackend(backend, retry)
    if cache is not None:
        from massgen.resilience.cache import CachingBackend

        backend = CachingBackend(backend, cache.store, cache.ttl)
    return backend


class LoggedBackend(Wrapper):
    """Wraps a backend; one DEBUG line per provider attempt (``massgen.requests``), e.g.
    ``request agent=ada model=m attempt=1 status=ok latency=0.412s tokens=120+31``, and an
    :class:`~massgen.types.Attempt` to the call's ``on_attempt`` (metrics, traces). With
    neither, a call goes straight to the wrapped backend: nothing per chunk."""

    def complete(self, request: CompletionRequest) -> Coroutine[Any, Any, Completion]:
        if self._heard(request):
            return super().complete(request)
        return self.inner.complete(request)

    def stream(self, request: CompletionRequest) -> AsyncIterator[StreamChunk]:
        return super().stream(request) if self._heard(request) else self.inner.stream(request)

    @staticmethod
    def _heard(request: CompletionRequest) -> bool:
        observed = request.call is not None and request.call.on_attempt is not None
        return observed or log.isEnabledFor(logging.DEBUG)

    async def around(self, request: CompletionRequest, call: Call) -> AsyncIterator[StreamChunk]:
        started, at, asked = time.perf_counter(), time.time(), request.call
        agent, attempt = ((asked.agent or "-"), asked.attempt) if asked else ("-", 1)
        told = asked.on_attempt if asked else None
        logged = log.isEnabledFor(logging.DEBUG)

        def say(model: str, status: str, latency: float, **how: Any) -> None:
            if told is not None:
                provider = self.provider or ""
                told(Attempt(provider, model or "", attempt, status, at, latency, **how))
            if logged:
                head = f"request agent={agent} model={model or '-'} attempt={attempt} "
                head += f"status={status} latency={latency:.3f}s "
                if (usage := how.get("usage")) is not None:
                    finish = how["finish"]
                    tail = f"tokens={usage.input_tokens}+{usage.output_tokens}"
                    log.debug(head + tail + (f" finish={finish}" if finish != "stop" else ""))
                else:
                    log.debug(head + f"error={how['error'] or '-'}")

        try:
            async for chunk in call(request):
                if (done := chunk.completion) is not None:
                    model = done.model or request.model or self.model
                    say(model, "ok", done.latency, usage=done.usage, finish=done.finish_reason)
                yield chunk
        except (Exception, asyncio.CancelledError) as error:
            status = getattr(error, "status", None) if isinstance(error, ProviderError) else None
            if isinstance(error, asyncio.CancelledError):  # Ctrl-C, a timeout, fail_fast
                status = "cancelled"
            why = str(error).splitlines()[0][:300] if str(error) else ""
            elapsed, model = time.perf_counter() - started, request.model or self.model
            say(model, str(status or type(error).__name__), elapsed, error=why)
            raise


__all__ = ["Bound", "CacheSettings", "Guards", "RetryPolicy", "RetryingBackend", "Wrapper", "wrap"]
