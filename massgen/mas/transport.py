"""The contract both transports keep (:data:`Transport` names either), the values they carry,
how an agent or service picks one, how they start and stop, and the Redis key names.

``MemoryTransport`` and ``RedisTransport`` pass one contract suite. ``send`` returns once a
message is stored (it waits for an offline target); ``fetch`` leases each new message to one
consumer; ``ack``/``renew``/``release`` end, extend or give up a lease; an expired lease is
taken over by ``reclaim``, which dead-letters messages past ``max_deliveries``. ``ack`` and
``commit_reply`` are fenced: only the lease holder may finish or answer a message (with an
``entry_id`` the commit also acknowledges it). ``reclaim_orphans`` hands work of dead
instances back looking idle for :data:`HANDBACK_IDLE`; ``release`` makes a held entry look
idle ``idle`` seconds (a reclaim takes it once that passes the lease; ``uncount=True``: this
delivery is not counted); ``first_seen`` is ``False`` for a message id that came in another
entry (a replay); ``read_replies`` first stores ``send`` (a requester's requests: one round
trip).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Self, TypeAlias

from pydantic import BaseModel, ConfigDict, Field

from massgen.mas.message import AgentMessage, decode, encode, pack, unpack

if TYPE_CHECKING:
    from massgen.mas.memory import MemoryHub, MemoryTransport
    from massgen.mas.redis_transport import RedisTransport

EntryId = str | int

DEFAULT_PREFIX = "massgen:"
GROUP = "workers"
"""The consumer group of every inbox stream; replicas of one agent are consumers of it."""
FIELD = b"m"
"""The one field of a stream entry: the signed wire blob (see :mod:`massgen.mas.message`)."""


@dataclass(frozen=True, slots=True)
class Keys:
    """Key names under ``prefix``, so several teams or test runs can share one Redis
    (docs/redis.md lists each with its type)."""

    prefix: str = DEFAULT_PREFIX

    @property
    def registry(self) -> str:  # ZSET "{instance_id}:{agent_id}" -> heartbeat expiry (ms)
        return f"{self.prefix}registry"

    def agent(self, agent_id: str) -> str:  # HASH instance_id -> JSON record
        return f"{self.prefix}agent:{agent_id}"

    def inbox(self, agent_id: str) -> str:  # STREAM with consumer group GROUP
        return f"{self.prefix}inbox:{agent_id}"

    def dlq(self, agent_id: str) -> str:  # STREAM of dead letters with their reason
        return f"{self.prefix}dlq:{agent_id}"

    def replies(self, instance_id: str) -> str:  # STREAM of replies to one requester
        return f"{self.prefix}replies:{instance_id}"

    def reply(self, request_id: str) -> str:  # STRING: the committed reply (first wins)
        return f"{self.prefix}reply:{request_id}"

    def state(self, agent_id: str) -> str:  # HASH field -> JSON value
        return f"{self.prefix}state:{agent_id}"

    def seen(self, agent_id: str, message_id: str) -> str:  # STRING: entry a message id came in
        return f"{self.prefix}seen:{agent_id}:{message_id}"

    def gateway(self, kind: str, agent_id: str) -> str:
        """``allowed``/``blocked`` SETs of targets, ``limits`` HASH, ``rate:minute``/``rate:hour``
        ZSETs of sent messages."""
        return f"{self.prefix}gw:{kind}:{agent_id}"

    @property
    def gateway_audit(self) -> str:  # STREAM: one entry per gateway decision
        return f"{self.prefix}gw:audit"


HANDBACK_IDLE = 86_400.0
"""Work taken from a dead instance looks idle this long (s), so any live reclaim takes it."""


@dataclass(frozen=True, slots=True, kw_only=True)
class BusSettings:
    """How an agent heartbeats, leases, retries and batches; defaults suit LLM handlers."""

    heartbeat_interval: float = 5.0
    heartbeat_ttl: float = 15.0
    """An agent not heard from for this long leaves discovery."""
    lease: float = 30.0
    """Work held this long by a silent consumer is reclaimed; live ones renew every lease/3."""
    reclaim_interval: float | None = None
    """Seconds between reclaim passes; ``None``: ``lease / 2``."""
    max_deliveries: int = 5
    """Deliveries without success before a message goes to the dead-letter stream."""
    retry_delay: float = 0.0
    """After a handler raised, wait this long before the message may be redelivered."""
    batch: int = 256
    """Messages fetched per read."""
    block: float = 5.0
    """Longest blocking read, in seconds (stop interrupts it at once)."""
    reply_ttl: float = 3600.0
    """How long a committed reply is kept."""
    dead_retention: float = 3600.0
    """How long a dead or stopped agent's record stays visible to the service."""
    dlq_maxlen: int = 10_000
    trim_every: int = 1_000
    """Trim an inbox's acknowledged entries after this many acks."""
    drain_timeout: float = 0.0
    """On stop, how long running handlers may take to finish before being cancelled."""

    @property
    def reclaim_every(self) -> float:
        return self.reclaim_interval if self.reclaim_interval is not None else self.lease / 2


class AgentStatus(StrEnum):
    CREATED = "created"
    STARTING = "starting"
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"
    DEAD = "dead"


