"""Building tools by name: the built-ins (imported only when built), and your own as
``module:Class``/``module:function``."""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from massgen.config.models import CUSTOM_CLASS as CUSTOM
from massgen.config.references import SEED_TOOL_NAMES as SEED_NAMES
from massgen.errors import ConfigError
from massgen.plugins import load_object
from massgen.tools.base import COMMON_KEYS, Tool, tool

BUILTINS: dict[str, str] = {
    "calculator": "massgen.tools.calculator:Calculator",
    "file_reader": "massgen.tools.file_reader:FileReader",
    "database_query": "massgen.tools.database:DatabaseQuery",
    "api_call": "massgen.tools.http:APICall",
    "web_search": "massgen.tools.http:WebSearch",
    "mcp": "massgen.tools.mcp:McpServer",  # a group: every tool of one MCP server
    # the teammate tools reach agents, so they live a layer above (named here, not imported)
    "ask_agent": "massgen.teamtools:AskAgent",
    "broadcast": "massgen.teamtools:Broadcast",
}


def build_tool(
    name: str, settings: Mapping[str, Any] | None = None, base_dir: Path | None = None
) -> Tool:
    """Build the tool called ``name`` with ``settings`` (its ``tools:`` entry); a wrong name
    or setting is a :class:`ConfigError` naming the key."""
    options = dict(settings or {})
    use = str(options.pop("use", "") or name)
    common = {k: options.pop(k) for k in COMMON_KEYS[1:] if k in options}
    canonical = SEED_NAMES.get(use, use)
    if canonical in BUILTINS:
        cls = load_object(BUILTINS[canonical], None, what="tool")
        made = cls(cls.parse(options), base_dir=base_dir)
    elif CUSTOM.fullmatch(use):
        made = _custom(use, options, base_dir)
    else:
        raise ConfigError(f"unknown tool {use!r}", key="use" if use != name else None)
    if (use != name or canonical not in BUILTINS) and not CUSTOM.fullmatch(name):
        made.name = name
    for key, value in common.items():
        if key == "description":
            if not isinstance(value, str) or not value.strip():
                raise ConfigError("must be non-empty text", key=key)
        elif isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            raise ConfigError("must be a positive number", key=key)
        setattr(made, key, {"timeout": float, "max_output": int}.get(key, str)(value))
    return made


def as_tools(items: Iterable[Any]) -> list[Tool]:
    """Tools from Tool instances or classes, functions, and names (as :func:`build_tool`)."""
    out: list[Tool] = []
    for item in items:
        if isinstance(item, Tool):
            out.append(item)
        elif isinstance(item, str):
            out.append(build_tool(item))
        elif isinstance(item, type) and issubclass(item, Tool):
            out.append(item())
        elif callable(item):
            out.append(tool(item))
        else:
            raise ConfigError(f"not a tool: {item!r}", key="tools")
    return out


def _custom(spec: str, options: dict[str, Any], base_dir: Path | None) -> Tool:
    target = load_object(spec, base_dir, what="tool")
    if isinstance(target, type) and issubclass(target, Tool):
        try:
            return target(**options)
        except TypeError as e:
            raise ConfigError(f"cannot build tool {spec!r}: {e}") from e
    if not (isinstance(target, Tool) or inspect.isfunction(target)):
        message = f"{spec!r} is neither a Tool subclass, a Tool nor a plain function"
        hint = "subclass massgen.tools.Tool, or point at a plain function"
        raise ConfigError(message, hint=hint)
    if options:
        kind = "ready-made tool" if isinstance(target, Tool) else "function tool"
        raise ConfigError(f"a {kind} takes no settings", key=next(iter(options)))
    return target if isinstance(target, Tool) else tool(target)
