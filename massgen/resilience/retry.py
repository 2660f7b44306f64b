"""Retry transient provider failures with exponential backoff, full jitter and Retry-After.

One retry budget (the SDKs' own retries are off). Retried: errors whose ``retryable`` flag is
set; never authentication, other 4xx or an open circuit. A stream is retried from the start
only if it failed before its final chunk. Hand-written: tenacity's attempt context cannot
wrap an async generator safely.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass

from massgen.backends.base import Backend
from massgen.errors import ProviderError
from massgen.resilience.wrapper import Call, Wrapper
from massgen.types import CallContext, CompletionRequest, StreamChunk

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """``max_retries`` retries after the first attempt; waits grow from ``base_delay`` by
    ``factor`` up to ``max_delay``, jittered, never shorter than the provider's Retry-After
    (itself capped at ``retry_after_cap`` seconds)."""

    max_retries: int = 3
    base_delay: float = 1.0
    factor: float = 2.0
    max_delay: float = 30.0
    retry_after_cap: float = 120.0

    def delay(self, attempt: int, error: BaseException, rng: random.Random) -> float:
        """Seconds to wait before retry number ``attempt`` (1-based)."""
        ceiling = min(self.max_delay, self.base_delay * self.factor ** (attempt - 1))
        wait = ceiling / 2 + rng.uniform(0, ceiling / 2)
        if after := getattr(error, "retry_after", None):
            wait = max(wait, min(float(after), self.retry_after_cap))
        return wait


def retryable(error: BaseException) -> bool:
    return isinstance(error, ProviderError) and error.retryable


class RetryingBackend(Wrapper):
    """Wraps a backend; same interface, transient failures retried. Each attempt's request
    carries its number (``request.call.attempt``) for the request log."""

    def __init__(self, inner: Backend, policy: RetryPolicy, *, seed: int | None = None) -> None:
        super().__init__(inner)
        self.policy = policy
        self._rng = random.Random(seed)

    async def _retry(
        self, request: CompletionRequest, attempt: int, error: ProviderError
    ) -> CompletionRequest:
        """Wait before retry number ``attempt`` and return its request, or raise ``error``."""
        call, most = request.call, self.policy.max_retries
        if attempt > most or not retryable(error):
            raise error
        wait = self.policy.delay(attempt, error, self._rng)
        reason = str(error).splitlines()[0][:300] if str(error) else type(error).__name__
        agent = (call.agent if call else "") or "-"
        log.info(
            "retry agent=%s attempt=%d/%d wait=%.2fs reason=%s", agent, attempt, most, wait, reason
        )
        if call is not None and call.on_retry is not None:
            call.on_retry(attempt, most, wait, error)
        await asyncio.sleep(wait)
        call = dataclasses.replace(call or CallContext(), attempt=attempt + 1)
        return dataclasses.replace(request, call=call)

    async def around(self, request: CompletionRequest, call: Call) -> AsyncIterator[StreamChunk]:
        attempt, sent = 0, request
        while True:
            try:
                async for chunk in call(sent):
                    yield chunk
                return
            except ProviderError as error:
                attempt += 1
                sent = await self._retry(request, attempt, error)
