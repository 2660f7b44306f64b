"""Agent state that comes back from storage with its types intact.

Each field is stored as its own JSON value (one hash field per state field), so ``42``
comes back as ``42``, not ``"42"``, and updating one field never rewrites the others. Plain
dict state accepts JSON values only and refuses anything JSON would change (tuples, sets,
non-string keys) instead of silently changing it; give the agent a pydantic ``state_model``
for richer types (nested models, datetimes), which are validated on every update and load.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel


class StateError(TypeError):
    """An update the state cannot store faithfully."""


def _dump(key: str, value: Any) -> str:
    try:
        text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    except (TypeError, ValueError) as e:
        raise StateError(
            f"state field {key!r}: {type(value).__name__} is not JSON; "
            "use a state_model for richer types"
        ) from e
    if json.loads(text) != value:
        raise StateError(
            f"state field {key!r} would not survive storage unchanged (tuple, set or "
            "non-string dict key?); use lists and string keys, or a state_model"
        )
    return text


class AgentState:
    """The current state of one agent and how to store it.

    ``value`` is a ``dict`` or, with ``model``, an instance of it.
    """

    __slots__ = ("_model", "value")

    def __init__(self, model: type[BaseModel] | None = None) -> None:
        self._model = model
        self.value: dict[str, Any] | BaseModel = model() if model is not None else {}

    @property
    def model(self) -> type[BaseModel] | None:
        return self._model

    def load(self, stored: Mapping[str, str]) -> None:
        """Replace the state with what storage holds."""
        data = {k: json.loads(v) for k, v in stored.items()}
        if self._model is None:
            self.value = data
        else:
            self.value = self._model.model_validate(data)

    def update(self, changes: Mapping[str, Any]) -> dict[str, str]:
        """Apply ``changes``; return the stored form of the fields to write."""
        if self._model is None:
            assert isinstance(self.value, dict)
            fields = {k: _dump(k, v) for k, v in changes.items()}
            self.value = {**self.value, **changes}
            return fields
        assert isinstance(self.value, BaseModel)
        unknown = set(changes) - set(self._model.model_fields)
        if unknown:
            raise StateError(f"{self._model.__name__} has no field(s) {sorted(unknown)}")
        merged = {**self.value.model_dump(), **changes}
        new = self._model.model_validate(merged)
        dumped = new.model_dump(mode="json")
        self.value = new
        return {k: json.dumps(dumped[k], separators=(",", ":")) for k in changes}
