"""What crosses the bus with a turn: its values, tool events and error (rebuilt as the same
class, so fallback behaves as in one process). Malformed payloads: TransportError."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, TypeVar

from pydantic import ValidationError

from massgen import errors as E
from massgen import events as ev
from massgen.errors import RemoteError
from massgen.memory.short_term import Folded, MemoryContext
from massgen.serialize import completion_to_dict, from_dict, to_dict
from massgen.types import Completion, Turn

T = TypeVar("T")

# The events a worker's turn sends back with its answer: the calls of its tools.
TOOL_EVENTS: dict[str, type[ev.Event]] = {c.__name__: c for c in (ev.ToolCalled, ev.ToolResult)}


_KINDS: dict[str, type[E.MassGenError]] = {
    name: cls
    for name, cls in vars(E).items()
    if isinstance(cls, type)
    and issubclass(cls, E.MassGenError)
    and cls.__init__ in {E.ProviderError.__init__, E.ConfigError.__init__, Exception.__init__}
    and cls is not E.Interrupted  # a worker stopping is not the user stopping the run
}
"""The error classes rebuilt on the caller's side: built like ProviderError, like
ConfigError, or from a message alone."""


@dataclass(frozen=True, slots=True)
class ErrorInfo:
    """An error as it crosses the bus: its nearest class in :data:`_KINDS` and its fields."""

    message: str
    name: str = "Exception"
    type: str | None = None
    provider: str = ""
    status: int | None = None
    retry_after: float | None = None
    retryable: bool | None = None
    file: str | None = None
    line: int | None = None
    key: str | None = None
    hint: str | None = None


@dataclass(frozen=True, slots=True)
class TurnRequest:
    """A turn as a run sends it; a worker that takes it after ``deadline`` skips it (nobody
    waits), and streams its deltas to ``stream`` (``to``: the run's feed, ``key``) if set."""

    turn: Turn
    run: str = ""
    deadline: float | None = None
    memory: MemoryContext = MemoryContext()
    stream: dict[str, str] | None = None


@dataclass(slots=True)
class TurnReply:
    """A worker's answer to a turn: its completion and tool events, or its error; and the
    summary it wrote first, if any (kept even when the answer failed)."""

    worker: str = ""
    completion: Completion | None = None
    events: list[dict[str, Any]] = field(default_factory=list)
    error: dict[str, Any] | None = None
    folded: Folded | None = None


def decode(cls: type[T], data: Any, what: str) -> T:
    """``data`` as a ``cls``, or a TransportError naming the first bad field."""
    try:
        return from_dict(cls, data)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or what
        raise E.TransportError(f"malformed {what} on the bus: {where}: {first['msg']}") from None


def completion_from_dict(data: Any) -> Completion:
    return decode(Completion, data, "completion")


def tool_events_to_list(events: list[ev.Event]) -> list[dict[str, Any]]:
    return [{"type": e.kind, **to_dict(e)} for e in events if e.kind in TOOL_EVENTS]


def tool_events_from_list(data: Any) -> list[ev.Event]:
    """The tool events of a reply; anything that is not one is refused."""
    if not isinstance(data, list):
        raise E.TransportError("malformed tool events on the bus: not a list")
    out: list[ev.Event] = []
    for item in data:
        cls = TOOL_EVENTS.get(str(item.get("type"))) if isinstance(item, dict) else None
        if cls is None:
            raise E.TransportError("malformed tool events on the bus: unknown event")
        out.append(decode(cls, {k: v for k, v in item.items() if k != "type"}, "tool event"))
    return out


def error_to_dict(error: BaseException) -> dict[str, Any]:
    """What the caller needs to raise the same error: class, message and its fields."""
    kind = next((c.__name__ for c in type(error).__mro__ if _KINDS.get(c.__name__) is c), None)
    message, fields = str(error), {}
    if isinstance(error, E.ProviderError):
        message = str(error.args[0]) if error.args else ""
        fields = {f: getattr(error, f) for f in ("provider", "status", "retry_after", "retryable")}
    elif isinstance(error, E.ConfigError):
        message = error.message
        fields = {f: getattr(error, f) for f in ("file", "line", "key", "hint")}
    return to_dict(ErrorInfo(message, type(error).__name__, kind, **fields))


def error_from_dict(data: Any, source: str = "?") -> Exception:
    """The error ``data`` describes, ready to raise; ``source`` names the remote agent."""
    try:
        info = from_dict(ErrorInfo, data)
    except ValidationError:
        return E.TransportError(f"agent {source!r} sent a malformed error")
    cls = _KINDS.get(str(info.type))
    if cls is None:
        return RemoteError(source, f"{info.name}: {info.message}")
    if issubclass(cls, E.ProviderError):
        error = cls(
            info.message, provider=info.provider, status=info.status, retry_after=info.retry_after
        )
        if info.retryable is not None and info.retryable != cls.retryable:
            error.retryable = info.retryable
        return error
    if issubclass(cls, E.ConfigError):
        return cls(info.message, file=info.file, line=info.line, key=info.key, hint=info.hint)
    return cls(info.message)


__all__ = ["completion_from_dict", "completion_to_dict", "decode", "to_dict"]
