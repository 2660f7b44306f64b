"""What every config model shares: strict keys, seed spellings, placeable errors.

Errors raised through :func:`fail` never embed the offending value in their message (it may
be a secret pulled from the environment): the loader decides whether showing it is safe.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, model_validator
from pydantic_core import PydanticCustomError

from massgen.config.suggest import did_you_mean

CUSTOM_CLASS = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*")
"""How a user's own backend class is named: ``package.module:Class``."""

Path_ = tuple[str | int, ...]


def fail(kind: str, message: str, *, at: Path_ = (), hint: str | None = None) -> Exception:
    """A validation error the loader can place: ``at`` is relative to the model raising it."""
    return PydanticCustomError(kind, "{message}", {"message": message, "at": at, "hint": hint})


class ConfigModel(BaseModel):
    """Base of all config models: strict about keys, finite about numbers."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    seed_spellings: ClassVar[dict[str, tuple[str, str]]] = {}
    """Flat spellings this model accepts, mapped to their nested home."""

    @classmethod
    def _spellings(cls, data: dict[str, Any]) -> dict[str, tuple[str, str]]:
        return cls.seed_spellings

    @model_validator(mode="before")
    @classmethod
    def _fold_and_check_keys(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data  # pydantic reports the wrong type
        data = fold(data, cls._spellings(data))
        fields = set(cls.model_fields)
        for key in data:
            if key not in fields:
                allowed = sorted(fields | set(cls._spellings(data)))
                raise fail(
                    "unknown_key", "unknown key", at=(key,), hint=cls._key_hint(key, allowed)
                )
        return data

    @classmethod
    def _key_hint(cls, key: Any, allowed: list[str]) -> str:
        return did_you_mean(str(key), allowed) or f"allowed keys: {', '.join(allowed)}"


def fold(data: dict[str, Any], moves: dict[str, tuple[str, str]]) -> dict[str, Any]:
    """Move flat spellings (``memory_size``) into their nested place (``memory.size``)."""
    if not any(src in data for src in moves):
        return data
    out = dict(data)
    for src, (parent_key, leaf) in moves.items():
        if src not in out:
            continue
        parent = out.get(parent_key)
        if parent is None:
            parent = {}
        elif not isinstance(parent, dict):
            raise fail(
                "spelling_conflict",
                f"cannot combine `{src}` with `{parent_key}` that is not a mapping",
                at=(src,),
                hint=f"write it as `{parent_key}: {{{leaf}: ...}}`",
            )
        else:
            parent = dict(parent)
        if leaf in parent:
            raise fail(
                "spelling_conflict",
                f"given twice, as `{src}` and as `{parent_key}.{leaf}`",
                at=(src,),
                hint="keep one of them",
            )
        parent[leaf] = out.pop(src)
        out[parent_key] = parent
    return out
