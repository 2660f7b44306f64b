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

__all__ = list(_EXPORTS) + ["__version__"]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'massgen' has no attribute {name!r}")
    attr = "load" if name == "load_config" else name
    value = globals()[name] = getattr(import_module(module), attr)
    return value


def __dir__() -> list[str]:
    return __all__


if TYPE_CHECKING:
    from massgen.agents.agent import Agent as Agent
    from massgen.backends.base import Backend as Backend
    from massgen.backends.function import FunctionBackend as FunctionBackend
    from massgen.config import load as load_config  # noqa: F401 (in __all__ through _EXPORTS)
    from massgen.errors import AgentFailed as AgentFailed
    from massgen.errors import AuthenticationError as AuthenticationError
    from massgen.errors import ConfigError as ConfigError
    from massgen.errors import Interrupted as Interrupted
    from massgen.errors import MassGenError as MassGenError
    from massgen.errors import ProviderConnectionError as ProviderConnectionError
    from massgen.errors import ProviderError as ProviderError
    from massgen.errors import ProviderTimeout as ProviderTimeout
    from massgen.errors import RateLimited as RateLimited
    from massgen.errors import RunError as RunError
    from massgen.orchestrator import Orchestrator as Orchestrator
    from massgen.result import AgentAnswer as AgentAnswer
    from massgen.result import RunResult as RunResult
    from massgen.result import Vote as Vote
    from massgen.types import ChatMessage as ChatMessage
    from massgen.types import Completion as Completion
    from massgen.types import CompletionRequest as CompletionRequest
    from massgen.types import ToolCall as ToolCall
    from massgen.types import ToolSpec as ToolSpec
    from massgen.types import Usage as Usage
