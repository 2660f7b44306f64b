"""The replay backend's options, checked at load time so mistakes get a file and line.

The backend itself (``massgen.backends.replay``) reads them; only what the config can
check cheaply is checked here, and unknown options pass through.
"""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field, field_validator

from massgen.config._base import fail

REPLAY_OPTIONS: tuple[str, ...] = (
    "rules",
    "replies",
    "default",
    "answers_file",
    "latency",
    "stream_chunk",
)
"""Replay options allowed at the top of a replay backend; they are moved into ``params``."""


class ReplayRule(BaseModel):
    """One scripted reply of the replay backend: the first rule whose regex matches wins."""

    model_config = ConfigDict(extra="allow")

    match: str
    """Regular expression searched in the prompt."""
    reply: str
    """Text to answer; may contain the replay backend's templates."""

    @field_validator("match")
    @classmethod
    def _regex(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as e:
            raise fail("bad_regex", f"not a valid regular expression: {e}") from None
        return value


class ReplayOptions(BaseModel):
    """The replay backend's options that the config checks; others pass through."""

    model_config = ConfigDict(extra="allow", allow_inf_nan=False)

    rules: list[ReplayRule] | None = None
    replies: list[str] | None = None
    default: str | None = None
    answers_file: str | None = None
    latency: float | None = Field(default=None, ge=0)
    stream_chunk: int | None = Field(default=None, gt=0)
