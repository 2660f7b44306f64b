"""The one interface between an agent and its bus, and the values it carries.

Two implementations pass one contract test suite: :class:`~massgen.mas.memory.MemoryTransport`
(one process, no Redis) and :class:`~massgen.mas.redis_transport.RedisTransport`. A transport
knows inboxes, leases, registry records and state fields; it does not know handlers,
signatures or retries: those live in :class:`~massgen.mas.agent.Agent`.

Delivery contract (both transports):

* ``send`` returns once the message is stored; it then waits in the target's inbox, even
  if the target is offline.
* ``fetch`` hands each new message to exactly one consumer of the inbox and leases it.
  ``ack`` ends the lease; ``renew`` extends it; ``release`` gives it up early (after a
  failure). A lease left to expire is taken over by ``reclaim`` (any consumer), which counts
  deliveries and moves messages past ``max_deliveries`` to the dead-letter stream.
* ``ack`` and ``commit_reply`` are fenced: they only act for the consumer that currently
  holds the lease, so a stalled worker that lost its lease cannot ack or answer.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

from massgen.mas.message import AgentMessage

EntryId = str | int

#: Work taken from a dead instance is handed back looking idle this long (seconds), so any
#: live consumer's next reclaim takes it, whatever lease it runs with.
HANDBACK_IDLE = 86_400.0


class AgentStatus(StrEnum):
    """Lifecycle of an agent; the registry shows the last three."""

    CREATED = "created"
    STARTING = "starting"
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"
    DEAD = "dead"


class CommitResult(StrEnum):
    """What became of a reply."""

    COMMITTED = "committed"
    DUPLICATE = "duplicate"
    """A reply to this request was already committed; yours was discarded."""
    LEASE_LOST = "lease lost"
    """You no longer hold the request (it was reclaimed or finished elsewhere)."""


class AgentRecord(BaseModel):
    """One running instance of an agent, as the registry stores it.

    Frozen, so transports can hand out the same parsed record to every lookup."""

    model_config = ConfigDict(frozen=True)

    id: str
    instance_id: str
    capabilities: list[str] = Field(default_factory=list)
    metadata: dict[str, Any] = Field(default_factory=dict)
    host: str = ""
    pid: int = 0
    started: float = 0.0
    proof: str = ""
    """Shows which secret the instance signs with (``Signer.proof``); empty: unsigned."""
    token_hash: str = ""
    """SHA-256 of the instance's token (``Agent.token``), for a gateway to check it."""
    # status and replica stay last: the reaper script edits the stored JSON's tail
    status: AgentStatus = AgentStatus.RUNNING
    replica: bool = False
    expires: float = 0.0
    """Heartbeat expiry, epoch seconds (filled in when read back)."""


@dataclass(slots=True)
class Envelope:
    """A message with its signature and, once someone needed them, its exact bytes."""

    message: AgentMessage
    mac: str | None = None
    body: bytes | None = None


@dataclass(slots=True)
class Delivery:
    """One message handed to a consumer. ``envelope`` is None when it could not be read."""

    entry_id: EntryId
    envelope: Envelope | None
    attempt: int
    enqueued_at: float
    """When the message entered the inbox (server clock, epoch seconds)."""
    problem: str | None = None
    raw: bytes | None = None


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """An entry of a dead-letter stream."""

    entry_id: EntryId
    reason: str
    consumer: str
    raw: bytes


@dataclass(frozen=True, slots=True)
class InboxStats:
    """What the service reports per inbox."""

    agent_id: str
    length: int
    """Entries stored; on Redis this includes acknowledged ones not trimmed yet."""
    pending: int
    """Delivered to a consumer and not acknowledged yet (in flight or stuck)."""
    dead_letters: int
    unread: int = 0
    """Never delivered to any consumer yet."""

    @property
    def waiting(self) -> int:
        """Work not finished: unread plus pending."""
        return self.unread + self.pending


@dataclass(frozen=True, slots=True)
class Orphans:
    """What :meth:`Transport.reclaim_orphans` did to work held by dead instances."""

    released: list[EntryId]
    """Given back to the group, so the next live consumer's reclaim takes it."""
    dead_lettered: list[EntryId]
    """Delivered ``max_deliveries`` times already: moved to the dead-letter stream."""
    holders: list[str]
    """The dead consumers (instance ids) they were taken from."""


