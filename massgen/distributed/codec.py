"""Turns, completions and errors as JSON-safe dicts, so an agent turn can cross the bus.

A turn travels with the memory the run owns (a :class:`~massgen.memory.short_term.MemoryContext`:
the session's summary and exchanges, the recalled items) and its reply with any summary
the worker wrote (a :class:`~massgen.memory.short_term.Folded`).

Decoding validates (a pydantic ``TypeAdapter`` over the same dataclasses), so a malformed
payload is refused with a :class:`~massgen.errors.TransportError`, never half-used.

Errors keep their class: a :class:`~massgen.errors.RateLimited` raised on a worker is
re-raised on the caller as a ``RateLimited`` with the same status, ``retry_after`` and
``retryable``, so fallback and ``error_strategy`` behave exactly as they do in one process.
A class outside :mod:`massgen.errors` travels as its nearest massgen ancestor; anything
that is no massgen error at all (a bug in a custom backend) comes back as a
:class:`~massgen.mas.RemoteError` naming the original type.
"""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import TypeAdapter, ValidationError

from massgen import errors as E
from massgen import events as ev
from massgen import serialize
from massgen.agents.turn import Turn
from massgen.errors import RemoteError
from massgen.memory.short_term import Folded, MemoryContext
from massgen.types import Completion

T = TypeVar("T")

_TURN = TypeAdapter(Turn)
_MEMORY = TypeAdapter(MemoryContext)
_FOLDED = TypeAdapter(Folded)
_TOOL_EVENTS: dict[str, TypeAdapter[Any]] = {
    cls.__name__: TypeAdapter(cls) for cls in (ev.ToolCalled, ev.ToolResult)
}
"""The events a worker's turn sends back with its answer: the calls of its tools."""


def _rebuildable() -> dict[str, type[E.MassGenError]]:
    """The classes of :mod:`massgen.errors` an error may come back as: those built like
    ProviderError, like ConfigError, or from a message alone (AgentFailed, which wraps
    another error, travels as a RunError; Interrupted too: a worker stopping is not the
    user stopping the run). Read from the module, so a class added there keeps its
    identity across the bus without a change here."""
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


def turn_to_dict(turn: Turn) -> dict[str, Any]:
    return _TURN.dump_python(turn, mode="json")


def turn_from_dict(data: Any) -> Turn:
    return _load(_TURN, data, "turn")


def completion_to_dict(completion: Completion) -> dict[str, Any]:
    return serialize.completion_to_dict(completion)


def completion_from_dict(data: Any) -> Completion:
    """The completion in a reply (:mod:`massgen.serialize`'s shape); malformed: refused."""
    try:
        return serialize.completion_from_dict(data)
    except ValidationError as e:
        raise _malformed(e, "completion") from None


def memory_to_dict(memory: MemoryContext) -> dict[str, Any]:
    return _MEMORY.dump_python(memory, mode="json")


def memory_from_dict(data: Any) -> MemoryContext:
    return _load(_MEMORY, data, "memory")


def folded_to_dict(folded: Folded) -> dict[str, Any]:
    return _FOLDED.dump_python(folded, mode="json")


def folded_from_dict(data: Any) -> Folded:
    return _load(_FOLDED, data, "summary")


def is_tool_event(event: ev.Event) -> bool:
    """Whether ``event`` is one a worker sends back (a call of the agent's own tools)."""
    return event.kind in _TOOL_EVENTS


def tool_events_to_list(events: list[ev.Event]) -> list[dict[str, Any]]:
    return [
        {"type": e.kind, **_TOOL_EVENTS[e.kind].dump_python(e, mode="json")}
        for e in events
        if e.kind in _TOOL_EVENTS
    ]


def tool_events_from_list(data: Any) -> list[ev.Event]:
    """The tool events of a reply; anything that is not one is refused."""
    if not isinstance(data, list):
        raise E.TransportError("malformed tool events on the bus: not a list")
    out: list[ev.Event] = []
    for item in data:
        adapter = _TOOL_EVENTS.get(str(item.get("type"))) if isinstance(item, dict) else None
        if adapter is None:
            raise E.TransportError("malformed tool events on the bus: unknown event")
        fields = {k: v for k, v in item.items() if k != "type"}
        out.append(_load(adapter, fields, "tool event"))
    return out


def error_to_dict(error: BaseException) -> dict[str, Any]:
    """What the caller needs to raise the same error: class, message and its fields."""
    kind = next((c.__name__ for c in type(error).__mro__ if _KINDS.get(c.__name__) is c), None)
    out: dict[str, Any] = {"type": kind, "name": type(error).__name__}
    if isinstance(error, E.ProviderError):
        out |= {
            "message": _first_arg(error),
            "provider": error.provider,
            "status": error.status,
            "retry_after": error.retry_after,
            "retryable": error.retryable,
        }
    elif isinstance(error, E.ConfigError):
        out |= {
            "message": error.message,
            "file": error.file,
            "line": error.line,
            "key": error.key,
            "hint": error.hint,
        }
    else:
        out["message"] = str(error)
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
        return cls(
            message,
            file=_opt(data.get("file"), str),
            line=_opt(data.get("line"), int),
            key=_opt(data.get("key"), str),
            hint=_opt(data.get("hint"), str),
        )
    return cls(message)


def _load(adapter: TypeAdapter[T], data: Any, what: str) -> T:
    try:
        return adapter.validate_python(data)
    except ValidationError as e:
        raise _malformed(e, what) from None


def _malformed(error: ValidationError, what: str) -> E.TransportError:
    first = error.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or what
    return E.TransportError(f"malformed {what} on the bus: {where}: {first['msg']}")


def _first_arg(error: BaseException) -> str:
    return str(error.args[0]) if error.args else ""


def _opt(value: Any, kind: type[T]) -> T | None:
    if value is None:
        return None
    try:
        return kind(value)  # type: ignore[call-arg]
    except (TypeError, ValueError):
        return None
