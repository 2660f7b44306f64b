"""The contract both transports keep (`connect.Transport` names either), and the values they carry.

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

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from massgen.mas.message import AgentMessage, decode, encode, pack, unpack

EntryId = str | int

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