class CommitResult(StrEnum):
    COMMITTED = "committed"
    DUPLICATE = "duplicate"
    """Another reply to this request was committed first; yours was discarded."""
    LEASE_LOST = "lease lost"
    """You no longer hold the request (reclaimed, or finished elsewhere)."""


class AgentRecord(BaseModel):
    """One running instance of an agent, as the registry stores it (frozen: shared by lookups)."""

    model_config = ConfigDict(frozen=True)

    id: str
    instance_id: str
    capabilities: list[str] = Field(default_factory=list)
    metadata: dict[str, Any] = Field(default_factory=dict)
    host: str = ""
    pid: int = 0
    started: float = 0.0
    proof: str = ""
    """Which secret the instance signs with (``Signer.proof``); empty: unsigned."""
    token_hash: str = ""
    """SHA-256 of the instance's token, for a gateway to check."""
    # status and replica stay last: the reaper script edits the stored JSON's tail
    status: AgentStatus = AgentStatus.RUNNING
    replica: bool = False
    expires: float = 0.0
    """Heartbeat expiry, epoch seconds (filled in when read back)."""


@dataclass(slots=True)
class Envelope:
    """A message with its MAC and, once someone needed them, its exact bytes."""

    message: AgentMessage
    mac: str | None = None
    body: bytes | None = None

    @classmethod
    def parse(cls, blob: bytes) -> Envelope:
        """The envelope of a stored blob; :class:`~massgen.errors.WireError` if malformed."""
        body, mac = unpack(blob)
        return cls(decode(body), mac, body)

    def signed_body(self) -> bytes:
        """The exact bytes the MAC covers."""
        return self.body if self.body is not None else encode(self.message)

    def blob(self) -> bytes:  # signed_body() inline: once per message sent
        return pack(self.body if self.body is not None else encode(self.message), self.mac)


@dataclass(slots=True)
class Delivery:
    """One message handed to a consumer; ``envelope`` is None when it could not be read."""

    entry_id: EntryId
    envelope: Envelope | None
    attempt: int
    enqueued_at: float
    """When the message entered the inbox (server clock, epoch seconds)."""
    problem: str | None = None
    raw: bytes | None = None

    def blob(self) -> bytes:
        return self.envelope.blob() if self.envelope is not None else self.raw or b""


@dataclass(frozen=True, slots=True)
class DeadLetter:
    entry_id: EntryId
    reason: str
    consumer: str
    raw: bytes


@dataclass(frozen=True, slots=True)
class InboxStats:
    agent_id: str
    length: int
    """Entries stored (on Redis, acknowledged ones not trimmed yet too)."""
    pending: int
    """Delivered and not acknowledged yet."""
    dead_letters: int
    unread: int = 0

    @property
    def waiting(self) -> int:
        return self.unread + self.pending


@dataclass(frozen=True, slots=True)
class Orphans:
    """Work of dead instances: handed back for redelivery, or dead-lettered."""

    released: list[EntryId]
    dead_lettered: list[EntryId]
    holders: list[str]


Transport: TypeAlias = "MemoryTransport | RedisTransport"
"""What an agent needs of a bus (registry, inboxes with leases, replies, state): both kinds
pass one contract suite (tests/mas/test_contract.py), and mypy checks each call on both."""

REDIS_URL_ENV = "MASSGEN_REDIS_URL"
DEFAULT_REDIS_URL = "redis://localhost:6379"
"""The Redis used when neither ``redis_url`` nor ``$MASSGEN_REDIS_URL`` names one."""


def resolve_transport(
    redis_url: str | None = None,
    *,
    transport: Transport | None = None,
    hub: MemoryHub | None = None,
    prefix: str = DEFAULT_PREFIX,
) -> tuple[Transport, bool]:
    """The transport and whether the caller owns it (must close it): ``transport`` as is,
    ``hub``'s in-process bus, else Redis at ``redis_url``, ``$MASSGEN_REDIS_URL`` or the
    default. Naming two of them is a ``ValueError``: which one would you mean?"""
    given = {"transport": transport is not None, "hub": hub is not None, "redis_url": redis_url}
    named = [name for name, present in given.items() if present]
    if len(named) > 1:
        raise ValueError(f"pass one of transport, hub and redis_url, not {' and '.join(named)}")
    if transport is not None:
        return transport, False
    if hub is not None:
        from massgen.mas.memory import MemoryTransport

        return MemoryTransport(hub), True
    return redis_transport(redis_url, prefix), True


def redis_transport(redis_url: str | None, prefix: str = DEFAULT_PREFIX) -> RedisTransport:
    """Redis at ``redis_url``, else ``$MASSGEN_REDIS_URL``, else the default."""
    from massgen.mas.redis_transport import RedisTransport

    url = redis_url or os.environ.get(REDIS_URL_ENV) or DEFAULT_REDIS_URL
    return RedisTransport(url, prefix=prefix)


async def cancel_and_wait(tasks: Iterable[asyncio.Task[Any]]) -> None:
    """Cancel ``tasks`` until every one is gone: redis-py may swallow a cancellation that
    lands between two reads of one command."""
    pending = {t for t in tasks if not t.done()}
    while pending:
        for t in pending:
            t.cancel()
        _, pending = await asyncio.wait(pending, timeout=0.05)


class Lifecycle:
    """``async with`` runs ``start()`` then, on the way out, ``stop()``."""

    async def start(self) -> None:
        raise NotImplementedError

    async def stop(self) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
