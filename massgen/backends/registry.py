"""Build a backend from its ``type`` name (one of :data:`BACKEND_TYPES`, or
``package.module:Class``), importing only the SDK it needs; mistakes raise ConfigError."""

from __future__ import annotations

import difflib
import importlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from massgen.backends.base import Backend
from massgen.errors import ConfigError
from massgen.plugins import load_object
from massgen.providers import BACKEND_TYPES, PROVIDERS, Provider


def _row(type: str) -> Provider:
    return PROVIDERS.get(type.strip().lower()) or Provider("custom", "", "", needs_key=False)


def needs_model(type: str) -> bool:
    """Whether a backend of ``type`` cannot be built without a model name."""
    return _row(type).example_model is not None


def model_hint(type: str) -> str:
    """How to give a backend of ``type`` its model, with an example of that provider."""
    example, hint = _row(type).example_model, "set `model:` on the agent or on its backend"
    return f"{hint}, e.g. `model: {example}`" if example else hint


def key_variables(type: str, api_key: str | None = None) -> tuple[str, ...]:
    """The variables a backend of ``type`` would read its missing key from; () if it has one."""
    row = _row(type)
    names = row.key_env if row.needs_key else ()
    return () if api_key or any(os.environ.get(v) for v in names) else names


def default_env_var(type: str) -> str | None:
    """The (first) environment variable a backend type reads its key from; ``None``: none."""
    row = _row(type)
    return row.key_env[0] if row.needs_key and row.key_env else None


def create_backend(
    type: str,
    *,
    model: str = "",
    name: str = "",
    api_key: str | None = None,
    base_url: str | None = None,
    temperature: float | None = None,
    max_tokens: int | None = None,
    timeout: float | None = None,
    params: Mapping[str, Any] | None = None,
    base_dir: Path | None = None,
    client: str | None = None,
) -> Backend:
    """Build the backend ``type`` names. ``params`` go to the provider untouched (to replay
    and custom classes: keyword arguments); ``base_dir`` is the config file's folder."""
    kind = type.strip()
    if ":" not in kind and (kind := kind.lower()) not in PROVIDERS:
        raise ConfigError(f"unknown backend type {type!r}", hint=_suggest(kind))
    if client is not None:
        from massgen.config.models import client_problem  # the rule a team file is held to

        if wrong := client_problem(kind):
            raise ConfigError(wrong[0], key="client", hint=wrong[1])
    params = dict(params or {})
    settings = {"api_key": api_key, "base_url": base_url, "temperature": temperature}
    settings |= {"max_tokens": max_tokens, "timeout": timeout}
    if ":" in kind:
        kwargs = {k: v for k, v in settings.items() if v is not None} | params
        return _instantiate(_import_custom(kind, base_dir), kind, model=model, name=name, **kwargs)
    row = PROVIDERS[kind]
    # Both before importing an SDK that takes seconds to load.
    if not model and needs_model(kind):
        raise ConfigError(f"a {kind} backend needs a model", key="model", hint=model_hint(kind))
    if key_variables(kind, api_key):
        raise missing_key(kind)
    cls = getattr(importlib.import_module(row.module), row.cls)
    if kind == "replay":
        return _instantiate(cls, kind, model=model, name=name, base_dir=base_dir, **params)
    choice = {"client": client} if client is not None else {}
    return cls(model, **settings, params=params, name=name, **choice)  # the key was checked above


def missing_key(kind: str) -> ConfigError:
    var = default_env_var(kind)
    hint = f"export {var}=... or set api_key in the config" if var else None
    return ConfigError(f"no API key for the {kind} backend", key="api_key", hint=hint)


def _suggest(kind: str) -> str:
    close = difflib.get_close_matches(kind, BACKEND_TYPES, n=1, cutoff=0.5)
    known = f"known types: {', '.join(BACKEND_TYPES)}, or package.module:Class"
    return f"did you mean {close[0]!r}? {known}" if close else f"{known} for your own Backend"


def _import_custom(spec: str, base_dir: Path | None) -> type[Backend]:
    cls = load_object(spec, base_dir, what="backend type", kind="class")
    if not (isinstance(cls, type) and issubclass(cls, Backend)):
        hint = "subclass massgen.backends.base.Backend and override generate(prompt) "
        hint += "or complete(request)"
        raise ConfigError(f"{spec!r} is not a Backend", hint=hint)
    return cls


def _instantiate(cls: type[Backend], kind: str, **kwargs: Any) -> Backend:
    try:
        return cls(**kwargs)
    except TypeError as e:
        hint = "check the backend's options in the config"
        raise ConfigError(f"cannot build backend {kind!r}: {e}", hint=hint) from e
