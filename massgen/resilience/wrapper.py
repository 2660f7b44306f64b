"""The base of every resilience wrapper: a backend around another, with its identity."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Coroutine
from typing import Any

from massgen.backends.base import Backend
from massgen.types import CallContext, Completion, CompletionRequest, NativeTool, StreamChunk


class Wrapper(Backend):
    """Forwards everything to ``inner``; a subclass overrides what it adds. ``complete`` and
    ``stream`` hand back the inner call's own coroutine and iterator: no frame of their own."""

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

    def complete(self, request: CompletionRequest) -> Coroutine[Any, Any, Completion]:
        return self.inner.complete(request)

    def stream(self, request: CompletionRequest) -> AsyncIterator[StreamChunk]:
        return self.inner.stream(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


class Bound(Wrapper):
    """``inner`` with every request stamped with ``call`` (who asks, who hears retries)."""

    def __init__(self, inner: Backend, call: CallContext) -> None:
        super().__init__(inner)
        self.call = call

    def complete(self, request: CompletionRequest) -> Coroutine[Any, Any, Completion]:
        return self.inner.complete(dataclasses.replace(request, call=self.call))

    def stream(self, request: CompletionRequest) -> AsyncIterator[StreamChunk]:
        return self.inner.stream(dataclasses.replace(request, call=self.call))
