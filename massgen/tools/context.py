"""What a tool call knows of its run (kept free of pydantic: agents import it at start-up)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from massgen import events as ev


@dataclass(frozen=True, slots=True)
class ToolContext:
    """What a tool call knows of its run, passed explicitly down every call (no globals)."""

    agent: str = ""  # whose turn made the call
    run: str = ""  # the run's id: what a tool keeps for one run (an MCP server given up on)
    state: dict[str, Any] = field(default_factory=dict)
    """Scratch space of one top-level turn, shared with the turns nested in it (``ask_agent``),
    so limits kept there hold across the whole chain."""
    emit: Callable[[ev.Event], None] | None = None  # the run's events; None: nobody listens
    on_attempt: Callable[[ev.Event], None] | None = None  # told each provider attempt (a
    # RequestDone: traces, metrics), for the turns a tool asks for; None: nobody observes them
    peers: Mapping[str, Any] = field(default_factory=dict)  # the run's handles, for ask_agent
    trace: str | Callable[[], str] = ""
    """The turn's span as a W3C traceparent, sent with turns to workers; a function giving
    it when it is asked for (:meth:`traceparent`): most turns never send one."""

    def traceparent(self) -> str:
        return self.trace() if callable(self.trace) else self.trace
