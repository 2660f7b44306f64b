"""Retry errors whose ``retryable`` flag is set, with exponential backoff, jitter and
Retry-After: the one retry budget (the SDKs' are off). A stream that failed before its final
chunk is retried from the start. Not tenacity: it cannot wrap an async generator safely."""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace

from massgen.backends.base import Backend
from massgen.errors import ProviderError
from massgen.resilience.wrapper import Call, Wrapper
from massgen.types import CallContext, Completion, CompletionRequest, StreamChunk

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """``max_retries`` retries; waits grow from ``base_delay`` by ``factor`` to ``max_delay``,
    jittered, never below Retry-After (capped at ``retry_after_cap``)."""

    max_retries: int = 3
    base_delay: float = 1.0
    factor: float = 2.0
    max_delay: float = 30.0
    retry_after_cap: float = 120.0

    def delay(self, attempt: int, error: BaseException, rng: random.Random) -> float:
        ceiling = min(self.max_delay, self.base_delay * self.factor ** (attempt - 1))
        wait = ceiling / 2 + rng.uniform(0, ceiling / 2)
        if after := getattr(error, "retry_after", None):
            wait = max(wait, min(float(after), self.retry_after_cap))
        return wait


def retryable(error: BaseException) -> bool:
    return isinstance(error, ProviderError) and error.retryable


class RetryingBackend(Wrapper):
    """Wraps a backend; transient failures retried."""

    def __init__(self, inner: Backend, policy: RetryPolicy, *, seed: int | None = None) -> None:
        super().__init__(inner)
        self.policy, self._rng = policy, random.Random(seed)

    async def complete(self, request: CompletionRequest) -> Completion:
        attempt = 1  # written out, not through around(): no generator per plain call
        while True:
            try:
                return await self.inner.complete(_attempt(request, attempt))
            except ProviderError as error:
                await self._backoff(attempt, error, request.call)
            attempt += 1

    async def around(self, request: CompletionRequest, call: Call) -> AsyncIterator[StreamChunk]:
        for attempt in itertools.count(1):
            try:
                async for chunk in call(_attempt(request, attempt)):
                    yield chunk
                return
            except ProviderError as error:
                await self._backoff(attempt, error, request.call)

    async def _backoff(self, attempt: int, error: ProviderError, asked: CallContext | None) -> None:
        most = self.policy.max_retries
        if attempt > most or not retryable(error):
            raise error
        wait = self.policy.delay(attempt, error, self._rng)
        why = str(error).splitlines()[0][:300] if str(error) else type(error).__name__
        agent = (asked.agent if asked else "") or "-"
        log.info(
            "retry agent=%s attempt=%d/%d wait=%.2fs reason=%s", agent, attempt, most, wait, why
        )
        if asked is not None and asked.on_retry is not None:
            asked.on_retry(attempt, most, wait, error)
        await asyncio.sleep(wait)


def _attempt(request: CompletionRequest, attempt: int) -> CompletionRequest:
    if attempt == 1:
        return request
    return replace(request, call=replace(request.call or CallContext(), attempt=attempt))
