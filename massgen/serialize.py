"""One JSON shape for massgen's dataclasses (Completion, Turn, memory), shared by the
cache, the bus and the stores; decoding raises ``ValidationError``; a missing field defaults."""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import TypeAdapter

from massgen.types import Completion

T = TypeVar("T")
_ADAPTERS: dict[type[Any], TypeAdapter[Any]] = {}


def _adapter(cls: type[Any]) -> TypeAdapter[Any]:
    if (adapter := _ADAPTERS.get(cls)) is None:
        adapter = _ADAPTERS[cls] = TypeAdapter(cls)
    return adapter


def to_dict(value: Any) -> dict[str, Any]:
    """Every field of ``value`` as JSON-safe values."""
    return _adapter(type(value)).dump_python(value, mode="json")


def from_dict(cls: type[T], data: Any) -> T:
    """The ``cls`` that ``data`` spells; ``ValidationError`` if it spells none."""
    return _adapter(cls).validate_python(data)


def to_json(value: Any) -> bytes:
    """``value`` as one JSON document (UTF-8, not ASCII-escaped), for a store record."""
    return _adapter(type(value)).dump_json(value)


def from_json(cls: type[T], raw: bytes | str) -> T:
    """The ``cls`` a record from :func:`to_json` holds; ``ValidationError`` if none."""
    return _adapter(cls).validate_json(raw)


def completion_to_dict(completion: Completion) -> dict[str, Any]:
    return to_dict(completion)


def completion_from_dict(data: Any) -> Completion:
    return from_dict(Completion, data)
