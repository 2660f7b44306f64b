"""The in-process bus: the Redis transport's contract (the same contract suite) for agents of
one event loop. Messages pass by reference, as with ``asyncio.Queue``: do not mutate a payload
after sending it."""

from __future__ import annotations

import asyncio
import contextlib
import time
import weakref
from collections import defaultdict, deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from massgen.errors import AgentIdTaken
from massgen.mas.message import AgentMessage
from massgen.mas.transport import (
    HANDBACK_IDLE,
    AgentRecord,
    AgentStatus,
    BusSettings,
    CommitResult,
    DeadLetter,
    Delivery,
    EntryId,
    Envelope,
    InboxStats,
    Orphans,
)


@dataclass(frozen=True, slots=True)
class _Lease:
    """Who holds an entry since when, delivered how often (immutable: a fetch shares one)."""

    consumer: str
    since: float
    count: int


@dataclass(slots=True)
class _Inbox:
    """Entries ``cursor .. next_id - 1`` are unread; delivered ones stay until acknowledged.
    An unsigned entry is the bare message (fewer objects for the garbage collector to walk)."""

    entries: dict[EntryId, AgentMessage | Envelope] = field(default_factory=dict)
    enqueued: dict[EntryId, float] = field(default_factory=dict)
    next_id: int = 1
    cursor: int = 1
    leases: dict[EntryId, _Lease] = field(default_factory=dict)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    dead: deque[DeadLetter] = field(default_factory=deque)

    def put(self, env: Envelope, now: float) -> None:
        self.entries[self.next_id] = env.message if env.mac is None else env
        self.enqueued[self.next_id] = now
        self.next_id += 1

    def delivery(self, eid: EntryId, attempt: int) -> Delivery:
        item = self.entries[eid]
        env = Envelope(item) if isinstance(item, AgentMessage) else item
        return Delivery(eid, env, attempt, self.enqueued[eid])


@dataclass(slots=True)
class _Mailbox:
    replies: deque[Envelope] = field(default_factory=deque)
    wake: asyncio.Event = field(default_factory=asyncio.Event)


class _Expiring:
    """A dict whose entries vanish after their TTL (checked lazily)."""

    __slots__ = ("_data", "_order")

    def __init__(self) -> None:
        self._data: dict[object, tuple[object, float]] = {}
        self._order: deque[tuple[float, object]] = deque()

    def get(self, key: object, now: float) -> object | None:
        while self._order and self._order[0][0] <= now:
            _, old = self._order.popleft()
            item = self._data.get(old)
            if item is not None and item[1] <= now:
                del self._data[old]
        item = self._data.get(key)
        return item[0] if item is not None and item[1] > now else None

    def put(self, key: object, value: object, expires: float) -> None:
        self._data[key] = (value, expires)
        self._order.append((expires, key))


async def _wait(event: asyncio.Event, seconds: float) -> None:
    event.clear()
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await event.wait()


