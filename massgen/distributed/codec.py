"""What crosses the bus with a turn: its values (through :mod:`massgen.serialize`), its tool
events and its error, which is rebuilt on the caller as the same class with the same fields,
so fallback and ``error_strategy`` behave as in one process. A malformed payload is refused
with a :class:`~massgen.errors.TransportError`, never half-used."""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import ValidationError

from massgen import errors as E
from massgen import events as ev
from massgen.errors import RemoteError
from massgen.serialize import completion_to_dict, from_dict, to_dict
from massgen.types import Completion

T = TypeVar("T")

TOOL_EVENTS: dict[str, type[ev.Event]] = {c.__name__: c for c in (ev.ToolCalled, ev.ToolResult)}
"""The events a worker's turn sends back with its answer: the calls of its tools."""


def _rebuildable() -> dict[str, type[E.MassGenError]]:
    """The classes of :mod:`massgen.errors` built like ProviderError, like ConfigError or from
    a message alone (Interrupted excepted: a worker stopping is not the user stopping)."""
    inits = {E.ProviderError.__init__, E.ConfigError.__init__, Exception.__init__}
    return {
        name: cls
        for name, cls in vars(E).items()
        if isinstance(cls, type)
        and issubclass(cls, E.MassGenError)
        and cls.__init__ in inits
        and cls is not E.Interrupted
    }


_KINDS = _rebuildable()


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
    out: dict[str, Any] = {"type": kind, "name": type(error).__name__, "message": str(error)}
    if isinstance(error, E.ProviderError):
        out |= {
            "message": str(error.args[0]) if error.args else "",
            "provider": error.provider,
            "status": error.status,
            "retry_after": error.retry_after,
            "retryable": error.retryable,
        }
    elif isinstance(error, E.ConfigError):
        fields = ("message", "file", "line", "key", "hint")
        out |= {f: getattr(error, f) for f in fields}
    return out


def error_from_dict(data: Any, source: str = "?") -> Exception:
    """The error ``data`` describes, ready to raise; ``source`` names the remote agent."""
    if not isinstance(data, dict) or not isinstance(data.get("message"), str):
        return E.TransportError(f"agent {source!r} sent a malformed error")
    message: str = data["message"]
    cls = _KINDS.get(str(data.get("type")))
    if cls is None:
        return RemoteError(source, f"{data.get('name') or 'Exception'}: {message}")
    if issubclass(cls, E.ProviderError):
        error = cls(
            message,
            provider=str(data.get("provider") or ""),
            status=_opt(data.get("status"), int),
            retry_after=_opt(data.get("retry_after"), float),
        )
        retryable = data.get("retryable")
        if isinstance(retryable, bool) and retryable != cls.retryable:
            error.retryable = retryable
        return error
    if issubclass(cls, E.ConfigError):
        extra = {k: _opt(data.get(k), str) for k in ("file", "key", "hint")}
        return cls(message, line=_opt(data.get("line"), int), **extra)
    return cls(message)


def _opt(value: Any, kind: type[T]) -> T | None:
    if value is None:
        return None
    try:
        return kind(value)  # type: ignore[call-arg]
    except (TypeError, ValueError):
        return None


__all__ = ["completion_from_dict", "completion_to_dict", "decode", "to_dict"]
