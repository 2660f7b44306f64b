"""One DEBUG line per provider attempt (``massgen.requests``), whatever the backend::

    request agent=ada model=gpt-4o-mini attempt=1 status=ok latency=0.412s tokens=120+31

Who asks and which attempt travel on the request (``request.call``). With DEBUG off a call
goes straight to the wrapped backend: one level check per request, nothing per chunk.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Coroutine
from typing import Any

from massgen.errors import ProviderError
from massgen.resilience.wrapper import Wrapper
from massgen.types import Completion, CompletionRequest, StreamChunk

log = logging.getLogger("massgen.requests")


class LoggedBackend(Wrapper):
    """Wraps a backend; same interface, each request logged at DEBUG when that is on."""

    def complete(self, request: CompletionRequest) -> Coroutine[Any, Any, Completion]:
        if not log.isEnabledFor(logging.DEBUG):
            return self.inner.complete(request)
        return self._complete(request)

    def stream(self, request: CompletionRequest) -> AsyncIterator[StreamChunk]:
        if not log.isEnabledFor(logging.DEBUG):
            return self.inner.stream(request)
        return self._stream(request)

    async def _complete(self, request: CompletionRequest) -> Completion:
        started = time.perf_counter()
        try:
            completion = await self.inner.complete(request)
        except (Exception, asyncio.CancelledError) as error:
            self._failed(request, started, error)
            raise
        self._done(request, completion)
        return completion

    async def _stream(self, request: CompletionRequest) -> AsyncIterator[StreamChunk]:
        started = time.perf_counter()
        try:
            async for chunk in self.inner.stream(request):
                if chunk.completion is not None:
                    self._done(request, chunk.completion)
                yield chunk
        except (Exception, asyncio.CancelledError) as error:
            self._failed(request, started, error)
            raise

    def _head(self, request: CompletionRequest, model: str) -> str:
        call = request.call
        agent = (call.agent if call else "") or "-"
        return f"request agent={agent} model={model or '-'} attempt={call.attempt if call else 1}"

    def _done(self, request: CompletionRequest, completion: Completion) -> None:
        usage = completion.usage
        log.debug(
            "%s status=ok latency=%.3fs tokens=%d+%d%s",
            self._head(request, completion.model or request.model or self.model),
            completion.latency,
            usage.input_tokens,
            usage.output_tokens,
            f" finish={completion.finish_reason}" if completion.finish_reason != "stop" else "",
        )

    def _failed(self, request: CompletionRequest, started: float, error: BaseException) -> None:
        status = getattr(error, "status", None) if isinstance(error, ProviderError) else None
        if isinstance(error, asyncio.CancelledError):  # Ctrl-C, a timeout, fail_fast
            status = "cancelled"
        log.debug(
            "%s status=%s latency=%.3fs error=%s",
            self._head(request, request.model or self.model),
            status or type(error).__name__,
            time.perf_counter() - started,
            str(error).splitlines()[0][:300] if str(error) else "-",
        )
