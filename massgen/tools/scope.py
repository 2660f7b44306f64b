"""Who is calling, and per-turn scratch space: what tools acting for an agent need to know.

The tool loop (:func:`massgen.agents.loop.run_turn`) sets both around a turn's tool calls;
a turn nested in a tool call (an agent asked through ``ask_agent``) shares its parent's
scratch space, so limits kept there hold across the whole chain.
"""

from __future__ import annotations

import contextvars
from typing import Any

calling_agent: contextvars.ContextVar[str] = contextvars.ContextVar(
    "massgen_calling_agent", default=""
)
"""The agent whose tool calls are running."""

turn_state_var: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "massgenturn_state_var", default=None
)


def turn_state() -> dict[str, Any]:
    """Scratch space shared by the tools of one top-level turn and the turns nested in it."""
    state = turn_state_var.get()
    if state is None:
        state = {}
        turn_state_var.set(state)
    return state
