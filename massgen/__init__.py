"""massgen: run a team of LLM agents on a task and get one answer.

Public names are imported lazily (on first use) so that ``import massgen`` and the CLI's
``--help`` stay fast; ``massgen.__all__`` lists them.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "Orchestrator": "massgen.orchestrator",
    "Agent": "massgen.agents.agent",
    "Backend": "massgen.backends.base",
    "FunctionBackend": "massgen.backends.function",
    "RunResult": "massgen.result",
    "AgentAnswer": "massgen.result",
    "Vote": "massgen.result",
    "ChatMessage": "massgen.types",
    "Completion": "massgen.types",
    "CompletionRequest": "massgen.types",
    "ToolCall": "massgen.types",
    "ToolSpec": "massgen.types",
    "Usage": "massgen.types",
    "load_config": "massgen.config",
    "MassGenError": "massgen.errors",
    "ConfigError": "massgen.errors",
    "ProviderError": "massgen.errors",
    "AuthenticationError": "massgen.errors",
    "RateLimited": "massgen.errors",
    "ProviderTimeout": "massgen.errors",
    "ProviderConnectionError": "massgen.errors",
    "RunError": "massgen.errors",
    "AgentFailed": "massgen.errors",
    "Interrupted": "massgen.errors",
}

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
    from massgen.types import (
        ChatMessage,
        Completion,
        CompletionRequest,
        ToolCall,
        ToolSpec,
        Usage,
    )
