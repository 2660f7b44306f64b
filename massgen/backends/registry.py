"""Build a backend from its ``type`` name, importing only the SDK that type needs.

``type`` is one of :data:`BACKEND_TYPES`, or ``package.module:Class`` naming your own
:class:`~massgen.backends.base.Backend` subclass. Everything that can go wrong here is a
usage mistake, so it raises :class:`~massgen.errors.ConfigError` with a hint.
"""

from __future__ import annotations

import difflib
import importlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from massgen.backends.base import Backend
from massgen.errors import AuthenticationError, ConfigError
from massgen.plugins import load_object

# type -> (module, class). Modules are imported on first use: each SDK costs ~1 s.
_BUILTIN: dict[str, tuple[str, str]] = {
    "openai": ("massgen.backends.openai", "OpenAIBackend"),
    "anthropic": ("massgen.backends.anthropic", "AnthropicBackend"),
    "google": ("massgen.backends.google", "GoogleBackend"),
    "gemini": ("massgen.backends.google", "GoogleBackend"),
    "xai": ("massgen.backends.openai", "XAIBackend"),
    "openrouter": ("massgen.backends.openai", "OpenRouterBackend"),
    "lmstudio": ("massgen.backends.openai", "LMStudioBackend"),
    "ollama": ("massgen.backends.openai", "OllamaBackend"),
    "vllm": ("massgen.backends.openai", "VLLMBackend"),
    "replay": ("massgen.backends.replay", "ReplayBackend"),
}

BACKEND_TYPES: tuple[str, ...] = tuple(_BUILTIN)
"""Every built-in backend type (``gemini`` is another name for ``google``)."""

OPENAI_COMPATIBLE: frozenset[str] = frozenset(
    kind for kind, (module, _) in _BUILTIN.items() if module == "massgen.backends.openai"
)
"""The types that speak Chat Completions, and so take ``client`` (``http`` or ``sdk``)."""

_ENV_VARS: dict[str, tuple[str, ...]] = {
    "openai": ("OPENAI_API_KEY",),
    "anthropic": ("ANTHROPIC_API_KEY",),
    "google": ("GEMINI_API_KEY", "GOOGLE_API_KEY"),
    "gemini": ("GEMINI_API_KEY", "GOOGLE_API_KEY"),
    "xai": ("XAI_API_KEY",),
    "openrouter": ("OPENROUTER_API_KEY",),
}


EXAMPLE_MODELS: dict[str, str] = {
    "openai": "gpt-4o-mini",
    "anthropic": "claude-haiku-4-5",
    "google": "gemini-2.5-flash",
    "gemini": "gemini-2.5-flash",
    "xai": "grok-4-fast",
    "openrouter": "openai/gpt-4o-mini",
    "lmstudio": "qwen2.5-7b-instruct",
    "ollama": "llama3.2",
    "vllm": "meta-llama/Llama-3.1-8B-Instruct",
}
"""A model of each built-in type that needs one (every type but ``replay``), for hints."""


def needs_model(type: str) -> bool:
    """Whether a backend of ``type`` cannot be built without a model name (custom classes
    decide for themselves)."""
    return type.strip().lower() in EXAMPLE_MODELS


def model_hint(type: str) -> str:
    """How to give a backend of ``type`` its model, with an example of that provider."""
    example = EXAMPLE_MODELS.get(type.strip().lower())
    return "set `model:` on the agent or on its backend" + (
        f", e.g. `model: {example}`" if example else ""
    )


def key_variables(type: str, api_key: str | None = None) -> tuple[str, ...]:
    """The environment variables a backend of ``type`` reads its key from, when it has no
    key: ``api_key`` is empty and none of them is set. Empty when it has one or needs none."""
    names = _ENV_VARS.get(type.strip().lower(), ())
    if api_key or any(os.environ.get(v) for v in names):
        return ()
    return names


