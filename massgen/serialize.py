"""One JSON shape for a :class:`~massgen.types.Completion`, used by the cache and the bus.

:func:`completion_to_dict` gives every field as JSON-safe values (``usage`` and each tool
call, source and provider-side call as an object); :func:`completion_from_dict` validates
such a dict back into a ``Completion`` (a field left out takes its default, so a payload
written before a field existed still reads) and raises pydantic's ``ValidationError`` on
anything malformed: each caller maps that to its own error.
"""

from __future__ import annotations

from typing import Any

from pydantic import TypeAdapter

from massgen.types import Completion

_COMPLETION = TypeAdapter(Completion)


def completion_to_dict(completion: Completion) -> dict[str, Any]:
    """Every field of ``completion`` as JSON-safe values."""
    return _COMPLETION.dump_python(completion, mode="json")


def completion_from_dict(data: Any) -> Completion:
    """The ``Completion`` ``data`` spells; ``ValidationError`` if it spells none."""
    return _COMPLETION.validate_python(data)


__all__ = ["completion_from_dict", "completion_to_dict"]