class MemoryHub:
    """Everything the in-process bus stores; agents that share a hub can talk."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self.inboxes: defaultdict[str, _Inbox] = defaultdict(_Inbox)
        self.live: dict[str, AgentRecord] = {}
        self.mailboxes: defaultdict[str, _Mailbox] = defaultdict(_Mailbox)
        self.committed = _Expiring()
        self.seen = _Expiring()
        self.state: dict[str, dict[str, str]] = {}


_DEFAULT_HUBS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, MemoryHub] = (
    weakref.WeakKeyDictionary()
)


def default_hub() -> MemoryHub:
    """The hub of the running event loop, for transports given none: agents meet with no
    wiring, as through one Redis; it dies with the loop, so each ``asyncio.run`` starts clean."""
    return _DEFAULT_HUBS.setdefault(asyncio.get_running_loop(), MemoryHub())


class MemoryTransport:
    """:data:`~massgen.mas.transport.Transport` over a :class:`MemoryHub`."""

    where = "the in-process bus"

    def __init__(self, hub: MemoryHub | None = None) -> None:
        self._hub = hub

    @property
    def hub(self) -> MemoryHub:
        if self._hub is None:
            self._hub = default_hub()
        return self._hub

    def __repr__(self) -> str:
        return "MemoryTransport()"

    async def connect(self) -> None:
        _ = self.hub

    async def close(self) -> None:
        return None

    async def register(self, record: AgentRecord, *, ttl: float, retention: float) -> None:
        hub, now = self.hub, self.hub.clock()
        live = [
            r
            for r in hub.live.values()
            if r.id == record.id and r.expires > now and r.instance_id != record.instance_id
        ]
        if live and not (record.replica and all(r.replica for r in live)):
            raise AgentIdTaken(record.id)
        record = record.model_copy(update={"expires": now + ttl, "status": AgentStatus.RUNNING})
        hub.live[record.instance_id] = record

    async def heartbeat(
        self, agent_id: str, instance_id: str, *, ttl: float, retention: float
    ) -> bool:
        rec = self.hub.live.get(instance_id)
        now = self.hub.clock()
        if rec is None or rec.expires <= now:
            return False
        self.hub.live[instance_id] = rec.model_copy(update={"expires": now + ttl})
        return True

    async def deregister(self, agent_id: str, instance_id: str) -> None:
        self.hub.live.pop(instance_id, None)

    async def discover(self, capabilities: Sequence[str] = ()) -> list[AgentRecord]:
        now = self.hub.clock()
        want = set(capabilities)
        return [
            r for r in self.hub.live.values() if r.expires > now and want.issubset(r.capabilities)
        ]

    async def reap(self, *, retention: float) -> list[AgentRecord]:
        live, now = self.hub.live, self.hub.clock()
        gone = [live.pop(i) for i, r in list(live.items()) if r.expires <= now]
        return [r.model_copy(update={"status": AgentStatus.DEAD}) for r in gone]

    async def ensure_inbox(self, agent_id: str) -> None:
        _ = self.hub.inboxes[agent_id]

    async def send(self, envelopes: Sequence[Envelope]) -> None:
        hub, now = self.hub, self.hub.clock()
        for env in envelopes:
            box = hub.inboxes[env.message.target_id]
            box.put(env, now)
            box.wake.set()

    async def fetch(
        self, agent_id: str, consumer: str, *, count: int, block: float
    ) -> list[Delivery]:
        hub = self.hub
        box = hub.inboxes[agent_id]
        if box.cursor >= box.next_id and block > 0:
            await _wait(box.wake, block)
        if box.cursor >= box.next_id:
            return []  # nothing came, or another consumer took it
        start = box.cursor
        box.cursor = end = min(box.next_id, start + count)
        lease = _Lease(consumer, hub.clock(), 1)  # one lease for the whole batch
        box.leases.update(dict.fromkeys(range(start, end), lease))
        return [box.delivery(eid, 1) for eid in range(start, end)]

    def _held(self, box: _Inbox, consumer: str, eid: EntryId) -> _Lease | None:
        lease = box.leases.get(eid)
        return lease if lease is not None and lease.consumer == consumer else None

    async def ack(self, agent_id: str, consumer: str, entry_ids: Sequence[EntryId]) -> int:
        box = self.hub.inboxes[agent_id]
        done = 0
        for eid in entry_ids:
            if self._held(box, consumer, eid) is not None:
                del box.leases[eid]
                box.entries.pop(eid, None)
                box.enqueued.pop(eid, None)
                done += 1
        return done

    async def renew(
        self, agent_id: str, consumer: str, entry_ids: Sequence[EntryId]
    ) -> list[EntryId]:
        box = self.hub.inboxes[agent_id]
        now = self.hub.clock()
        lost: list[EntryId] = []
        for eid in entry_ids:
            lease = self._held(box, consumer, eid)
            if lease is None:
                lost.append(eid)
            else:
                box.leases[eid] = _Lease(consumer, now, lease.count)
        return lost

    async def release(
        self, agent_id: str, consumer: str, entry_id: EntryId, idle: float, uncount: bool = False
    ) -> None:
        box = self.hub.inboxes[agent_id]
        held = self._held(box, consumer, entry_id)
        if held is not None:
            count = max(0, held.count - 1) if uncount else held.count
            box.leases[entry_id] = _Lease(consumer, self.hub.clock() - idle, count)

    async def reclaim(
        self, agent_id: str, consumer: str, s: BusSettings, count: int
    ) -> list[Delivery]:
        box, now = self.hub.inboxes[agent_id], self.hub.clock()
        out: list[Delivery] = []
        for eid, held in list(box.leases.items()):
            if len(out) >= count:
                break
            if now - held.since < s.lease:
                continue
            n = held.count + 1
            box.leases[eid] = _Lease(consumer, now, n)
            delivery = box.delivery(eid, n)
            if n > s.max_deliveries:
                reason = f"delivered {n - 1} times without success"
                await self.dead_letter(
                    agent_id, consumer, delivery, reason, dlq_maxlen=s.dlq_maxlen
                )
            else:
                out.append(delivery)
        return out

    async def dead_letter(
        self, agent_id: str, consumer: str, delivery: Delivery, reason: str, *, dlq_maxlen: int
    ) -> None:
        box = self.hub.inboxes[agent_id]
        if self._held(box, consumer, delivery.entry_id) is None:
            return
        box.dead.append(DeadLetter(delivery.entry_id, reason, consumer, delivery.blob()))
        while len(box.dead) > dlq_maxlen:
            box.dead.popleft()
        await self.ack(agent_id, consumer, [delivery.entry_id])

    async def dead_letters(
        self, agent_id: str, count: int = 100, *, newest: bool = False
    ) -> list[DeadLetter]:
        dead = self.hub.inboxes[agent_id].dead
        return list(reversed(dead) if newest else dead)[:count]

    async def trim(self, agent_id: str) -> int:
        return 0  # entries are dropped as soon as they are acknowledged

    async def inbox_stats(self) -> list[InboxStats]:
        return [
            InboxStats(aid, len(b.entries), len(b.leases), len(b.dead), b.next_id - b.cursor)
            for aid, b in sorted(self.hub.inboxes.items())
        ]

    async def reclaim_orphans(
        self, agent_id: str, consumer: str, s: BusSettings, count: int
    ) -> Orphans:
        hub = self.hub
        box, now = hub.inboxes[agent_id], hub.clock()
        released: list[EntryId] = []
        dead: list[EntryId] = []
        holders: set[str] = set()
        for eid, held in list(box.leases.items()):
            if len(released) + len(dead) >= count:
                break
            if held.consumer == consumer or now - held.since < s.lease:
                continue
            rec = hub.live.get(held.consumer)
            if rec is not None and rec.id == agent_id and rec.expires > now:
                continue  # its holder is alive: it renews or gives it back itself
            holders.add(held.consumer)
            if held.count >= s.max_deliveries:
                reason = f"delivered {held.count} times; holder {held.consumer} died"
                delivery = box.delivery(eid, held.count)
                await self.dead_letter(
                    agent_id, held.consumer, delivery, reason, dlq_maxlen=s.dlq_maxlen
                )
                dead.append(eid)
            else:
                since = now - max(s.lease, HANDBACK_IDLE)
                box.leases[eid] = _Lease(consumer, since, held.count)
                released.append(eid)
        return Orphans(released, dead, sorted(holders))

    async def commit_reply(
        self, agent_id: str, consumer: str, entry_id: EntryId | None, reply: Envelope, *, ttl: float
    ) -> CommitResult:
        hub = self.hub
        msg = reply.message
        if msg.correlation_id is None:
            raise ValueError("a reply needs correlation_id")
        now = hub.clock()
        prev = hub.committed.get(msg.correlation_id, now)
        same = isinstance(prev, Envelope) and prev.message == msg
        if entry_id is not None and self._held(hub.inboxes[agent_id], consumer, entry_id) is None:
            return CommitResult.COMMITTED if same else CommitResult.LEASE_LOST
        if entry_id is not None:  # answering a request finishes it
            await self.ack(agent_id, consumer, [entry_id])
        if prev is not None:
            return CommitResult.COMMITTED if same else CommitResult.DUPLICATE
        hub.committed.put(msg.correlation_id, reply, now + ttl)
        if msg.reply_to:
            box = hub.mailboxes[msg.reply_to]
            box.replies.append(reply)
            box.wake.set()
        return CommitResult.COMMITTED

    async def read_replies(
        self, reply_to: str, *, block: float, send: Sequence[Envelope] = ()
    ) -> list[Envelope]:
        if send:
            await self.send(send)
        box = self.hub.mailboxes[reply_to]
        if not box.replies and block > 0:
            await _wait(box.wake, block)
        out = list(box.replies)
        box.replies.clear()
        return out

    async def get_reply(self, request_id: str) -> Envelope | None:
        found = self.hub.committed.get(request_id, self.hub.clock())
        return found if isinstance(found, Envelope) else None

    async def drop_replies(self, reply_to: str) -> None:
        self.hub.mailboxes.pop(reply_to, None)

    async def first_seen(
        self, agent_id: str, items: Sequence[tuple[str, EntryId]], *, ttl: float
    ) -> list[bool]:
        hub, now = self.hub, self.hub.clock()
        out = []
        for message_id, entry_id in items:
            key = (agent_id, message_id)
            prev = hub.seen.get(key, now)
            if prev is None:
                hub.seen.put(key, entry_id, now + ttl)
            out.append(prev is None or prev == entry_id)
        return out

    async def load_state(self, agent_id: str) -> dict[str, str]:
        return dict(self.hub.state.get(agent_id, {}))

    async def save_state(self, agent_id: str, fields: Mapping[str, str]) -> None:
        self.hub.state.setdefault(agent_id, {}).update(fields)

    async def clear_state(self, agent_id: str) -> None:
        self.hub.state.pop(agent_id, None)
