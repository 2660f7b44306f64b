"""One agent turn against a backend: the request, streamed, until a final answer.

Kept apart from :class:`~massgen.agents.agent.Agent` because this is where the tool-call
loop lives: the agent decides *what* to send, this module runs the exchange.
"""

from __future__ import annotations

from collections.abc import Callable

from massgen.backends.base import Backend
from massgen.errors import ProviderConnectionError
from massgen.types import Completion, CompletionRequest

OnDelta = Callable[[str], None]


async def stream_once(
    backend: Backend, request: CompletionRequest, on_delta: OnDelta | None = None
) -> Completion:
    """Send ``request`` streamed; deltas go to ``on_delta``; return the final completion."""
    completion: Completion | None = None
    async for chunk in backend.stream(request):
        if chunk.delta and on_delta is not None:
            on_delta(chunk.delta)
        if chunk.completion is not None:
            completion = chunk.completion
    if completion is None:
        raise ProviderConnectionError(
            "the stream ended without a final answer", provider=backend.provider
        )
    return completion


async def run_turn(
    backend: Backend, request: CompletionRequest, on_delta: OnDelta | None = None
) -> Completion:
    """Answer one turn. Without tools of the agent's own this is one streamed request."""
    return await stream_once(backend, request, on_delta)
