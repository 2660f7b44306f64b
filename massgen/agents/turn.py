"""What a strategy asks of an agent, as a plain value that can cross a process boundary."""

from __future__ import annotations

from dataclasses import dataclass

from massgen.types import ToolSpec


@dataclass(frozen=True, slots=True)
class Turn:
    """One request to an agent. ``phase`` names the step (answer, review, ask...);
    ``tools``/``tool_choice`` ask for a structured reply (consensus votes)."""

    phase: str
    prompt: str
    round: int = 0
    tools: tuple[ToolSpec, ...] = ()
    tool_choice: str | None = None
    max_tokens: int | None = None
