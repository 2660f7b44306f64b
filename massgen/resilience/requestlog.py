"""One DEBUG line per provider attempt (``massgen.requests``), whatever the backend::

    request agent=ada model=gpt-4o-mini attempt=1 status=ok latency=0.412s tokens=120+31

Who asks and which attempt travel on the request (``request.call``). With DEBUG off a call
goes straight to the wrapped backend: one level check per request, nothing per chunk."""

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
        started, asked = time.perf_counter(), request.call
        agent, attempt = ((asked.agent or "-"), asked.attempt) if asked else ("-", 1)

        def say(model: str, status: object, latency: float, tail: str, *args: object) -> None:
            head = "request agent=%s model=%s attempt=%d status=%s latency=%.3fs "
            log.debug(head + tail, agent, model or "-", attempt, status, latency, *args)

        try:
            async for chunk in call(request):
                if (done := chunk.completion) is not None:
                    model, usage = done.model or request.model or self.model, done.usage
                    finish = f" finish={done.finish_reason}" if done.finish_reason != "stop" else ""
                    tokens = f"{usage.input_tokens}+{usage.output_tokens}"
                    say(model, "ok", done.latency, "tokens=%s%s", tokens, finish)
                yield chunk
        except (Exception, asyncio.CancelledError) as error:
            status = getattr(error, "status", None) if isinstance(error, ProviderError) else None
            if isinstance(error, asyncio.CancelledError):  # Ctrl-C, a timeout, fail_fast
                status = "cancelled"
            why = str(error).splitlines()[0][:300] if str(error) else "-"
            elapsed, model = time.perf_counter() - started, request.model or self.model
            say(model, status or type(error).__name__, elapsed, "error=%s", why)
            raise
