"""Distributed mode: a team's LLM agents hosted by workers anywhere, reached over Redis.

:class:`Worker` hosts agents (``massgen worker``); :func:`distributed` sends a run's turns to
them (``massgen run --redis``). Names load on first use, so resolving a :class:`BusTarget`
imports neither the bus runtime nor redis.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # for type checkers; at run time, __getattr__ loads each on first use
    from massgen.distributed.codec import (  # noqa: F401  # noqa: F401
        completion_from_dict,
        decode,
        error_from_dict,
        error_to_dict,
    )
    from massgen.distributed.connect import CLIENT_ID, Placement, distributed  # noqa: F401
    from massgen.distributed.remote import RemoteHandle, SecretRefused, TurnRefused, WorkerLost  # noqa: F401  # noqa: F401
    from massgen.distributed.target import BusTarget  # noqa: F401
    from massgen.distributed.worker import LLM, HostedAgent, TurnReport, Worker, turn_timeout  # noqa: F401  # noqa: F401

_EXPORTS = {
    "codec": "completion_from_dict decode error_from_dict error_to_dict",
    "connect": "CLIENT_ID Placement distributed",
    "remote": "RemoteHandle SecretRefused TurnRefused WorkerLost",
    "target": "BusTarget",
    "worker": "LLM HostedAgent TurnReport Worker turn_timeout",
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names.split()}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'massgen.distributed' has no attribute {name!r}")
    return getattr(import_module(f"massgen.distributed.{module}"), name)
