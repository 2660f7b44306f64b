"""A backend made from a Python function: for tests, prototypes and rule-based agents."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from massgen.backends.base import Backend, text_completion
from massgen.types import Completion, CompletionRequest

Responder = Callable[[CompletionRequest], "str | Completion | Awaitable[str | Completion]"]


class FunctionBackend(Backend):
    """Answers with ``fn(request)`` (text or a Completion, sync or async). ``tools=True``:
    it claims tool support, for a strategy's tool-call path."""

    provider: str = "function"

    def __init__(self, fn: Responder, *, model: str = "function", tools: bool = False) -> None:
        super().__init__(model=model)
        self.fn = fn
        self.supports_tools = tools
        self.calls: list[CompletionRequest] = []

    async def complete(self, request: CompletionRequest) -> Completion:
        self.calls.append(request)
        started = time.perf_counter()
        return await text_completion(self, request, self.fn(request), started)
