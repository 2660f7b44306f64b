"""Retry transient provider failures with exponential backoff, jitter and Retry-After.

One retry budget: the SDKs' own retries are off, so ``max_retries`` here is the whole story.
Retried: errors whose ``retryable`` flag is set (timeouts, connection errors, 408, 409, 429,
5xx, 529). Never retried: authentication and other 4xx. A stream is retried from the start
only if it failed before its final chunk.

The loop is hand-written rather than tenacity's: it must wrap an async generator, which
tenacity's attempt context cannot do safely (it would swallow the generator's exit).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterator, Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TypeVar

from massgen.backends.base import Backend
from massgen.errors import ProviderError
from massgen.resilience.requestlog import current_agent, current_attempt
from massgen.types import Completion, CompletionRequest, StreamChunk

log = logging.getLogger(__name__)
T = TypeVar("T")

RetryListener = Callable[[int, int, float, BaseException], None]
"""Told ``(attempt, max_retries, wait, error)`` before each retry's wait."""

#: Set by whoever runs a turn (the run context) to hear about retries of *its* request;
#: a context variable because one backend serves several agents at once.
retry_listener: ContextVar[RetryListener | None] = ContextVar("retry_listener", default=None)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """``max_retries`` retries after the first attempt; waits grow from ``base_delay`` by
    ``factor`` up to ``max_delay``, with full jitter, and are never shorter than the
    provider's Retry-After (itself capped at ``retry_after_cap`` seconds)."""

    max_retries: int = 3
    base_delay: float = 1.0
    factor: float = 2.0
    max_delay: float = 30.0
    retry_after_cap: float = 120.0

    def delay(self, attempt: int, error: BaseException, rng: random.Random) -> float:
        """Seconds to wait before retry number ``attempt`` (1-based)."""
        ceiling = min(self.max_delay, self.base_delay * self.factor ** (attempt - 1))
        wait = ceiling / 2 + rng.uniform(0, ceiling / 2)
        after = getattr(error, "retry_after", None)
        if after:
            wait = max(wait, min(float(after), self.retry_after_cap))
        return wait


def retryable(error: BaseException) -> bool:
    return isinstance(error, ProviderError) and error.retryable


class RetryingBackend(Backend):
    """Wraps a backend; same interface, transient failures retried."""

    def __init__(self, inner: Backend, policy: RetryPolicy, *, seed: int | None = None) -> None:
        super().__init__(model=inner.model, name=inner.name)
        self.inner = inner
        self.policy = policy
        self.provider = inner.provider
        self.supports_tools = inner.supports_tools
        self._rng = random.Random(seed)

    def describe(self) -> str:
        return self.inner.describe()

    async def _pause(self, attempt: int, error: BaseException) -> None:
        if attempt > self.policy.max_retries or not retryable(error):
            raise error
        wait = self.policy.delay(attempt, error, self._rng)
        if log.isEnabledFor(logging.INFO):
            log.info(
                "retry agent=%s attempt=%d/%d wait=%.2fs reason=%s",
                current_agent.get() or "-",
                attempt,
                self.policy.max_retries,
                wait,
                str(error).splitlines()[0][:300] if str(error) else type(error).__name__,
            )
        listener = retry_listener.get()
        if listener is not None:
            listener(attempt, self.policy.max_retries, wait, error)
        await asyncio.sleep(wait)

    async def complete(self, request: CompletionRequest) -> Completion:
        attempt = 0
        while True:
            try:
                return await _numbered(attempt, self.inner.complete, request)
            except ProviderError as error:
                attempt += 1
                await self._pause(attempt, error)

    async def stream(self, request: CompletionRequest) -> AsyncIterator[StreamChunk]:
        attempt = 0
        while True:
            try:
                async for chunk in _numbered(attempt, self.inner.stream, request):
                    yield chunk
                return
            except ProviderError as error:
                attempt += 1
                await self._pause(attempt, error)

    async def aclose(self) -> None:
        await self.inner.aclose()


def _numbered(
    retries: int, call: Callable[[CompletionRequest], T], request: CompletionRequest
) -> T:
    """``call(request)``, told it is attempt ``retries + 1`` (the request log reads the
    attempt when it is called: only the call, never the wait, is inside the context)."""
    if not retries:
        return call(request)
    token = current_attempt.set(retries + 1)
    try:
        return call(request)
    finally:
        current_attempt.reset(token)
