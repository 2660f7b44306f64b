"""Test helpers that speak the real wire: a provider simulator.

Names are loaded on first use, so ``import tests.sim`` stays cheap (no server, no SDK)
and ``python -m tests.sim.simulator`` runs without a double import.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tests.sim.sim_process import SimulatorProcess
    from tests.sim.sim_rules import Rule
    from tests.sim.sim_types import (
        Drop,
        Fault,
        Hang,
        Reply,
        Searched,
        SimRequest,
        SimStats,
        Text,
        ToolCalls,
        ToolCallSpec,
        ToolResult,
        estimate_tokens,
    )
    from tests.sim.simulator import ProviderSimulator

_EXPORTS = {
    "ProviderSimulator": "simulator",
    "Rule": "sim_rules",
    "SimulatorProcess": "sim_process",
    "Drop": "sim_types",
    "Fault": "sim_types",
    "Hang": "sim_types",
    "Reply": "sim_types",
    "Searched": "sim_types",
    "SimRequest": "sim_types",
    "SimStats": "sim_types",
    "Text": "sim_types",
    "ToolCalls": "sim_types",
    "ToolCallSpec": "sim_types",
    "ToolResult": "sim_types",
    "estimate_tokens": "sim_types",
}

__all__ = [
    "Drop",
    "Fault",
    "Hang",
    "ProviderSimulator",
    "Reply",
    "Rule",
    "Searched",
    "SimRequest",
    "SimStats",
    "SimulatorProcess",
    "Text",
    "ToolCallSpec",
    "ToolCalls",
    "ToolResult",
    "estimate_tokens",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'tests.sim' has no attribute {name!r}")
    return getattr(import_module(f"tests.sim.{module}"), name)
