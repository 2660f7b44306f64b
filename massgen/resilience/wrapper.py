"""The base of every resilience wrapper: a backend around another, with its identity."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

from massgen.backends.base import Backend, final
from massgen.types import CallContext, Completion, CompletionRequest, NativeTool, StreamChunk

Call = Callable[[CompletionRequest], AsyncIterator[StreamChunk]]


class Wrapper(Backend):
    """Forwards everything to ``inner``; a subclass adds its part in :meth:`around`."""

    def __init__(self, inner: Backend) -> None:
        super().__init__(model=inner.model, name=inner.name)
        self.inner, self.provider = inner, inner.provider
        self.supports_tools, self.native_tools = inner.supports_tools, inner.native_tools
        self.tool_images = inner.tool_images

    def describe(self) -> str:
        return self.inner.describe()

    def supports_native(
        self, tool: NativeTool, *, model: str | None = None, with_functions: bool = False
    ) -> bool:
        return self.inner.supports_native(tool, model=model, with_functions=with_functions)

    def around(self, request: CompletionRequest, call: Call) -> AsyncIterator[StreamChunk]:
        """The chunks of ``call(request)`` with what this wrapper adds (complete and stream)."""
        return call(request)

    async def complete(self, request: CompletionRequest) -> Completion:
        return await final(self.around(request, self._once))

    def stream(self, request: CompletionRequest) -> AsyncIterator[StreamChunk]:
        return self.around(request, self.inner.stream)

    async def _once(self, request: CompletionRequest) -> AsyncIterator[StreamChunk]:
        yield StreamChunk(completion=await self.inner.complete(request))

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
