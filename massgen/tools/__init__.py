"""Tools agents can call: :class:`Tool`, :func:`tool` and the built-ins, loaded on first use
(the teammate tools live a layer above, in :mod:`massgen.teamtools`)."""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from massgen.tools.base import FunctionTool as FunctionTool
    from massgen.tools.base import Tool as Tool
    from massgen.tools.base import tool as tool
    from massgen.tools.calculator import Calculator as Calculator
    from massgen.tools.context import ToolContext as ToolContext
    from massgen.tools.database import DatabaseQuery as DatabaseQuery
    from massgen.tools.file_reader import FileReader as FileReader
    from massgen.tools.http import APICall as APICall
    from massgen.tools.http import WebSearch as WebSearch
    from massgen.tools.images import ToolOutput as ToolOutput
    from massgen.tools.registry import BUILTINS as BUILTINS
    from massgen.tools.registry import as_tools as as_tools
    from massgen.tools.registry import build_tool as build_tool
    from massgen.tools.runner import ToolBox as ToolBox
    from massgen.tools.runner import ToolOutcome as ToolOutcome

_EXPORTS = {
    **dict.fromkeys(["Tool", "FunctionTool", "tool"], "base"),
    **dict.fromkeys(["ToolBox", "ToolOutcome"], "runner"),
    **dict.fromkeys(["BUILTINS", "build_tool", "as_tools"], "registry"),
    "ToolContext": "context",
    "ToolOutput": "images",
    "Calculator": "calculator",
    "FileReader": "file_reader",
    "DatabaseQuery": "database",
    **dict.fromkeys(["APICall", "WebSearch"], "http"),
}
__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    if (module := _EXPORTS.get(name)) is None:
        raise AttributeError(f"module 'massgen.tools' has no attribute {name!r}")
    return getattr(import_module(f"massgen.tools.{module}"), name)
