"""Turn a pydantic ValidationError into one ConfigError a person can act on.

The message names the file, line and dotted key *as written* (a seed spelling such as
``memory_size`` is reported as such), says what is wrong in plain words and suggests a fix.
Values that came from the environment, and values of secret-looking keys, are never shown."""

from __future__ import annotations

import re
from typing import Any

from pydantic import ValidationError

from massgen.config.models import SEED_SPELLINGS, did_you_mean, one_of
from massgen.config.yamlsrc import Lines, Path_, dotted, line_of
from massgen.errors import ConfigError

_UNION_TAGS = frozenset({"name", "inline"})
_SECRET_NAMES = frozenset({"key", "password", "secret", "token", "auth", "authorization"})
_SECRET_ENDINGS = ("_key", "_password", "_secret", "_token")

_EXPECTED = {"string": "a string", "int": "an integer", "float": "a number"}
_EXPECTED |= {"bool": "true or false", "list": "a list", "dict": "a mapping (key: value)"}
_EXPECTED["model"] = _EXPECTED["dict"]
_BOUNDS = {"greater_than": ("gt", "greater than"), "less_than": ("lt", "less than")}
_BOUNDS |= {"greater_than_equal": ("ge", "at least"), "less_than_equal": ("le", "at most")}
_MISSING_HINTS: dict[str | int, str] = {
    "agents": "a team needs at least one agent under `agents:`, each with a name and a backend",
    "type": "give the provider, e.g. `type: openai`",
    "backend": "give a name from `backends:`, a provider such as `openai`, or a mapping",
}


def _expected(kind: str) -> str | None:
    """What a pydantic type error (``int_parsing``, ``model_attributes_type``...) wanted."""
    if kind == "int_from_float":
        return "a whole number"
    head, _, tail = kind.partition("_")
    ok = tail in ("type", "parsing", "unicode", "attributes_type")
    return _EXPECTED.get(head) if ok else None


def translate(
    exc: ValidationError,
    *,
    raw: Any,
    file: str | None,
    lines: Lines,
    hidden: set[Path_] | None = None,
) -> ConfigError:
    """The first error (in file order) of ``exc``, saying how many more there are, which it
    holds (``more``: ``config validate`` shows them all); the values at ``hidden`` paths (from
    the environment) are never shown."""
    placed = []
    for err in exc.errors(include_url=False):
        path = written_path((*err["loc"], *(err.get("ctx") or {}).get("at", ())), raw)
        placed.append((line_of(path, lines) if lines else None, path, err))
    placed.sort(key=lambda item: item[0] if item[0] is not None else 1 << 30)
    errors: list[ConfigError] = []
    for line, path, err in placed:
        message, hint = describe(err, path, show_value=_showable(path, hidden or set()))
        if not errors and len(placed) > 1:
            more = len(placed) - 1
            message += f" (and {more} more {'error' if more == 1 else 'errors'})"
        key = dotted(path) or None
        errors.append(ConfigError(message, file=file, line=line, key=key, hint=hint))
    errors[0].more = tuple(errors[1:])
    return errors[0]


def written_path(loc: tuple[Any, ...], raw: Any) -> Path_:
    """Pydantic's location as the keys the user wrote: union tags dropped, and a path into
    a folded spelling (``memory.size``) as the spelling written (``memory_size``)."""
    out: list[str | int] = []
    node = raw
    i = 0
    while i < len(loc):
        part, is_dict = loc[i], isinstance(node, dict)
        spelling = _spelling_at(node, loc, i) if is_dict else None
        if spelling is not None:
            out.append(spelling)
            node, i = node[spelling], i + 2
        elif (is_dict and part in node) or (
            isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)
        ):
            out.append(part)
            node, i = node[part], i + 1
        elif is_dict and part in _UNION_TAGS and i < len(loc) - 1:
            i += 1
        else:
            out.extend(p for p in loc[i:] if isinstance(p, int | str) and p not in _UNION_TAGS)
            break
    return tuple(out)


def _spelling_at(node: dict[str, Any], loc: tuple[Any, ...], i: int) -> str | None:
    if i + 1 >= len(loc) or loc[i] in node:
        return None
    for spelling, home in SEED_SPELLINGS.items():
        if home == (loc[i], loc[i + 1]) and spelling in node:
            return spelling
    return None


def _showable(path: Path_, hidden: set[Path_]) -> bool:
    if any(path[:end] in hidden for end in range(len(path) + 1)):
        return False
    names = [p.lower() for p in path if isinstance(p, str)]
    if any(n in _SECRET_NAMES or n.endswith(_SECRET_ENDINGS) for n in names):
        return False
    return names[:2] != ["redis", "url"]


def describe(err: Any, path: Path_, *, show_value: bool) -> tuple[str, str | None]:
    """Plain words for one pydantic error: ``(message, hint)``."""
    kind = err["type"]
    ctx = err.get("ctx") or {}
    value = err.get("input")
    got = f", got {_render(value)}" if show_value else ""
    expected = _expected(kind)
    if expected is not None:
        hint = None
        if kind == "string_type" and isinstance(value, int | float) and show_value:
            hint = f'put it in quotes: "{_render(value, quote=False)}"'
        if kind in ("model_type", "dict_type") and value is None:
            hint = "give it some keys, or remove it to use the defaults"
        return f"expected {expected}{got}", hint
    if kind == "missing":
        return "required key is missing", _missing_hint(path)
    if kind in ("unknown_key", "extra_forbidden"):
        return "unknown key", ctx.get("hint")
    if kind == "literal_error":
        allowed = re.findall(r"'([^']*)'", str(ctx.get("expected", "")))
        hint = did_you_mean(value, allowed) if isinstance(value, str) else None
        return f"must be one of {one_of(allowed)}{got}", hint
    if kind in _BOUNDS:
        key, words = _BOUNDS[kind]
        return f"must be {words} {_render(ctx.get(key))}{got}", None
    if kind == "finite_number":
        return "must be a finite number", None
    if kind == "too_short":
        least = ctx.get("min_length", 1)
        return f"needs at least {least} {'item' if least == 1 else 'items'}", _missing_hint(path)
    if kind == "string_too_short":
        return "must not be empty", None
    if kind == "value_error":
        return str(ctx.get("error", err["msg"])), None
    if "hint" in ctx or "message" in ctx:  # ours, from massgen.config.models
        return str(err["msg"]), ctx.get("hint")
    message = str(err["msg"]).replace("Input should be", "expected", 1)
    return message[:1].lower() + message[1:], None


def _missing_hint(path: Path_) -> str | None:
    return _MISSING_HINTS.get(path[-1]) if path else None


def _render(value: Any, *, quote: bool = True) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        short = value if len(value) <= 40 else value[:37] + "..."
        return repr(short) if quote else short
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    return type(value).__name__
