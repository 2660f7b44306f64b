"""An LLM agent: a name, a backend, a role, and what it remembers.

An agent answers a :class:`~massgen.agents.turn.Turn` with one backend request (streamed,
so the live view shows tokens as they come). It knows nothing of strategies or of other
agents; the orchestrator reaches it through an :class:`~massgen.agents.handle.AgentHandle`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from massgen.agents.loop import OnDelta, run_turn
from massgen.agents.turn import Turn
from massgen.errors import ConfigError
from massgen.types import ChatMessage, Completion, CompletionRequest

if TYPE_CHECKING:
    from massgen.backends.base import Backend

MEMORY_STRATEGIES = ("full", "sliding_window", "summary")


class Agent:
    """A member of a team.

    ``backend`` is a :class:`~massgen.backends.base.Backend` instance, or a backend type
    name (``"openai"``, ``"anthropic"``, ``"replay"``...) built with ``model``.
    ``memory_strategy``/``memory_size`` are the seed's spellings of the memory settings.
    ``fallback`` names another agent that takes this one's turn if it fails.
    """

    def __init__(
        self,
        name: str,
        backend: Backend | str | None = None,
        role: str = "",
        *,
        model: str | None = None,
        capabilities: Sequence[str] = (),
        tools: Sequence[Any] = (),
        memory_strategy: str = "full",
        memory_size: int | None = None,
        fallback: str | None = None,
        temperature: float | None = None,
        max_tokens: int | None = None,
        prices: dict[str, dict[str, float]] | None = None,
    ) -> None:
        if not name or not name.strip():
            raise ConfigError("an agent needs a non-empty name", key="name")
        if memory_strategy not in MEMORY_STRATEGIES:
            raise ConfigError(
                f"unknown memory strategy {memory_strategy!r}",
                key="memory_strategy",
                hint="use one of: " + ", ".join(MEMORY_STRATEGIES),
            )
        self.name = name
        self.role = role
        self.model = model
        self.capabilities = tuple(capabilities)
        self.tools = tuple(tools)
        self.memory_strategy = memory_strategy
        self.memory_size = memory_size
        self.fallback = fallback
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.prices = prices or {}
        self._backend_spec = backend
        self._backend: Backend | None = backend if not isinstance(backend, str | None) else None

    def __repr__(self) -> str:
        return f"Agent(name={self.name!r}, backend={self.backend_label()!r})"

    @property
    def backend(self) -> Backend:
        """The backend, built on first use when it was given by type name."""
        if self._backend is None:
            spec = self._backend_spec
            if spec is None:
                raise ConfigError(
                    f"agent {self.name!r} has no backend",
                    key="backend",
                    hint='pass backend=... e.g. Agent(name, backend="openai", model="gpt-4o-mini")',
                )
            from massgen.backends.registry import create_backend

            self._backend = create_backend(str(spec), model=self.model or "", name=str(spec))
        return self._backend

    def backend_label(self) -> str:
        built = self._backend
        label = built.describe() if built is not None else str(self._backend_spec)
        return f"{label} ({self.model})" if self.model and self.model not in label else label

    @property
    def supports_tools(self) -> bool:
        return self.backend.supports_tools

    def model_name(self) -> str:
        return self.model or self.backend.model

    def build_messages(self, turn: Turn) -> tuple[ChatMessage, ...]:
        """The conversation sent for ``turn``: the role as system prompt, then the prompt."""
        messages: list[ChatMessage] = []
        if self.role:
            messages.append(ChatMessage("system", self.role))
        messages.append(ChatMessage("user", turn.prompt))
        return tuple(messages)

    def build_request(self, turn: Turn) -> CompletionRequest:
        return CompletionRequest(
            messages=self.build_messages(turn),
            model=self.model,
            temperature=self.temperature,
            max_tokens=turn.max_tokens or self.max_tokens,
            tools=turn.tools,
            tool_choice=turn.tool_choice,
        )

    async def respond(
        self, turn: Turn, on_delta: OnDelta | None = None, *, backend: Backend | None = None
    ) -> Completion:
        """Answer one turn, streaming deltas to ``on_delta``.

        ``backend`` replaces this agent's own for the call: the orchestrator passes its
        backend wrapped in retries (and, later, cache and rate limits).
        """
        request = self.build_request(turn)
        return await run_turn(backend or self.backend, request, on_delta)

    def cost_of(self, completion: Completion) -> float:
        if completion.cached:
            return 0.0
        from massgen.backends.pricing import cost

        return cost(completion.model, completion.usage, self.prices or None)

    def built_backend(self) -> Backend | None:
        """The backend if it has been built (nothing to close otherwise)."""
        return self._backend
