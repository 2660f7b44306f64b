"""The backends we ship, pointed at a :class:`ReplayServer`, and the calls the tests make."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

from massgen.backends.anthropic import AnthropicBackend
from massgen.backends.google import GoogleBackend
from massgen.types import ChatMessage, Completion, CompletionRequest, NativeTool, ToolSpec
from tests.recorded.harness import Recorded, ReplayServer

KEY = "sk-ant-api03-recorded-replay-key-000000"
GEMINI_KEY = "AIzaSy-recorded-replay-key-0000000000"
SEARCH = (NativeTool("web_search"),)


def ask(
    text: str = "hi",
    *,
    native: bool = False,
    tools: Sequence[ToolSpec] = (),
    messages: Sequence[ChatMessage] = (),
) -> CompletionRequest:
    return CompletionRequest(
        messages=tuple(messages) or (ChatMessage("user", text),),
        tools=tuple(tools),
        native_tools=SEARCH if native else (),
    )


@asynccontextmanager
async def anthropic(
    responses: Sequence[Recorded], variant: str = "exact", model: str = "claude-sonnet-4-5"
) -> AsyncIterator[tuple[AnthropicBackend, ReplayServer]]:
    with ReplayServer(responses, variant=variant) as server:
        backend = AnthropicBackend(model, api_key=KEY, base_url=server.url)
        try:
            yield backend, server
        finally:
            await backend.aclose()


@asynccontextmanager
async def gemini(
    responses: Sequence[Recorded], variant: str = "exact", model: str = "gemini-2.5-pro"
) -> AsyncIterator[tuple[GoogleBackend, ReplayServer]]:
    with ReplayServer(responses, variant=variant) as server:
        backend = GoogleBackend(model, api_key=GEMINI_KEY, base_url=server.url)
        try:
            yield backend, server
        finally:
            await backend.aclose()


async def answer(
    backend: AnthropicBackend | GoogleBackend, request: CompletionRequest, *, stream: bool
) -> tuple[Completion, list[str]]:
    """The completion, and the text deltas when streamed."""
    if not stream:
        return await backend.complete(request), []
    deltas: list[str] = []
    done: Completion | None = None
    async for chunk in backend.stream(request):
        if chunk.delta:
            deltas.append(chunk.delta)
        if chunk.completion is not None:
            done = chunk.completion
    assert done is not None
    return done, deltas
