"""The one interface every LLM backend implements: a request in, a Completion out. An
adapter makes one request per call (retries etc. are wrappers) and raises our errors."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

from massgen.tokens import estimate_request, estimate_text
from massgen.types import ChatMessage, Completion, CompletionRequest, NativeTool, StreamChunk, Usage


class Backend:
    """Base class of all backends: override :meth:`complete` (full control) or :meth:`generate`
    (prompt in, text out). ``supports_tools``: votes as tool calls rather than strict JSON."""

    provider: str = "custom"
    supports_tools: bool = False
    native_tools: frozenset[str] = frozenset()  # NativeTool names it can declare
    tool_images: bool = False  # sends tool results' images (ChatMessage.images) to the model

    def __init__(self, model: str = "", **options: Any) -> None:
        self.model, self.options = model, options
        self.name = str(options.pop("name", "") or self.provider)

    def generate(self, prompt: str, **kwargs: Any) -> Any:
        """Answer ``prompt``; may be ``async``. Override this or :meth:`complete`."""
        raise NotImplementedError(
            f"{type(self).__name__} must override generate(prompt, **kwargs) or complete(request)"
        )

    async def complete(self, request: CompletionRequest) -> Completion:
        """Answer one request. The default calls :meth:`generate` with the last user turn."""
        if type(self).generate is Backend.generate:
            self.generate("")  # raises the helpful NotImplementedError
        system, turns = system_and_turns(request.messages)
        kwargs: dict[str, Any] = {"messages": list(request.messages), "system": system or None}
        kwargs |= {"temperature": request.temperature, "max_tokens": request.max_tokens}
        kwargs = {key: value for key, value in kwargs.items() if value is not None}
        prompt, started = turns[-1].content if turns else "", time.perf_counter()
        if inspect.iscoroutinefunction(self.generate):
            out = await self.generate(prompt, **kwargs)
        else:  # a sync generate may block (HTTP, a local model): keep it off the event loop
            out = await asyncio.to_thread(self.generate, prompt, **kwargs)
        return await text_completion(self, request, out, started)

    async def stream(self, request: CompletionRequest) -> AsyncIterator[StreamChunk]:
        """Text deltas, then a final chunk with the Completion (by default one :meth:`complete`)."""
        completion = await self.complete(request)
        if completion.text:
            yield StreamChunk(delta=completion.text)
        yield StreamChunk(completion=completion)

    def supports_native(
        self, tool: NativeTool, *, model: str | None = None, with_functions: bool = False
    ) -> bool:
        """Whether ``model`` can use the provider-side ``tool`` with all its options (next to
        function tools when ``with_functions``); an option it cannot honour makes this ``False``."""
        return tool.name in self.native_tools

    async def aclose(self) -> None:
        """Release connections. Called once when the team shuts down."""

    def describe(self) -> str:
        return f"{self.provider}:{self.model}" if self.model else self.provider


async def text_completion(
    backend: Backend, request: CompletionRequest, out: Any, started: float
) -> Completion:
    """What a simple backend returned (text, a Completion, or an awaitable) as a Completion."""
    if inspect.isawaitable(out):
        out = await out
    if isinstance(out, Completion):
        return out
    text = "" if out is None else str(out)
    return Completion(
        text=text,
        model=request.model or backend.model or type(backend).__name__,
        usage=Usage(estimate_request(request), estimate_text(text)),
        latency=time.perf_counter() - started,
    )


async def final(chunks: AsyncIterator[StreamChunk]) -> Completion:
    """The completion ``chunks`` end with, read to the end (no frame left open)."""
    done = None
    async for chunk in chunks:
        done = chunk.completion or done
    assert done is not None
    return done


def layers(backend: Backend) -> Iterator[Backend]:
    """``backend``, then each one it wraps (as ``inner``), down to the provider's."""
    while True:
        yield backend
        inner = getattr(backend, "inner", None)
        if not isinstance(inner, Backend):
            return
        backend = inner


def innermost(backend: Backend) -> Backend:
    """The backend behind every wrapper."""
    *_, last = layers(backend)
    return last


def system_and_turns(messages: tuple[ChatMessage, ...]) -> tuple[str, list[ChatMessage]]:
    """One system prompt and the other messages, for APIs that take it apart."""
    system = "\n\n".join(m.content for m in messages if m.role == "system")
    return system, [m for m in messages if m.role != "system"]
