"""Agent state stored one JSON value per field, so every field comes back with its type."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel

from massgen.errors import StateError


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
    """A dict of JSON values, or with ``model`` a pydantic instance validated on each change."""

    __slots__ = ("model", "value")

    def __init__(self, model: type[BaseModel] | None = None) -> None:
        self.model = model
        self.value: dict[str, Any] | BaseModel = model() if model is not None else {}

    def load(self, stored: Mapping[str, str]) -> None:
        data = {k: json.loads(v) for k, v in stored.items()}
        self.value = data if self.model is None else self.model.model_validate(data)

    def update(self, changes: Mapping[str, Any]) -> dict[str, str]:
        """Apply ``changes``; return the stored form of the fields to write."""
        if self.model is None:
            assert isinstance(self.value, dict)
            fields = {k: _dump(k, v) for k, v in changes.items()}
            self.value = {**self.value, **changes}
            return fields
        assert isinstance(self.value, BaseModel)
        unknown = set(changes) - set(self.model.model_fields)
        if unknown:
            raise StateError(f"{self.model.__name__} has no field(s) {sorted(unknown)}")
        new = self.model.model_validate({**self.value.model_dump(), **changes})
        dumped = new.model_dump(mode="json")
        self.value = new
        return {k: json.dumps(dumped[k], separators=(",", ":")) for k in changes}
