"""Distributed mode: a team's LLM agents hosted by workers anywhere, reached over Redis.

Built on :mod:`massgen.mas` (it knows nothing of LLMs; this package is the LLM side):

* :class:`Worker` hosts some or all agents of a team (``massgen worker``);
* :func:`distributed` puts a run on the bus: agents a live worker hosts get a
  :class:`RemoteHandle`, the others run in this process (``massgen run --redis``);
* :mod:`~massgen.distributed.codec` carries turns, completions and errors across.
* :mod:`~massgen.distributed.live` streams remote turns' tokens to the run's live view.

Names load on first use: ``massgen run`` without Redis resolves its :class:`BusTarget`
without importing the bus runtime, and nothing here imports redis until an agent starts.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from massgen.distributed.codec import (
        completion_from_dict,
        completion_to_dict,
        error_from_dict,
        error_to_dict,
        turn_from_dict,
        turn_to_dict,
    )
    from massgen.distributed.connect import CLIENT_ID, Placement, distributed
    from massgen.distributed.remote import RemoteHandle, SecretRefused, TurnRefused, WorkerLost
    from massgen.distributed.target import BusTarget
    from massgen.distributed.timeouts import turn_timeout
    from massgen.distributed.worker import LLM, HostedAgent, TurnReport, Worker

_EXPORTS = {
    "completion_from_dict": "codec",
    "completion_to_dict": "codec",
    "error_from_dict": "codec",
    "error_to_dict": "codec",
    "turn_from_dict": "codec",
    "turn_to_dict": "codec",
    "CLIENT_ID": "connect",
    "Placement": "connect",
    "distributed": "connect",
    "RemoteHandle": "remote",
    "SecretRefused": "remote",
    "TurnRefused": "remote",
    "WorkerLost": "remote",
    "BusTarget": "target",
    "turn_timeout": "timeouts",
    "LLM": "worker",
    "HostedAgent": "worker",
    "TurnReport": "worker",
    "Worker": "worker",
}

__all__ = [
    "CLIENT_ID",
    "LLM",
    "BusTarget",
    "HostedAgent",
    "Placement",
    "RemoteHandle",
    "SecretRefused",
    "TurnRefused",
    "TurnReport",
    "Worker",
    "WorkerLost",
    "completion_from_dict",
    "completion_to_dict",
    "distributed",
    "error_from_dict",
    "error_to_dict",
    "turn_from_dict",
    "turn_to_dict",
    "turn_timeout",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'massgen.distributed' has no attribute {name!r}")
    return getattr(import_module(f"massgen.distributed.{module}"), name)
