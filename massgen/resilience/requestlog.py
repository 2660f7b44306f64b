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
from massgen.resilience.wrapper import Call, Wrapper
from massgen.types import Completion, CompletionRequest, StreamChunk

log = logging.getLogger("massgen.requests")


class LoggedBackend(Wrapper):
    """Wraps a backend; same interface, each request logged at DEBUG when that is on."""

    def complete(self, request: CompletionRequest) -> Coroutine[Any, Any, Completion]:
        on = log.isEnabledFor(logging.DEBUG)
        return super().complete(request) if on else self.inner.complete(request)

    def stream(self, request: CompletionRequest) -> AsyncIterator[StreamChunk]:
        on = log.isEnabledFor(logging.DEBUG)
        return super().stream(request) if on else self.inner.stream(request)

    async def around(self, request: CompletionRequest, call: Call) -> AsyncIterator[StreamChunk]:
        started = time.perf_counter()
        try:
            async for chunk in call(request):
                if chunk.completion is not None:
                    self._done(request, chunk.completion)
                yield chunk
        except (Exception, asyncio.CancelledError) as error:
            self._failed(request, started, error)
            raise

    def _line(self, request: CompletionRequest, model: str, tail: str, *args: object) -> None:
        call = request.call
        agent, attempt = ((call.agent or "-"), call.attempt) if call else ("-", 1)
        log.debug(
            "request agent=%s model=%s attempt=%d " + tail, agent, model or "-", attempt, *args
        )

    def _done(self, request: CompletionRequest, done: Completion) -> None:
        finish = f" finish={done.finish_reason}" if done.finish_reason != "stop" else ""
        usage, model = done.usage, done.model or request.model or self.model
        tail = "status=ok latency=%.3fs tokens=%d+%d%s"
        self._line(
            request, model, tail, done.latency, usage.input_tokens, usage.output_tokens, finish
        )

    def _failed(self, request: CompletionRequest, started: float, error: BaseException) -> None:
        status = getattr(error, "status", None) if isinstance(error, ProviderError) else None
        if isinstance(error, asyncio.CancelledError):  # Ctrl-C, a timeout, fail_fast
            status = "cancelled"
        why = str(error).splitlines()[0][:300] if str(error) else "-"
        elapsed = time.perf_counter() - started
        tail = "status=%s latency=%.3fs error=%s"
        self._line(
            request, request.model or self.model, tail, status or type(error).__name__, elapsed, why
        )
