"""Team files: YAML in, typed and checked :class:`TeamConfig` out.

>>> from massgen.config import loads
>>> team = loads("agents: [{name: ada, backend: replay}]")
>>> team.orchestrator.strategy
'consensus'

Reading a file goes YAML -> ``${VAR}`` -> paths -> typed models, or one clear
:class:`massgen.errors.ConfigError` naming file, line and dotted key, so nothing you wrote can
fail later with a traceback. Values that came from the environment are never echoed in errors
(they may be secrets). Nothing here imports an SDK: loading stays fast."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from massgen.config import models
from massgen.config.models import (
    AgentConfig,
    BackendConfig,
    BreakerConfig,
    CacheConfig,
    ConsensusConfig,
    MemoryConfig,
    ObservabilityConfig,
    OrchestratorConfig,
    Price,
    RateLimitConfig,
    RedisConfig,
    TeamConfig,
)
from massgen.config.yamlsrc import Lines, Path_, dotted, line_of, parse
from massgen.errors import ConfigError

__all__ = [
    "AgentConfig",
    "BackendConfig",
    "BreakerConfig",
    "CacheConfig",
    "ConsensusConfig",
    "MemoryConfig",
    "ObservabilityConfig",
    "OrchestratorConfig",
    "Price",
    "RateLimitConfig",
    "RedisConfig",
    "TeamConfig",
    "json_schema",
    "load",
    "loads",
]

MAX_BYTES = 1024 * 1024
"""A team config larger than this is refused: read no further (``/dev/zero`` is endless)."""

_TOKEN = re.compile(r"\$\$\{|\$\{([^{}]*)\}|\$\{")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def load(path: str | Path, *, env: Mapping[str, str] | None = None) -> TeamConfig:
    """Load a team file; relative paths in it resolve against its folder."""
    file = str(path)
    target = Path(path)
    try:
        with target.open("rb") as fh:
            data = fh.read(MAX_BYTES + 1)
        if len(data) > MAX_BYTES:
            message = f"is larger than {MAX_BYTES // 1024} KiB; not a team config"
            raise ConfigError(message, file=file)
        text = data.decode("utf-8-sig")
    except FileNotFoundError:
        raise ConfigError("no such file", file=file, hint="check the path") from None
    except IsADirectoryError:
        raise ConfigError("is a folder, not a YAML file", file=file) from None
    except UnicodeDecodeError:
        raise ConfigError("is not UTF-8 text", file=file, hint="save it as UTF-8") from None
    except OSError as e:
        raise ConfigError(f"cannot read it: {e.strerror or e}", file=file) from None
    source = target.resolve()
    return loads(text, file=file, base_dir=source.parent, env=env, source=source)


def loads(
    text: str,
    *,
    file: str = "<string>",
    base_dir: Path | None = None,
    env: Mapping[str, str] | None = None,
    source: Path | None = None,
) -> TeamConfig:
    """Load a team from YAML text. Relative paths resolve against ``base_dir`` (or the cwd);
    ``env`` replaces ``os.environ`` for ``${VAR}`` (handy in tests)."""
    data, lines = parse(text, file)
    if data is None:
        hint = "a team needs at least `agents:`; see configs/quickstart.yaml"
        raise ConfigError("the file is empty", file=file, line=1, hint=hint)
    if not isinstance(data, dict):
        message = "the top level must be a mapping of keys (`agents:`, `orchestrator:`...)"
        raise ConfigError(message, file=file, line=lines.get((), 1))
    data, hidden = interpolate(data, os.environ if env is None else env, file=file, lines=lines)
    base = Path(base_dir) if base_dir is not None else Path.cwd()
    data = resolve_paths(data, base)
    try:
        config = TeamConfig.model_validate(data)
    except ValidationError as e:
        from massgen.config.translate import translate  # only a mistake needs it

        raise translate(e, raw=data, file=file, lines=lines, hidden=hidden) from None
    config._source, config._base_dir, config._file = source, base, file
    config._lines = dict(lines)
    return config


def interpolate(
    data: Any, env: Mapping[str, str], *, file: str, lines: Lines
) -> tuple[Any, set[Path_]]:
    """Expand ``${VAR}`` and ``${VAR:-default}`` in string values (``$${`` is a literal
    ``${``); return the new data and the paths whose value used a variable. Every missing
    variable is named in one error, each with its line and key, so one look fixes them all."""
    tainted: set[Path_] = set()
    missing: list[tuple[Path_, str]] = []

    def fail(path: Path_, message: str, hint: str) -> ConfigError:
        line = line_of(path, lines)
        return ConfigError(message, file=file, line=line, key=dotted(path), hint=hint)

    def expand(text: str, path: Path_) -> str:
        def replace(match: re.Match[str]) -> str:
            if match.group(0) == "$${":
                return "${"
            if match.group(1) is None:
                hint = "close it as ${NAME}, or write $${ for a literal ${"
                raise fail(path, "unclosed `${`", hint)
            name, sep, default = match.group(1).partition(":-")
            if not _NAME.fullmatch(name):
                message = "`${...}` needs an environment variable name (letters, digits, `_`)"
                hint = "write ${NAME} or ${NAME:-default}; $${ gives a literal ${"
                raise fail(path, message, hint)
            tainted.add(path)
            value = env.get(name)
            if sep:
                return value if value else default
            if value is None:
                missing.append((path, name))  # reported with the others once all are seen
            return value or ""

        return _TOKEN.sub(replace, text)

    def walk(value: Any, path: Path_) -> Any:
        if isinstance(value, str):
            return expand(value, path) if "${" in value else value
        if isinstance(value, dict):
            return {k: walk(v, (*path, k)) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v, (*path, i)) for i, v in enumerate(value)]
        return value

    expanded = walk(data, ())
    if len(missing) == 1:
        path, name = missing[0]
        hint = f"set {name} or give a default: ${{{name}:-value}}"
        raise fail(path, f"environment variable `{name}` is not set", hint)
    if missing:
        rows = []
        for path, name in missing:
            line = line_of(path, lines)
            rows.append(f"  {file}{f':{line}' if line else ''}: `{dotted(path)}`: {name}")
        names = sorted({name for _, name in missing})
        what = f"{len(names)} environment variables are" if len(names) > 1 else f"`{names[0]}` is"
        hint = "set each, or give a default: ${NAME:-value}"
        raise ConfigError(f"{what} not set:\n" + "\n".join(rows), file=file, hint=hint)
    return expanded, tainted


def resolve_paths(data: Any, base: Path, key: object = None) -> Any:
    """Make the values of path-like keys (``*_file``, ``*_dir``, ``path``, ``root``) absolute;
    leave empty values, URLs and special names such as ``:memory:`` alone."""
    if isinstance(data, dict):
        return {k: resolve_paths(v, base, k) for k, v in data.items()}
    if isinstance(data, list):
        return [resolve_paths(v, base) for v in data]
    is_path = isinstance(key, str) and (key in ("path", "root") or key.endswith(("_file", "_dir")))
    if not (is_path and isinstance(data, str)) or not data or "://" in data or data[0] == ":":
        return data
    try:
        target = Path(data).expanduser()
    except RuntimeError:  # `~` without a home directory
        target = Path(data)
    return os.path.normpath(base / target)


def json_schema() -> dict[str, Any]:
    """JSON Schema (draft 2020-12) of :class:`TeamConfig`, for editors and `massgen config
    schema`. Field descriptions come from the docstrings under each field in ``models.py``,
    read here on demand rather than by pydantic at import, so loading a config stays fast."""
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
    import ast
    import inspect

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
