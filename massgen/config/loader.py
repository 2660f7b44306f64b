"""Read a team file: YAML -> variables -> paths -> typed models, or one clear ConfigError.

Every step reports where a problem is (file, line, dotted key), so nothing the user wrote
can fail later with a traceback. Nothing here imports an SDK: loading stays fast.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from massgen.config.interpolate import interpolate
from massgen.config.models import TeamConfig
from massgen.config.translate import translate
from massgen.config.yamlsrc import parse
from massgen.errors import ConfigError

MAX_BYTES = 1024 * 1024
"""A team config larger than this is refused: read no further (``/dev/zero`` is endless)."""

_PATH_KEYS = frozenset({"path", "root"})
_PATH_ENDINGS = ("_file", "_dir")


def load(path: str | Path, *, env: Mapping[str, str] | None = None) -> TeamConfig:
    """Load a team file; relative paths in it resolve against its folder."""
    file = str(path)
    target = Path(path)
    try:
        with target.open("rb") as fh:
            data = fh.read(MAX_BYTES + 1)
        if len(data) > MAX_BYTES:
            raise ConfigError(
                f"is larger than {MAX_BYTES // 1024} KiB; not a team config", file=file
            )
        text = data.decode("utf-8-sig")
    except FileNotFoundError:
        raise ConfigError("no such file", file=file, hint="check the path") from None
    except IsADirectoryError:
        raise ConfigError("is a folder, not a YAML file", file=file) from None
    except UnicodeDecodeError:
        raise ConfigError("is not UTF-8 text", file=file, hint="save it as UTF-8") from None
    except OSError as e:
        raise ConfigError(f"cannot read it: {e.strerror or e}", file=file) from None
    folder = target.resolve().parent
    return _build(text, file=file, base_dir=folder, source=target.resolve(), env=env)


def loads(
    text: str,
    *,
    file: str = "<string>",
    base_dir: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> TeamConfig:
    """Load a team from YAML text. Relative paths resolve against ``base_dir`` (or the cwd).

    ``env`` replaces ``os.environ`` for ``${VAR}`` interpolation (handy in tests).
    """
    return _build(text, file=file, base_dir=base_dir, source=None, env=env)


def _build(
    text: str,
    *,
    file: str,
    base_dir: Path | None,
    source: Path | None,
    env: Mapping[str, str] | None,
) -> TeamConfig:
    data, lines = parse(text, file)
    if data is None:
        raise ConfigError(
            "the file is empty",
            file=file,
            line=1,
            hint="a team needs at least `agents:`; see configs/quickstart.yaml",
        )
    if not isinstance(data, dict):
        raise ConfigError(
            "the top level must be a mapping of keys (`agents:`, `orchestrator:`...)",
            file=file,
            line=lines.get((), 1),
        )
    data, hidden = interpolate(data, os.environ if env is None else env, file=file, lines=lines)
    base = Path(base_dir) if base_dir is not None else Path.cwd()
    data = resolve_paths(data, base)
    try:
        config = TeamConfig.model_validate(data)
    except ValidationError as e:
        raise translate(e, raw=data, file=file, lines=lines, hidden=hidden) from None
    config._source = source
    config._base_dir = base
    config._file = file
    config._lines = dict(lines)
    return config


def resolve_paths(data: Any, base: Path, key: object = None) -> Any:
    """Make the values of path-like keys (``*_file``, ``*_dir``, ``path``, ``root``) absolute."""
    if isinstance(data, dict):
        return {k: resolve_paths(v, base, k) for k, v in data.items()}
    if isinstance(data, list):
        return [resolve_paths(v, base) for v in data]
    if isinstance(data, str) and isinstance(key, str) and _is_path_key(key):
        return _absolute(data, base)
    return data


def _is_path_key(key: str) -> bool:
    return key in _PATH_KEYS or key.endswith(_PATH_ENDINGS)


def _absolute(value: str, base: Path) -> str:
    if not value or "://" in value or value.startswith(":"):
        return value  # empty, a URL, or a special name like `:memory:`
    try:
        target = Path(value).expanduser()
    except RuntimeError:  # `~` without a home directory
        target = Path(value)
    if not target.is_absolute():
        target = base / target
    return os.path.normpath(target)
