"""Distributed mode: :class:`Worker` hosts agents, :func:`distributed` sends a run's turns to
them. Names load on first use, so resolving a :class:`BusTarget` imports no redis."""

from importlib import import_module
from typing import Any

_EXPORTS = {
    "massgen.distributed.connect": "CLIENT_ID Placement RemoteHandle distributed",
    "massgen.errors": "SecretRefused TurnRefused WorkerLost",
    "massgen.distributed.target": "BusTarget",
    "massgen.distributed.worker": "LLM HostedAgent TurnReport Worker completion_from_dict decode"
    " error_from_dict error_to_dict turn_timeout",
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names.split()}


def __getattr__(name: str) -> Any:
    if (module := _WHERE.get(name)) is None:
        raise AttributeError(f"module 'massgen.distributed' has no attribute {name!r}")
    return getattr(import_module(module), name)