def default_env_var(type: str) -> str | None:
    """The environment variable a backend type reads its key from (``None``: no key needed).

    Google reads ``GEMINI_API_KEY`` first, then ``GOOGLE_API_KEY``; the first is returned.
    """
    names = _ENV_VARS.get(type.strip().lower())
    return names[0] if names else None


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
    """Build the backend ``type`` names.

    ``params`` go to the provider untouched (for ``replay``: its options, such as ``rules``;
    for a custom class: keyword arguments). ``base_dir`` is the config file's folder: a
    custom module or a replay ``answers_file`` next to the config is found there.
    ``client`` picks how an OpenAI-compatible type talks (``http``, the default, or
    ``sdk``); other types have one way and refuse it.
    """
    kind = type.strip()
    params = dict(params or {})
    if ":" in kind:
        _check_client(kind, client)
        cls = _import_custom(kind, base_dir)
        settings = {
            "api_key": api_key,
            "base_url": base_url,
            "temperature": temperature,
            "max_tokens": max_tokens,
            "timeout": timeout,
        }
        kwargs = {k: v for k, v in settings.items() if v is not None} | params
        return _instantiate(cls, kind, model=model, name=name, **kwargs)
    kind = kind.lower()
    if kind not in _BUILTIN:
        raise ConfigError(f"unknown backend type {type!r}", hint=_suggest(kind))
    _check_client(kind, client)
    # Both before importing an SDK that takes seconds to load.
    if not model and needs_model(kind):
        raise ConfigError(f"a {kind} backend needs a model", key="model", hint=model_hint(kind))
    if key_variables(kind, api_key):
        raise missing_key(kind)
    module_name, class_name = _BUILTIN[kind]
    cls = getattr(importlib.import_module(module_name), class_name)
    if kind == "replay":
        return _instantiate(
            cls, kind, model=model or "replay", name=name, base_dir=base_dir, **params
        )
    choice = {"client": client} if client is not None else {}
    try:
        backend: Backend = cls(
            model,
            api_key=api_key,
            base_url=base_url,
            temperature=temperature,
            max_tokens=max_tokens,
            timeout=timeout,
            params=params,
            name=name,
            **choice,
        )
    except AuthenticationError as e:
        raise missing_key(kind) from e
    return backend


def missing_key(kind: str) -> ConfigError:
    """The error for a backend of type ``kind`` that has no key."""
    var = default_env_var(kind)
    return ConfigError(
        f"no API key for the {kind} backend",
        key="api_key",
        hint=f"export {var}=... or set api_key in the config" if var else None,
    )


def _check_client(kind: str, client: str | None) -> None:
    if client is not None and kind not in OPENAI_COMPATIBLE:
        raise ConfigError(
            f"`client` applies only to OpenAI-compatible backends, not {kind!r}",
            key="client",
            hint=f"remove it; it is for {', '.join(sorted(OPENAI_COMPATIBLE))}",
        )


def _suggest(kind: str) -> str:
    close = difflib.get_close_matches(kind, BACKEND_TYPES, n=1, cutoff=0.5)
    known = ", ".join(BACKEND_TYPES)
    if close:
        return f"did you mean {close[0]!r}? known types: {known}, or package.module:Class"
    return f"known types: {known}, or package.module:Class for your own Backend"


def _import_custom(spec: str, base_dir: Path | None) -> type[Backend]:
    cls = load_object(spec, base_dir, what="backend type", kind="class")
    if not (isinstance(cls, type) and issubclass(cls, Backend)):
        raise ConfigError(
            f"{spec!r} is not a Backend",
            hint="subclass massgen.backends.base.Backend and override generate(prompt) "
            "or complete(request)",
        )
    return cls


def _instantiate(cls: type[Backend], kind: str, **kwargs: Any) -> Backend:
    try:
        return cls(**kwargs)
    except TypeError as e:
        raise ConfigError(
            f"cannot build backend {kind!r}: {e}",
            hint="check the backend's options in the config",
        ) from e
