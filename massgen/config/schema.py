"""The JSON Schema of a team file, for editors and for `massgen schema`.

Field descriptions come from the docstrings under each field in ``models.py``. They are
read here, on demand, rather than by pydantic at import, so loading a config stays fast."""

from __future__ import annotations

import ast
import inspect
from typing import Any

from pydantic import BaseModel

from massgen.config import models


def json_schema() -> dict[str, Any]:
    """JSON Schema (draft 2020-12) of :class:`~massgen.config.TeamConfig`."""
    schema = models.TeamConfig.model_json_schema()
    defs = schema.setdefault("$defs", {})
    for model in models.ConfigModel.__subclasses__():
        target = schema if model is models.TeamConfig else defs.get(model.__name__)
        if target is None:
            continue
        props = target.get("properties", {})
        for name, doc in field_docs(model).items():
            if name in props and "description" not in props[name]:
                props[name]["description"] = doc
        _add_spellings(model, target, defs)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "massgen team"
    return schema


def field_docs(model: type[BaseModel]) -> dict[str, str]:
    """``{field: docstring}`` for the string literals written under a model's fields."""
    try:
        tree = ast.parse(inspect.getsource(model))
    except (OSError, TypeError, SyntaxError):
        return {}
    body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
    docs: dict[str, str] = {}
    for stmt, nxt in zip(body, body[1:], strict=False):
        match stmt, nxt:
            case ast.AnnAssign(target=ast.Name(id=name)), ast.Expr(ast.Constant(str(doc))):
                docs[name] = inspect.cleandoc(doc)
    return docs


def _add_spellings(model: type[BaseModel], target: dict[str, Any], defs: dict[str, Any]) -> None:
    """Let editors accept the seed's flat spellings (``memory_size``...) too."""
    spellings = getattr(model, "seed_spellings", {})
    props = target.get("properties", {})
    for spelling, (parent, leaf) in spellings.items():
        home = props.get(parent, {})
        ref = home.get("$ref", "").rsplit("/", 1)[-1]
        leaf_schema = dict(defs.get(ref, {}).get("properties", {}).get(leaf, {}))
        leaf_schema["description"] = f"Same as `{parent}.{leaf}` (the seed's spelling)."
        props[spelling] = leaf_schema
