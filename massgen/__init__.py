"""massgen: run a team of LLM agents on a task and get one answer. The public names
(``__all__``) are imported on first use, so ``import massgen`` stays fast."""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_MODULES = {
    "massgen.orchestrator": "Orchestrator",
    "massgen.agents.agent": "Agent",
    "massgen.backends.base": "Backend",
    "massgen.backends.function": "FunctionBackend",
    "massgen.result": "RunResult AgentAnswer Vote",
    "massgen.types": "ChatMessage Completion CompletionRequest ToolCall ToolSpec Usage",
    "massgen.config": "load_config",
    "massgen.errors": "MassGenError ConfigError ProviderError AuthenticationError RateLimited "
    "ProviderTimeout ProviderConnectionError RunError AgentFailed Interrupted",
}
_EXPORTS = {name: module for module, names in _MODULES.items() for name in names.split()}

__all__ = [
    "Agent",
    "AgentAnswer",
    "AgentFailed",
    "AuthenticationError",
    "Backend",
    "ChatMessage",
    "Completion",
    "CompletionRequest",
    "ConfigError",
    "FunctionBackend",
    "Interrupted",
    "MassGenError",
    "Orchestrator",
    "ProviderConnectionError",
    "ProviderError",
    "ProviderTimeout",
    "RateLimited",
    "RunError",
    "RunResult",
    "ToolCall",
    "ToolSpec",
    "Usage",
    "Vote",
    "load_config",
    "__version__",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'massgen' has no attribute {name!r}")
    attr = "load" if name == "load_config" else name
    value = getattr(import_module(module), attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__


if TYPE_CHECKING:
    from massgen.agents.agent import Agent
    from massgen.backends.base import Backend
    from massgen.backends.function import FunctionBackend
    from massgen.config import load as load_config
    from massgen.errors import (
        AgentFailed,
        AuthenticationError,
        ConfigError,
        Interrupted,
        MassGenError,
        ProviderConnectionError,
        ProviderError,
        ProviderTimeout,
        RateLimited,
        RunError,
    )
    from massgen.orchestrator import Orchestrator
    from massgen.result import AgentAnswer, RunResult, Vote
    from massgen.types import ChatMessage, Completion, CompletionRequest, ToolCall, ToolSpec, Usage