@runtime_checkable
class Transport(Protocol):
    """Registry, inboxes with leases, replies and state: what an agent needs of a bus."""

    async def connect(self) -> None:
        """Open connections; raise ConfigError subclasses for bad URLs or credentials."""

    async def close(self) -> None: ...

    # registry -----------------------------------------------------------------------------
    async def register(self, record: AgentRecord, *, ttl: float, retention: float) -> None:
        """Add a live instance; raise AgentIdTaken if a non-replica holds the id."""

    async def heartbeat(
        self, agent_id: str, instance_id: str, *, ttl: float, retention: float
    ) -> bool:
        """Extend the instance's life; ``False`` if it was already declared dead."""

    async def deregister(self, agent_id: str, instance_id: str) -> None: ...

    async def discover(self, capabilities: Sequence[str] = ()) -> list[AgentRecord]:
        """Live instances whose agent has every capability asked for."""

    async def reap(self, *, retention: float) -> list[AgentRecord]:
        """Mark instances whose heartbeat expired as dead, drop them from discovery."""

    # inboxes ------------------------------------------------------------------------------
    async def ensure_inbox(self, agent_id: str) -> None: ...

    async def send(self, envelopes: Sequence[Envelope]) -> None:
        """Store each message in its target's inbox; return once all are stored."""

    async def fetch(
        self, agent_id: str, consumer: str, *, count: int, block: float
    ) -> list[Delivery]:
        """New messages for this consumer, waiting up to ``block`` seconds for one."""

    async def ack(self, agent_id: str, consumer: str, entry_ids: Sequence[EntryId]) -> int:
        """Finish messages this consumer holds; return how many were still held."""

    async def renew(
        self, agent_id: str, consumer: str, entry_ids: Sequence[EntryId]
    ) -> list[EntryId]:
        """Restart the leases; return the ids this consumer no longer holds."""

    async def release(
        self,
        agent_id: str,
        consumer: str,
        entry_id: EntryId,
        *,
        lease: float,
        delay: float,
        uncount: bool = False,
    ) -> None:
        """Give a held message back so it may be redelivered after ``delay`` seconds.

        ``uncount`` takes this delivery off its delivery count: the message was not tried
        (a replica that cannot verify it hands it to one that can), so it must not move
        closer to the dead-letter stream."""

    async def reclaim(
        self,
        agent_id: str,
        consumer: str,
        *,
        lease: float,
        max_deliveries: int,
        count: int,
        dlq_maxlen: int,
    ) -> list[Delivery]:
        """Take over messages whose lease expired; dead-letter those delivered too often."""

    async def dead_letter(
        self,
        agent_id: str,
        consumer: str,
        delivery: Delivery,
        reason: str,
        *,
        dlq_maxlen: int,
    ) -> None:
        """Move a held message to the dead-letter stream and finish it."""

    async def dead_letters(
        self, agent_id: str, count: int = 100, *, newest: bool = False
    ) -> list[DeadLetter]:
        """The first ``count`` dead letters of the agent, oldest first; ``newest``: the
        last ``count``, newest first."""

    async def trim(self, agent_id: str) -> int:
        """Drop finished entries (never pending or undelivered ones); return how many."""

    async def inbox_stats(self) -> list[InboxStats]: ...

    async def reclaim_orphans(
        self,
        agent_id: str,
        consumer: str,
        *,
        lease: float,
        max_deliveries: int,
        count: int,
        dlq_maxlen: int,
    ) -> Orphans:
        """Take work from consumers whose instance is dead (heartbeat expired, or gone from
        the registry) and idle past ``lease``: dead-letter what was delivered
        ``max_deliveries`` times, hand the rest to ``consumer`` looking idle for
        :data:`HANDBACK_IDLE`, so the next live consumer's :meth:`reclaim` takes it over
        (the dead holder is fenced out; the delivery count is not bumped). Entries
        ``consumer`` holds are left alone."""

    # replies ------------------------------------------------------------------------------
    async def commit_reply(
        self,
        agent_id: str,
        consumer: str,
        entry_id: EntryId | None,
        reply: Envelope,
        *,
        ttl: float,
    ) -> CommitResult:
        """Store the first reply to a request and deliver it to ``reply.message.reply_to``.

        With ``entry_id`` it is fenced (only the lease holder may answer) and a committed or
        duplicate reply also acknowledges the request."""

    async def read_replies(self, reply_to: str, *, block: float) -> list[Envelope]:
        """Replies for this requester that arrived since the last read."""

    async def get_reply(self, request_id: str) -> Envelope | None:
        """The committed reply to a request, if any (after a requester restart)."""

    async def drop_replies(self, reply_to: str) -> None: ...

    # security -----------------------------------------------------------------------------
    async def first_seen(
        self, agent_id: str, items: Sequence[tuple[str, EntryId]], *, ttl: float
    ) -> list[bool]:
        """For each ``(message id, entry id)``: ``False`` if the id came in another entry."""

    # state --------------------------------------------------------------------------------
    async def load_state(self, agent_id: str) -> dict[str, str]: ...

    async def save_state(self, agent_id: str, fields: Mapping[str, str]) -> None: ...

    async def clear_state(self, agent_id: str) -> None:
        """Delete every stored state field of the agent."""
