"""massgen.mas: a peer-to-peer agent runtime over Redis Streams (or in one process), after the
seed framework mas-framework (docs/mas.md): discovery, at-least-once messages, requests,
typed state, signing. Importing it does not import redis (``RedisTransport`` is lazy)."""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from massgen.errors import (
    AgentIdTaken,
    BusAuthError,
    BusUnreachable,
    GatewayRejected,
    RemoteError,
    RequestTimeout,
    SecretMismatch,
    StateError,
)
from massgen.mas.agent import Agent, agents_from_records
from massgen.mas.gateway import GatewayResult, GatewayService, GatewaySettings
from massgen.mas.memory import MemoryHub, MemoryTransport, default_hub
from massgen.mas.message import SECRET_ENV, AgentMessage, MessageKind, Signer, Verdict
from massgen.mas.transport import (
    DEFAULT_PREFIX,
    DEFAULT_REDIS_URL,
    REDIS_URL_ENV,
    AgentRecord,
    AgentStatus,
    BusSettings,
    CommitResult,
    DeadLetter,
    Delivery,
    Envelope,
    InboxStats,
    Keys,
    Orphans,
    Transport,
    resolve_transport,
)

if TYPE_CHECKING:
    from massgen.mas.redis_transport import RedisTransport
    from massgen.mas.service import MASService

__all__ = [
    "DEFAULT_PREFIX",
    "DEFAULT_REDIS_URL",
    "REDIS_URL_ENV",
    "SECRET_ENV",
    "Agent",
    "AgentIdTaken",
    "AgentMessage",
    "AgentRecord",
    "AgentStatus",
    "BusAuthError",
    "BusSettings",
    "BusUnreachable",
    "CommitResult",
    "DeadLetter",
    "Delivery",
    "Envelope",
    "GatewayRejected",
    "GatewayResult",
    "GatewayService",
    "GatewaySettings",
    "InboxStats",
    "Keys",
    "MASService",
    "MemoryHub",
    "MemoryTransport",
    "MessageKind",
    "Orphans",
    "RedisTransport",
    "RemoteError",
    "RequestTimeout",
    "SecretMismatch",
    "Signer",
    "StateError",
    "Transport",
    "Verdict",
    "agents_from_records",
    "default_hub",
    "resolve_transport",
]


# lazy: RedisTransport imports redis; MASService is a ``python -m`` entry point
_LAZY = {"RedisTransport": "massgen.mas.redis_transport", "MASService": "massgen.mas.service"}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(_LAZY[name]), name)
