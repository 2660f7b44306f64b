"""One debug line per provider request, written by the wrapper every backend passes through.

:func:`massgen.resilience.wrap` puts :class:`LoggedBackend` right inside the retry wrapper,
so each attempt is one line (``massgen.requests`` logger, DEBUG)::

    request agent=ada model=gpt-4o-mini attempt=1 status=ok latency=0.412s tokens=120+31
    request agent=cy model=gpt-4o-mini attempt=1 status=429 latency=0.010s error=[openai 429] ...

Who asks is a context variable (:data:`current_agent`, set while an agent answers) because
one backend serves several agents at once; the attempt is set by the retry wrapper. With
DEBUG off for ``massgen.requests``, a call goes straight to the wrapped backend: the only
cost is one level check per request, none per streamed chunk.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Coroutine
from contextvars import ContextVar
from typing import Any

from massgen.backends.base import Backend
from massgen.errors import ProviderError
from massgen.types import Completion, CompletionRequest, NativeTool, StreamChunk

log = logging.getLogger("massgen.requests")

current_agent: ContextVar[str] = ContextVar("massgen_current_agent", default="")
"""The agent whose turn is being answered (set by :class:`~massgen.agents.agent.Agent`)."""

current_attempt: ContextVar[int] = ContextVar("massgen_current_attempt", default=1)
"""Which attempt of a request this is, 1 for the first (set by the retry wrapper)."""


class LoggedBackend(Backend):
    """Wraps a backend; same interface, each request logged at DEBUG when that is on."""

    def __init__(self, inner: Backend) -> None:
        super().__init__(model=inner.model, name=inner.name)
        self.inner = inner
        self.provider = inner.provider
        self.supports_tools = inner.supports_tools
        self.native_tools = inner.native_tools

    def describe(self) -> str:
        return self.inner.describe()

    def supports_native(
        self, tool: NativeTool, *, model: str | None = None, with_functions: bool = False
    ) -> bool:
        return self.inner.supports_native(tool, model=model, with_functions=with_functions)

    # Plain methods returning the inner call's awaitable or iterator: when nobody logs,
    # there is no extra coroutine or generator frame on the path at all.
    def complete(self, request: CompletionRequest) -> Coroutine[Any, Any, Completion]:
        if not log.isEnabledFor(logging.DEBUG):
            return self.inner.complete(request)
        return self._complete(request, current_agent.get(), current_attempt.get())

    def stream(self, request: CompletionRequest) -> AsyncIterator[StreamChunk]:
        if not log.isEnabledFor(logging.DEBUG):
            return self.inner.stream(request)
        return self._stream(request, current_agent.get(), current_attempt.get())

    async def _complete(self, request: CompletionRequest, agent: str, attempt: int) -> Completion:
        started = time.perf_counter()
        try:
            completion = await self.inner.complete(request)
        except (Exception, asyncio.CancelledError) as error:
            self._failed(request, agent, attempt, started, error)
            raise
        self._done(request, agent, attempt, completion)
        return completion

    async def _stream(
        self, request: CompletionRequest, agent: str, attempt: int
    ) -> AsyncIterator[StreamChunk]:
        started = time.perf_counter()
        try:
            async for chunk in self.inner.stream(request):
                if chunk.completion is not None:
                    self._done(request, agent, attempt, chunk.completion)
                yield chunk
        except (Exception, asyncio.CancelledError) as error:
            self._failed(request, agent, attempt, started, error)
            raise

    def _done(
        self, request: CompletionRequest, agent: str, attempt: int, completion: Completion
    ) -> None:
        usage = completion.usage
        log.debug(
            "request agent=%s model=%s attempt=%d status=ok latency=%.3fs tokens=%d+%d%s",
            agent or "-",
            completion.model or request.model or self.model or "-",
            attempt,
            completion.latency,
            usage.input_tokens,
            usage.output_tokens,
            f" finish={completion.finish_reason}" if completion.finish_reason != "stop" else "",
        )

    def _failed(
        self,
        request: CompletionRequest,
        agent: str,
        attempt: int,
        started: float,
        error: BaseException,
    ) -> None:
        status = getattr(error, "status", None) if isinstance(error, ProviderError) else None
        if isinstance(error, asyncio.CancelledError):  # Ctrl-C, a timeout, fail_fast
            status = "cancelled"
        log.debug(
            "request agent=%s model=%s attempt=%d status=%s latency=%.3fs error=%s",
            agent or "-",
            request.model or self.model or "-",
            attempt,
            status or type(error).__name__,
            time.perf_counter() - started,
            str(error).splitlines()[0][:300] if str(error) else "-",
        )

    async def aclose(self) -> None:
        await self.inner.aclose()
