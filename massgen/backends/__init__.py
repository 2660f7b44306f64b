"""LLM backends: one narrow interface, adapters per provider, and a registry to build them.
Cheap to import: an adapter (and its SDK) loads only when you touch it."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from massgen.backends.base import Backend
from massgen.backends.registry import BACKEND_TYPES, create_backend, default_env_var
from massgen.providers import PROVIDERS

if TYPE_CHECKING:
    from massgen.backends.anthropic import AnthropicBackend
    from massgen.backends.google import GoogleBackend
    from massgen.backends.openai import (
        LMStudioBackend,
        OllamaBackend,
        OpenAIBackend,
        OpenRouterBackend,
        VLLMBackend,
        XAIBackend,
    )
    from massgen.backends.replay import ReplayBackend

_LAZY = {row.cls: row.module for row in PROVIDERS.values()}

__all__ = [
    "BACKEND_TYPES",
    "AnthropicBackend",
    "Backend",
    "GoogleBackend",
    "LMStudioBackend",
    "OllamaBackend",
    "OpenAIBackend",
    "OpenRouterBackend",
    "ReplayBackend",
    "VLLMBackend",
    "XAIBackend",
    "create_backend",
    "default_env_var",
]


def __getattr__(name: str) -> Any:
    if (module := _LAZY.get(name)) is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
