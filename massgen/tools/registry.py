"""Building tools by name: the built-ins, and your own as ``module:Class``/``module:function``.

Built-ins are imported only when built, so a team without tools pays nothing for them.
Settings come from the team file's top-level ``tools:`` section, keyed by tool name; an
entry there may also name what it builds with ``use:`` (a built-in or ``module:attr``), so
one built-in can be offered twice with different settings under two names.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from massgen.errors import ConfigError
from massgen.plugins import load_object
from massgen.tools.base import Tool, tool

if TYPE_CHECKING:
    from massgen.backends.base import Backend

BUILTINS: dict[str, str] = {
    "calculator": "massgen.tools.calculator:Calculator",
    "file_reader": "massgen.tools.file_reader:FileReader",
    "database_query": "massgen.tools.database:DatabaseQuery",
    "api_call": "massgen.tools.http:APICall",
    "web_search": "massgen.tools.web_search:WebSearch",
    "ask_agent": "massgen.teamtools:AskAgent",
    "broadcast": "massgen.teamtools:Broadcast",
}
"""Built-in tool names and where they live."""

SEED_NAMES: dict[str, str] = {
    "Calculator": "calculator",
    "FileReader": "file_reader",
    "DatabaseQuery": "database_query",
    "APICall": "api_call",
    "WebSearch": "web_search",
}
"""The seed's spellings of the built-ins."""

CUSTOM = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*")

COMMON_KEYS = ("use", "timeout", "max_output", "description")
"""Keys every tool entry takes, whatever the tool."""


def builtin(name: str) -> str | None:
    """The built-in's canonical name for ``name`` (seed spellings too), or ``None``."""
    name = SEED_NAMES.get(name, name)
    return name if name in BUILTINS else None


def build_tool(
    name: str, settings: Mapping[str, Any] | None = None, base_dir: Path | None = None
) -> Tool:
    """Build the tool called ``name`` with ``settings`` (its ``tools:`` entry).

    Raises :class:`ConfigError` (with ``key`` set to the offending setting) when the name or
    a setting is wrong.
    """
    options = dict(settings or {})
    use = str(options.pop("use", "") or name)
    common = {k: options.pop(k) for k in ("timeout", "max_output", "description") if k in options}
    canonical = builtin(use)
    if canonical is not None:
        cls = _load(BUILTINS[canonical], None)
        assert isinstance(cls, type) and issubclass(cls, Tool)
        made = _from_settings(cls, options, base_dir)
    elif CUSTOM.fullmatch(use):
        made = _custom(use, options, base_dir)
    else:
        raise ConfigError(f"unknown tool {use!r}", key="use" if use != name else None)
    if use != name or canonical is None:
        made.name = name if not CUSTOM.fullmatch(name) else made.name
    for key, value in common.items():
        _set_common(made, key, value)
    return made


def as_tools(
    items: Iterable[Any],
    settings: Mapping[str, Mapping[str, Any]] | None = None,
    base_dir: Path | None = None,
) -> list[Tool]:
    """Tools from a mix of Tool instances, functions and names (see :func:`build_tool`)."""
    out: list[Tool] = []
    for item in items:
        if isinstance(item, Tool):
            out.append(item)
        elif isinstance(item, str):
            out.append(build_tool(item, (settings or {}).get(item), base_dir))
        elif isinstance(item, type) and issubclass(item, Tool):
            out.append(item())
        elif callable(item):
            out.append(tool(item))
        else:
            raise ConfigError(f"not a tool: {item!r}", key="tools")
    return out


def check_backend(
    made: Tool, backend: Backend, *, model: str | None = None, with_functions: bool = False
) -> None:
    """Fail now, with the config entry's location, when a tool cannot work on ``backend``
    (``web_search`` in ``native`` mode on a backend without provider-side search, or in
    ``auto`` mode with neither); the same choice is made again on every turn."""
    check = getattr(made, "check_backend", None)
    if check is not None:
        check(backend, model=model, with_functions=with_functions)


def _set_common(made: Tool, key: str, value: Any) -> None:
    if key in ("timeout", "max_output"):
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            raise ConfigError("must be a positive number", key=key)
        setattr(made, key, float(value) if key == "timeout" else int(value))
    elif key == "description":
        if not isinstance(value, str) or not value.strip():
            raise ConfigError("must be non-empty text", key=key)
        made.description = value


def _from_settings(cls: type[Tool], options: dict[str, Any], base_dir: Path | None) -> Tool:
    settings_model = getattr(cls, "Settings", None)
    if settings_model is None:
        if options:
            raise ConfigError("unknown setting", key=next(iter(options)))
        return cls()
    try:
        parsed = settings_model.model_validate(options)
    except ValidationError as e:
        item = e.errors()[0]
        key = ".".join(str(p) for p in item["loc"]) or None
        allowed = ", ".join([*settings_model.model_fields, *COMMON_KEYS])
        hint = f"settings of {cls.name}: {allowed}" if item["type"] == "extra_forbidden" else None
        raise ConfigError(item["msg"], key=key, hint=hint) from None
    return cls(parsed, base_dir=base_dir)  # type: ignore[call-arg]


def _custom(spec: str, options: dict[str, Any], base_dir: Path | None) -> Tool:
    target = _load(spec, base_dir)
    if isinstance(target, type) and issubclass(target, Tool):
        try:
            return target(**options)
        except TypeError as e:
            raise ConfigError(f"cannot build tool {spec!r}: {e}") from e
    if isinstance(target, Tool):
        if options:
            raise ConfigError("a ready-made tool takes no settings", key=next(iter(options)))
        return target
    if callable(target) and not isinstance(target, type):
        if options:
            raise ConfigError("a function tool takes no settings", key=next(iter(options)))
        return tool(_as_function(target))
    raise ConfigError(
        f"{spec!r} is neither a Tool subclass nor a function",
        hint="subclass massgen.tools.Tool, or point at a plain function",
    )


def _as_function(target: Callable[..., Any]) -> Callable[..., Any]:
    if not (inspect.isfunction(target) or inspect.iscoroutinefunction(target)):
        raise ConfigError(f"{target!r} is not a plain function")
    return target


def _load(spec: str, base_dir: Path | None) -> Any:
    return load_object(spec, base_dir, what="tool")
