"""The options of the replay backend's ``quiz:``: simulated agents of known accuracy
(massgen/backends/quiz.py), checked when the team file loads, for a file and line."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_core import PydanticCustomError

Probability = Annotated[float, Field(ge=0, le=1)]


class QuizOptions(BaseModel):
    """Known questions answered right with probability ``p`` (docs/config.md states the rules)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    answers: str
    """JSONL file of ``{question, answer, choices?, id?}`` rows; relative to the config file."""
    p: float | dict[str, float]
    """Chance of a right answer: one for every agent, or one per agent name."""
    correlation: Probability = 0.0
    """How often an agent's draw is the question's shared draw (the chance stays ``p``)."""
    wrong: Literal["coincide", "distinct"] = "coincide"
    """Wrong answers to a question: all the same one, or each agent's (and sample's) own."""
    vote: Literal["plurality", "own", "correct", "revise"] = "plurality"
    """How a review prompt is answered: which answer block the agent votes for (or revise)."""
    seed: int = 0
    """Seeds every draw; agents share a question's draws only under the same seed."""
    latency: float = Field(default=0.0, ge=0)
    """Seconds per quiz reply (the backend's ``latency`` is for its other replies): none by
    default, so an eval of thousands of questions takes seconds, not minutes."""

    @field_validator("p")
    @classmethod
    def _chances(cls, value: float | dict[str, float]) -> float | dict[str, float]:
        chances = value.values() if isinstance(value, dict) else [value]
        if not all(0 <= chance <= 1 for chance in chances):
            raise PydanticCustomError("chance", "a chance is a number from 0 to 1")
        return value
