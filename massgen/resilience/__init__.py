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
from massgen.events import RequestDone
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
from massgen.types import Completion, CompletionRequest, StreamChunk

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
    :class:`~massgen.events.RequestDone` to the call's ``on_attempt`` (metrics, traces). With
    neither, a call goes straight to the wrapped backend: nothing per chunk."""

    def complete(self, request: CompletionRequest) -> Coroutine[Any, Any, Completion]:
        return self._complete(request) if _heard(request) else self.inner.complete(request)

    def stream(self, request: CompletionRequest) -> AsyncIterator[StreamChunk]:
        return super().stream(request) if _heard(request) else self.inner.stream(request)

    async def _complete(self, request: CompletionRequest) -> Completion:
        started = time.time(), time.perf_counter()
        try:
            completion = await self.inner.complete(request)
        except (Exception, asyncio.CancelledError) as error:
            self._tell(request, started, error)
            raise
        self._tell(request, started, completion)
        return completion

    async def around(self, request: CompletionRequest, call: Call) -> AsyncIterator[StreamChunk]:
        started = time.time(), time.perf_counter()
        try:
            async for chunk in call(request):
                if chunk.completion is not None:
                    self._tell(request, started, chunk.completion)
                yield chunk
        except (Exception, asyncio.CancelledError) as error:
            self._tell(request, started, error)
            raise

    def _tell(self, request: CompletionRequest, started: tuple[float, float], end: Any) -> None:
        """``end``: the attempt's completion or error; ``started``: time.time, perf_counter."""
        asked = request.call
        agent, attempt = ((asked.agent or "-"), asked.attempt) if asked else ("-", 1)
        phase, model = (asked.phase if asked else ""), request.model or self.model or ""
        if isinstance(end, Completion):
            done = RequestDone(
                agent=agent, provider=self.provider, attempt=attempt, status="ok",
                model=end.model or model, started=started[0], latency=end.latency,
                usage=end.usage, finish=end.finish_reason, phase=phase, asked=model,
            )  # fmt: skip
        else:
            code: int | str | None = end.status if isinstance(end, ProviderError) else None
            if isinstance(end, asyncio.CancelledError):  # Ctrl-C, a timeout, fail_fast
                code = "cancelled"
            done = RequestDone(
                agent=agent, provider=self.provider, attempt=attempt,
                status=str(code or type(end).__name__), model=model, asked=model,
                started=started[0], latency=time.perf_counter() - started[1],
                error=(str(end).splitlines() or [str(code or type(end).__name__)])[0][:300],
                phase=phase,
            )  # fmt: skip
        if asked is not None and asked.on_attempt is not None:
            asked.on_attempt(done)
        if log.isEnabledFor(logging.DEBUG):
            head = f"request agent={done.agent} model={done.model or '-'} attempt={done.attempt} "
            head += f"status={done.status} latency={done.latency:.3f}s "
            if (usage := done.usage) is None:
                log.debug(head + f"error={done.error or '-'}")
            else:
                finish = f" finish={done.finish}" if done.finish != "stop" else ""
                log.debug(head + f"tokens={usage.input_tokens}+{usage.output_tokens}{finish}")


def _heard(request: CompletionRequest) -> bool:
    return bool(request.call and request.call.on_attempt) or log.isEnabledFor(logging.DEBUG)


__all__ = ["Bound", "CacheSettings", "Guards", "RetryPolicy", "RetryingBackend", "Wrapper", "wrap"]
