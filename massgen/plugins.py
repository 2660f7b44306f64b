"""Load a user's object named ``package.module:attr`` (a custom backend, tool or function),
also from next to the config file; every failure is a ConfigError saying where it looked."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Any

from massgen.errors import ConfigError


def load_object(spec: str, base_dir: Path | None, *, what: str, kind: str = "") -> Any:
    """The object ``spec`` names; ``what`` ("backend", "tool") and ``kind`` ("class") only
    shape the messages."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ConfigError(
            f"bad {what} {spec!r}", hint=f"write a custom {what} as package.module:Name"
        )
    path = str(Path(base_dir).resolve()) if base_dir is not None else None
    added = path is not None and path not in sys.path
    if added:
        sys.path.insert(0, str(path))
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        where = f" (looked next to the config, in {path}, and on sys.path)" if path else ""
        raise ConfigError(
            f"cannot import module {module_name!r} for {what} {spec!r}: {e}",
            hint=f"put {module_name.replace('.', '/')}.py next to the config or on PYTHONPATH"
            + where,
        ) from e
    finally:
        if added:
            sys.path.remove(str(path))
    found = getattr(module, attr, None)
    if found is None:
        noun = f"{kind} " if kind else ""
        raise ConfigError(
            f"module {module_name!r} has no {noun}{attr!r}", hint=f"check the spelling of {spec!r}"
        )
    return found
