"""``${VAR}`` and ``${VAR:-default}`` in string values, from the environment.

Keys are never interpolated, only values. ``$${`` writes a literal ``${``. Values that came
from the environment are remembered so error messages never echo them: they may be secrets.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from massgen.config.yamlsrc import Lines, Path_, dotted
from massgen.errors import ConfigError

_TOKEN = re.compile(r"\$\$\{|\$\{([^{}]*)\}|\$\{")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def interpolate(
    data: Any, env: Mapping[str, str], *, file: str, lines: Lines
) -> tuple[Any, set[Path_]]:
    """Expand variables in every string of ``data``.

    Returns the new data and the paths whose value used a variable. A missing variable
    without default raises :class:`ConfigError` at that key's line; when several are
    missing, one error names them all (each with its line and key), so that one look at
    the environment fixes them.
    """
    tainted: set[Path_] = set()
    missing: list[tuple[Path_, str]] = []

    def walk(value: Any, path: Path_) -> Any:
        if isinstance(value, str):
            if "${" not in value:
                return value
            text, used = _expand(value, env, path, file, lines, missing)
            if used:
                tainted.add(path)
            return text
        if isinstance(value, dict):
            return {k: walk(v, (*path, k)) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v, (*path, i)) for i, v in enumerate(value)]
        return value

    expanded = walk(data, ())
    if len(missing) == 1:
        path, name = missing[0]
        raise ConfigError(
            f"environment variable `{name}` is not set",
            file=file,
            line=line_of(path, lines),
            key=dotted(path),
            hint=f"set {name} or give a default: ${{{name}:-value}}",
        )
    if missing:
        rows = []
        for path, name in missing:
            line = line_of(path, lines)
            rows.append(f"  {file}{f':{line}' if line else ''}: `{dotted(path)}`: {name}")
        names = sorted({name for _, name in missing})
        what = f"{len(names)} environment variables are" if len(names) > 1 else f"`{names[0]}` is"
        raise ConfigError(
            f"{what} not set:\n" + "\n".join(rows),
            file=file,
            hint="set each, or give a default: ${NAME:-value}",
        )
    return expanded, tainted


def _expand(
    text: str,
    env: Mapping[str, str],
    path: Path_,
    file: str,
    lines: Lines,
    missing: list[tuple[Path_, str]],
) -> tuple[str, bool]:
    used = False

    def fail(message: str, hint: str) -> ConfigError:
        return ConfigError(
            message, file=file, line=line_of(path, lines), key=dotted(path), hint=hint
        )

    def replace(match: re.Match[str]) -> str:
        nonlocal used
        token = match.group(0)
        if token == "$${":
            return "${"
        inner = match.group(1)
        if inner is None:
            raise fail("unclosed `${`", "close it as ${NAME}, or write $${ for a literal ${")
        name, sep, default = inner.partition(":-")
        if not _NAME.fullmatch(name):
            raise fail(
                "`${...}` needs an environment variable name (letters, digits, `_`)",
                "write ${NAME} or ${NAME:-default}; $${ gives a literal ${",
            )
        used = True
        value = env.get(name)
        if sep:
            return value if value else default
        if value is None:
            missing.append((path, name))  # reported with the others once all are seen
            return ""
        return value

    return _TOKEN.sub(replace, text), used


def line_of(path: Path_, lines: Lines) -> int | None:
    """The line of ``path``, or of its nearest ancestor that has one."""
    for end in range(len(path), -1, -1):
        line = lines.get(path[:end])
        if line is not None:
            return line
    return None
