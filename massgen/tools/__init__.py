"""Tools agents can call: the :class:`Tool` interface, :func:`tool`, and the built-ins.

Names load on first use, so ``import massgen.tools`` imports no HTTP client or database
module until a tool that needs one is built. The teammate tools live in
:mod:`massgen.teamtools` (they reach agents, a layer above).
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from massgen.tools.base import FunctionTool, Tool, tool
    from massgen.tools.calculator import Calculator
    from massgen.tools.context import ToolContext
    from massgen.tools.database import DatabaseQuery
    from massgen.tools.file_reader import FileReader
    from massgen.tools.http import APICall
    from massgen.tools.registry import BUILTINS, as_tools, build_tool
    from massgen.tools.runner import ToolBox, ToolOutcome
    from massgen.tools.web_search import WebSearch

_EXPORTS = {
    "Tool": "base",
    "FunctionTool": "base",
    "ToolContext": "context",
    "tool": "base",
    "ToolBox": "runner",
    "ToolOutcome": "runner",
    "BUILTINS": "registry",
    "build_tool": "registry",
    "as_tools": "registry",
    "Calculator": "calculator",
    "FileReader": "file_reader",
    "DatabaseQuery": "database",
    "APICall": "http",
    "WebSearch": "web_search",
}

__all__ = [
    "APICall",
    "BUILTINS",
    "Calculator",
    "DatabaseQuery",
    "FileReader",
    "FunctionTool",
    "Tool",
    "ToolBox",
    "ToolContext",
    "ToolOutcome",
    "WebSearch",
    "as_tools",
    "build_tool",
    "tool",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'massgen.tools' has no attribute {name!r}")
    return getattr(import_module(f"massgen.tools.{module}"), name)
