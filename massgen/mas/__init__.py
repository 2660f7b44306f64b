"""massgen.mas: a small peer-to-peer agent runtime over Redis, or in one process.

Agents register with capabilities, find each other, send messages, make requests and keep
typed state. Delivery is at least once (Redis Streams with consumer groups), replies are
committed once per request, crashed agents leave discovery when their heartbeat expires, and
with a shared secret every message is signed. It knows nothing of LLMs.

Agents and the service use Redis at ``redis_url``, else ``$MASSGEN_REDIS_URL``, else
``redis://localhost:6379``; the in-process bus is opt-in (``transport=MemoryTransport()``).
docs/mas.md lists what differs from the seed framework (mas-framework) it follows.

Importing this package does not import redis; :class:`RedisTransport` is loaded on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from massgen.mas.agent import Agent, agents_from_records
from massgen.mas.connect import DEFAULT_REDIS_URL, REDIS_URL_ENV, resolve_transport
from massgen.mas.errors import (
    AgentIdTaken,
    BusAuthError,
    BusUnreachable,
    RemoteError,
    RequestTimeout,
    SecretMismatch,
)
from massgen.mas.gateway import GatewayRejected, GatewayResult, GatewayService, GatewaySettings
from massgen.mas.keys import DEFAULT_PREFIX, Keys
from massgen.mas.memory import MemoryHub, MemoryTransport, default_hub
from massgen.mas.message import AgentMessage, MessageKind
from massgen.mas.settings import BusSettings
from massgen.mas.signing import SECRET_ENV, Signer, Verdict
from massgen.mas.state import StateError
from massgen.mas.transport import (
    AgentRecord,
    AgentStatus,
    CommitResult,
    DeadLetter,
    Delivery,
    Envelope,
    InboxStats,
    Orphans,
    Transport,
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


def __getattr__(name: str) -> Any:
    # Lazy: RedisTransport imports redis; MASService is also a ``python -m`` entry point,
    # which must not be imported before runpy executes it.
    if name == "RedisTransport":
        from massgen.mas.redis_transport import RedisTransport

        return RedisTransport
    if name == "MASService":
        from massgen.mas.service import MASService

        return MASService
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
