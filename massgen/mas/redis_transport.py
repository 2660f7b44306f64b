"""The bus over Redis: Streams with consumer groups, fenced by Lua scripts.

Round trips are few and cheap. A send is one write of ``XADD`` commands (concurrent sends
share it); an idle consumer waits in ``XREADGROUP BLOCK`` on its inbox and a requester in
``XREAD BLOCK`` on its reply stream (no wake-up messages, no polling); a reply is one script
(fence check, first-reply-wins record, reply, ``XACK``); reads take up to ``batch`` entries;
acks and lease renewals go many ids per script call. Scripts and stream commands go
through :mod:`massgen.mas.resp` (pipelined, parsed by hiredis in the protocol callback); the
rest (the start-up check, group creation, state, dead-letter listing, ``SCAN``) through
redis-py. Lost connections are retried with
exponential backoff; what still fails surfaces as :class:`~massgen.errors.TransportError`
and the agent's loops carry on. Credentials come from the URL
(``redis://user:password@host:6379/0``, ``rediss://`` for TLS) and never appear in errors or
logs.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Coroutine, Mapping, Sequence
from typing import Any, ParamSpec, TypeVar

import redis.asyncio as aioredis
from redis import exceptions as rexc
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff, NoBackoff

from massgen.errors import ConfigError, MassGenError, TransportError
from massgen.mas import scripts, wire
from massgen.mas.errors import AgentIdTaken, BusAuthError, BusRefused, BusUnreachable
from massgen.mas.keys import DEFAULT_PREFIX, FIELD, GROUP, Keys
from massgen.mas.resp import RespClient
from massgen.mas.transport import (
    HANDBACK_IDLE,
    AgentRecord,
    CommitResult,
    DeadLetter,
    Delivery,
    EntryId,
    Envelope,
    InboxStats,
    Orphans,
)
from massgen.redact import redact_url as redact

P = ParamSpec("P")
R = TypeVar("R")


def _translate(e: rexc.RedisError, where: str) -> MassGenError:
    text = str(e)
    if "NOAUTH" in text or "Authentication required" in text or "authenticated" in text:
        return BusAuthError(
            f"Redis at {where} requires a password",
            hint="put it in the URL: redis://:password@host or redis://user:password@host",
        )
    if isinstance(e, rexc.AuthenticationError | rexc.AuthenticationWrongNumberOfArgsError):
        return BusAuthError(
            f"Redis at {where} refused the credentials",
            hint="check the user and password in the URL (redis://user:password@host)",
        )
    if isinstance(e, rexc.NoPermissionError):
        return BusAuthError(
            f"the Redis user at {where} may not run a command the bus needs",
            hint="grant the user the stream, hash, sorted-set, string and scripting commands",
        )
    return TransportError(f"Redis at {where}: {type(e).__name__}: {e}")


def _mapped(
    fn: Callable[P, Coroutine[Any, Any, R]],
) -> Callable[P, Coroutine[Any, Any, R]]:
    """Re-raise redis-py errors as errors of our tree (without the URL's password)."""

    @functools.wraps(fn)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await fn(*args, **kwargs)
        except rexc.RedisError as e:
            self = args[0]
            assert isinstance(self, RedisTransport)
            raise _translate(e, self.where) from e

    return wrapper


def _s(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _ms(seconds: float) -> int:
    """Milliseconds for a TTL or a block time: at least 1 (0 means "forever" to BLOCK)."""
    return max(1, int(seconds * 1000))


def _idle_ms(seconds: float) -> int:
    """Milliseconds of idle time for reclaiming: a lease of 0 takes everything pending."""
    return max(0, int(seconds * 1000))


def _blob(fields: list[bytes] | None) -> bytes:
    """The ``m`` field of a raw stream entry (``[field, value, ...]``; None if deleted)."""
    if fields:
        for i in range(0, len(fields) - 1, 2):
            if fields[i] == FIELD:
                return fields[i + 1]
    return b""


def _delivery(entry_id: bytes | str, blob: bytes, attempt: int) -> Delivery:
    eid = _s(entry_id)
    enqueued = int(eid.partition("-")[0]) / 1000
    try:
        body, mac = wire.unpack(blob)
        return Delivery(eid, Envelope(wire.decode(body), mac, body), attempt, enqueued)
    except wire.WireError as e:
        return Delivery(eid, None, attempt, enqueued, problem=str(e), raw=blob)


def _deliveries(got: Any) -> list[Delivery]:
    """An ``XREADGROUP`` reply (``[[key, [[id, fields], ...]]]``) as first deliveries: the
    read path of every message, so :func:`_delivery` is inlined."""
    out: list[Delivery] = []
    append, unpack, decode = out.append, wire.unpack, wire.decode
    for _, entries in got or ():
        for entry_id, fields in entries:
            eid = entry_id.decode()
            enqueued = int(eid.partition("-")[0]) / 1000
            blob = fields[1] if fields and fields[0] == FIELD else _blob(fields)
            try:
                body, mac = unpack(blob)
                append(Delivery(eid, Envelope(decode(body), mac, body), 1, enqueued))
            except wire.WireError as e:
                append(Delivery(eid, None, 1, enqueued, problem=str(e), raw=blob))
    return out


class RedisTransport:
    """:class:`~massgen.mas.transport.Transport` over one Redis (standalone, not Cluster).

    ``retries`` reconnection attempts with exponential backoff (50 ms doubling, at most
    ``backoff_cap`` s apart) ride out a Redis restart; pass more to survive longer outages.
    The transport holds one pipelined connection for its agents' commands, plus one per
    blocking read in progress (each agent's inbox, and its reply stream once it made a
    request). ``max_connections`` caps redis-py's pool, used off the hot path.
    """

    def __init__(
        self,
        url: str,
        *,
        prefix: str = DEFAULT_PREFIX,
        retries: int = 12,
        backoff_cap: float = 1.0,
        connect_timeout: float = 5.0,
        max_connections: int = 10_000,
    ) -> None:
        self.url = url
        self.where = redact(url)
        self.keys = Keys(prefix)
        self._connect_timeout = connect_timeout
        try:
            self._r: aioredis.Redis = aioredis.Redis.from_url(
                url,
                retry=Retry(ExponentialBackoff(cap=backoff_cap, base=0.05), retries),
                retry_on_error=[rexc.ConnectionError, rexc.TimeoutError],
                socket_connect_timeout=connect_timeout,
                max_connections=max_connections,
            )
        except ValueError as e:
            raise ConfigError(
                f"invalid Redis URL {self.where!r}",
                hint="use redis://[user:password@]host[:port][/db] or rediss:// for TLS",
            ) from e
        self._fast = RespClient(self._r.connection_pool, retries=retries, backoff_cap=backoff_cap)
        self._cursors: dict[str, bytes | str] = {}
        # registry records parsed at version _reg_version, by member: (json, record)
        self._reg_version: bytes | str = ""
        self._records: dict[bytes, tuple[bytes, AgentRecord]] = {}
        self._expiring: dict[bytes, tuple[bytes, AgentRecord, AgentRecord]] = {}
        self._inbox_keys: dict[str, str] = {}
        self._drained: set[str] = set()  # inboxes whose last read came back short
        self._reply_cursor: dict[str, bytes | str] = {}
        self._reply_reads: dict[str, int] = {}
        self._reply_trim: dict[str, bytes] = {}  # trim up to this id at the next read
        self._outbox: list[tuple[Sequence[Envelope], asyncio.Future[None]]] = []
        self._flusher: asyncio.Task[None] | None = None
        self._flushing = False

    def __repr__(self) -> str:
        return f"RedisTransport({self.where!r}, prefix={self.keys.prefix!r})"

    @property
    def client(self) -> aioredis.Redis:
        """The redis-py client (for tests and tools; the bus itself needs nothing else)."""
        return self._r

    async def connect(self) -> None:
        """Check the URL, the server and the credentials once, without retrying."""
        probe = aioredis.Redis.from_url(
            self.url, retry=Retry(NoBackoff(), 0), socket_connect_timeout=self._connect_timeout
        )
        try:
            await probe.ping()
        except (rexc.AuthenticationError, rexc.NoPermissionError, rexc.ResponseError) as e:
            error = _translate(e, self.where)
            if isinstance(error, BusAuthError):
                raise error from None
            raise BusRefused(  # e.g. SELECT of a database the server does not have
                f"Redis at {self.where} refused the URL's settings: {e}",
                hint="check the database number (/0 to /15 on a default server) and the options",
            ) from None
        except (rexc.ConnectionError, rexc.TimeoutError, OSError) as e:
            raise BusUnreachable(
                f"cannot reach Redis at {self.where}: {type(e).__name__}",
                hint="is redis-server running, and are host, port and TLS (rediss://) right? "
                "(for agents of one process without Redis, pass transport=MemoryTransport())",
            ) from None
        finally:
            await probe.aclose()

    async def close(self) -> None:
        if self._flusher is not None:
            await asyncio.gather(self._flusher, return_exceptions=True)
        await self._fast.aclose()
        await self._r.aclose()

    # registry -----------------------------------------------------------------------------
    def _member(self, agent_id: str, instance_id: str) -> str:
        return f"{instance_id}:{agent_id}"

    @_mapped
    async def register(self, record: AgentRecord, *, ttl: float, retention: float) -> None:
        if len(record.instance_id) != 16:
            raise ValueError("instance ids are 16 hex characters")
        body = record.model_dump_json(exclude={"expires"})
        ok = await self._fast.script(
            scripts.REGISTER,
            keys=[self.keys.registry, self.keys.agent(record.id), self.keys.registry_version],
            args=[
                record.id,
                record.instance_id,
                body,
                _ms(ttl),
                _ms(retention),
                int(record.replica),
            ],
        )
        if not ok:
            raise AgentIdTaken(record.id)

    @_mapped
    async def heartbeat(
        self, agent_id: str, instance_id: str, *, ttl: float, retention: float
    ) -> bool:
        ok = await self._fast.script(
            scripts.HEARTBEAT,
            keys=[self.keys.registry, self.keys.agent(agent_id)],
            args=[self._member(agent_id, instance_id), _ms(ttl), _ms(retention)],
        )
        return bool(ok)

    @_mapped
    async def deregister(self, agent_id: str, instance_id: str) -> None:
        await self._fast.script(
            scripts.DEREGISTER,
            keys=[
                self.keys.registry,
                self.keys.agent(agent_id),
                self.keys.inbox(agent_id),
                self.keys.registry_version,
            ],
            args=[self._member(agent_id, instance_id), instance_id, GROUP],
        )

    @_mapped
    async def discover(self, capabilities: Sequence[str] = ()) -> list[AgentRecord]:
        """One script call. While no record changed (the registry version stayed put) it
        reads no record, only the live members and their expiries, and the records parsed
        before are reused; a heartbeat costs one ``model_copy`` of that record."""
        keys = [self.keys.registry, self.keys.registry_version]
        version, full, data = await self._fast.script(
            scripts.DISCOVER, keys=keys, args=[self.keys.agent_prefix(), self._reg_version]
        )
        if not int(full):
            records = self._known_records(data)
            if records is None:  # a live member we never parsed: read them all
                version, full, data = await self._fast.script(
                    scripts.DISCOVER, keys=keys, args=[self.keys.agent_prefix(), ""]
                )
        if int(full):
            records = self._parse_records(data)
            self._reg_version = version
        assert records is not None
        if not capabilities:
            return records
        want = set(capabilities)
        return [r for r in records if want.issubset(r.capabilities)]

    def _parse_records(self, data: bytes) -> list[AgentRecord]:
        """Frames ``<member> <expiry ms> <length>\\n<json>``: parse each record once."""
        bases: dict[bytes, tuple[bytes, AgentRecord]] = {}
        old = self._records
        out = []
        pos, end = 0, len(data)
        while pos < end:
            nl = data.index(b"\n", pos)
            member, expires, size = data[pos:nl].split(b" ")
            body = data[nl + 1 : nl + 1 + int(size)]
            pos = nl + 1 + int(size)
            known = old.get(member)
            if known is not None and known[0] == body:
                rec = known[1]
            else:
                rec = AgentRecord.model_validate_json(body)
            bases[member] = (body, rec)
            out.append(self._with_expiry(member, rec, expires))
        self._records = bases
        return out

    def _known_records(self, data: bytes) -> list[AgentRecord] | None:
        """Lines ``<member> <expiry ms>``, for records parsed before; None if one is new."""
        bases = self._records
        out = []
        for line in data.split(b"\n"):
            if not line:
                continue
            member, _, expires = line.partition(b" ")
            known = bases.get(member)
            if known is None:
                return None
            out.append(self._with_expiry(member, known[1], expires))
        return out

    def _with_expiry(self, member: bytes, rec: AgentRecord, expires: bytes) -> AgentRecord:
        seen = self._expiring.get(member)
        if seen is not None and seen[0] == expires and seen[1] is rec:
            return seen[2]
        dated = rec.model_copy(update={"expires": int(expires) / 1000})
        if len(self._expiring) > 10_000:
            self._expiring.clear()
        self._expiring[member] = (expires, rec, dated)
        return dated

    @_mapped
    async def reap(self, *, retention: float) -> list[AgentRecord]:
        flat = await self._fast.script(
            scripts.REAP,
            keys=[self.keys.registry, self.keys.registry_version],
            args=[self.keys.agent_prefix(), _ms(retention)],
        )
        return [AgentRecord.model_validate_json(x) for x in flat]

    # inboxes ------------------------------------------------------------------------------
    @_mapped
    async def ensure_inbox(self, agent_id: str) -> None:
        try:
            await self._r.xgroup_create(self.keys.inbox(agent_id), GROUP, id="0", mkstream=True)
        except rexc.ResponseError as e:
            if "BUSYGROUP" not in str(e):
                raise

    async def send(self, envelopes: Sequence[Envelope]) -> None:
        """Stored once this returns. Concurrent calls share one script call: the first
        caller writes at once (no extra loop turn on the latency path); callers arriving
        while it writes are written together by a flusher task right after."""
        if not envelopes:
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._outbox.append((envelopes, fut))
        if not self._flushing:
            self._flushing = True
            try:
                await self._flush_batch()
            finally:
                if self._outbox:
                    self._flusher = asyncio.ensure_future(self._flush())
                else:
                    self._flushing = False
        await fut

    async def _flush(self) -> None:
        try:
            while self._outbox:
                await self._flush_batch()
        finally:
            self._flushing = False

    async def _flush_batch(self) -> None:
        if self._outbox:
            batch, self._outbox = self._outbox, []
            # one XADD per message, all in one write: no script, so Redis runs each at its
            # plain command cost (a redis.call from Lua costs about three times as much)
            inbox, keys = self.keys.inbox, self._inbox_keys
            encode, pack = wire.encode, wire.pack
            commands = []
            for envelopes, _ in batch:
                for env in envelopes:
                    msg = env.message
                    key = keys.get(msg.target_id)
                    if key is None:
                        if len(keys) > 10_000:
                            keys.clear()
                        key = keys[msg.target_id] = inbox(msg.target_id)
                    body = env.body if env.body is not None else encode(msg)
                    commands.append(("XADD", key, "*", FIELD, pack(body, env.mac)))
            try:
                await self._fast.pipeline_ok(commands)
            except rexc.RedisError as e:
                err = _translate(e, self.where)
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(err)
            except BaseException as e:
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(TransportError(f"send interrupted: {e!r}"))
                raise
            else:
                for _, fut in batch:
                    if not fut.done():
                        fut.set_result(None)

    @_mapped
    async def fetch(
        self, agent_id: str, consumer: str, *, count: int, block: float
    ) -> list[Delivery]:
        """A non-blocking read while the inbox has a backlog (pipelined with other commands);
        a blocking read, on a connection of its own, once a read came back short."""
        key = self.keys.inbox(agent_id)
        try:
            got: Any = None
            if agent_id not in self._drained or block <= 0:
                got = await self._fast.call(
                    "XREADGROUP", "GROUP", GROUP, consumer, "COUNT", count, "STREAMS", key, ">"
                )
            if not got and block > 0:
                got = await self._fast.call_blocking(
                    "XREADGROUP", "GROUP", GROUP, consumer, "COUNT", count,
                    "BLOCK", _ms(block), "STREAMS", key, ">", wait=block,
                )  # fmt: skip
        except rexc.ResponseError as e:
            if "NOGROUP" not in str(e):
                raise
            await self.ensure_inbox(agent_id)  # the inbox vanished (flushed, restarted empty)
            return []
        out = _deliveries(got)
        if len(out) < count:
            self._drained.add(agent_id)
        else:
            self._drained.discard(agent_id)
        return out

    @_mapped
    async def ack(self, agent_id: str, consumer: str, entry_ids: Sequence[EntryId]) -> int:
        if not entry_ids:
            return 0
        n = await self._fast.script(
            scripts.ACK, keys=[self.keys.inbox(agent_id)], args=[GROUP, consumer, *entry_ids]
        )
        return int(n)

    @_mapped
    async def renew(
        self, agent_id: str, consumer: str, entry_ids: Sequence[EntryId]
    ) -> list[EntryId]:
        if not entry_ids:
            return []
        lost = await self._fast.script(
            scripts.RENEW, keys=[self.keys.inbox(agent_id)], args=[GROUP, consumer, *entry_ids]
        )
        return [_s(x) for x in lost]

    @_mapped
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
        idle = max(0, int((lease - delay) * 1000))
        await self._fast.script(
            scripts.RELEASE,
            keys=[self.keys.inbox(agent_id)],
            args=[GROUP, consumer, entry_id, idle, int(uncount)],
        )

    @_mapped
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
        cursor = self._cursors.get(agent_id, "0-0")
        flat = await self._fast.script(
            scripts.RECLAIM,
            keys=[self.keys.inbox(agent_id), self.keys.dlq(agent_id)],
            args=[GROUP, consumer, _idle_ms(lease), cursor, count, max_deliveries, dlq_maxlen],
        )
        self._cursors[agent_id] = flat[0]
        return [_delivery(flat[i], flat[i + 2], int(flat[i + 1])) for i in range(1, len(flat), 3)]

    @_mapped
    async def dead_letter(
        self,
        agent_id: str,
        consumer: str,
        delivery: Delivery,
        reason: str,
        *,
        dlq_maxlen: int,
    ) -> None:
        env = delivery.envelope
        if env is not None:
            blob = wire.pack(env.body or wire.encode(env.message), env.mac)
        else:
            blob = delivery.raw or b""
        await self._fast.script(
            scripts.DEAD_LETTER,
            keys=[self.keys.inbox(agent_id), self.keys.dlq(agent_id)],
            args=[GROUP, consumer, delivery.entry_id, blob, reason, dlq_maxlen],
        )

    @_mapped
    async def dead_letters(
        self, agent_id: str, count: int = 100, *, newest: bool = False
    ) -> list[DeadLetter]:
        key = self.keys.dlq(agent_id)
        rows: Any = await (
            self._r.xrevrange(key, count=count) if newest else self._r.xrange(key, count=count)
        )
        return [
            DeadLetter(
                _s(eid),
                _s(f.get(b"reason", b"")),
                _s(f.get(b"consumer", b"")),
                f.get(FIELD, b""),
            )
            for eid, f in rows
        ]

    @_mapped
    async def trim(self, agent_id: str) -> int:
        return int(
            await self._fast.script(scripts.TRIM, keys=[self.keys.inbox(agent_id)], args=[GROUP])
        )

    @_mapped
    async def inbox_stats(self) -> list[InboxStats]:
        """Per inbox: stored, pending and unread entries and dead letters (one script call
        per inbox, found with ``SCAN``)."""
        prefix = self.keys.inbox_prefix()
        out = []
        async for key in self._r.scan_iter(match=prefix + "*", count=500, _type="stream"):
            agent_id = _s(key)[len(prefix) :]
            got = await self._fast.script(
                scripts.STATS, keys=[key, self.keys.dlq(agent_id)], args=[GROUP]
            )
            if not got:
                continue  # no group yet
            length, pending, unread, dead = (int(x) for x in got)
            out.append(InboxStats(agent_id, length, pending, dead, unread))
        return sorted(out, key=lambda s: s.agent_id)

    @_mapped
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
        try:
            released, dead, holders = await self._fast.script(
                scripts.ORPHANS,
                keys=[self.keys.inbox(agent_id), self.keys.dlq(agent_id), self.keys.registry],
                args=[
                    GROUP,
                    agent_id,
                    consumer,
                    _idle_ms(lease),
                    max_deliveries,
                    dlq_maxlen,
                    count,
                    _ms(max(lease, HANDBACK_IDLE)),
                ],
            )
        except rexc.ResponseError as e:
            if "NOGROUP" not in str(e):
                raise
            return Orphans([], [], [])
        return Orphans([_s(x) for x in released], [_s(x) for x in dead], [_s(x) for x in holders])

    # replies ------------------------------------------------------------------------------
    @_mapped
    async def commit_reply(
        self,
        agent_id: str,
        consumer: str,
        entry_id: EntryId | None,
        reply: Envelope,
        *,
        ttl: float,
    ) -> CommitResult:
        msg = reply.message
        if msg.correlation_id is None or not msg.reply_to:
            raise ValueError("a reply needs correlation_id and reply_to")
        body = reply.body if reply.body is not None else wire.encode(msg)
        result = await self._fast.script(
            scripts.COMMIT,
            keys=[
                self.keys.inbox(agent_id),
                self.keys.reply(msg.correlation_id),
                self.keys.replies(msg.reply_to),
            ],
            args=[
                GROUP,
                consumer,
                "" if entry_id is None else entry_id,
                wire.pack(body, reply.mac),
                _ms(ttl),
            ],
        )
        return {1: CommitResult.COMMITTED, 0: CommitResult.DUPLICATE}.get(
            int(result), CommitResult.LEASE_LOST
        )

    @_mapped
    async def read_replies(self, reply_to: str, *, block: float) -> list[Envelope]:
        key = self.keys.replies(reply_to)
        cursor = self._reply_cursor.get(reply_to, "0-0")
        trim_to = self._reply_trim.pop(reply_to, None)
        if trim_to is not None:  # trimmed before this read, not after the last one: the
            # replies read then went to their requesters without waiting for it
            await self._fast.call("XTRIM", key, "MINID", "~", trim_to)
        got: Any
        if block > 0:
            got = await self._fast.call_blocking(
                "XREAD", "COUNT", 1000, "BLOCK", _ms(block), "STREAMS", key, cursor, wait=block
            )
        else:
            got = await self._fast.call("XREAD", "COUNT", 1000, "STREAMS", key, cursor)
        out = []
        last: bytes | None = None
        for _, entries in got or ():
            for eid, fields in entries:
                last = eid
                try:
                    body, mac = wire.unpack(_blob(fields))
                    out.append(Envelope(wire.decode(body), mac, body))
                except wire.WireError:
                    continue
        if last is not None:
            self._reply_cursor[reply_to] = last
            n = self._reply_reads.get(reply_to, 0) + len(out)
            if n >= 1000:
                self._reply_trim[reply_to] = last
                n = 0
            self._reply_reads[reply_to] = n
        return out

    @_mapped
    async def get_reply(self, request_id: str) -> Envelope | None:
        blob: Any = await self._r.get(self.keys.reply(request_id))
        if blob is None:
            return None
        try:
            body, mac = wire.unpack(blob)
            return Envelope(wire.decode(body), mac, body)
        except wire.WireError:
            return None

    @_mapped
    async def drop_replies(self, reply_to: str) -> None:
        await self._r.delete(self.keys.replies(reply_to))
        self._reply_cursor.pop(reply_to, None)
        self._reply_reads.pop(reply_to, None)
        self._reply_trim.pop(reply_to, None)

    # security -----------------------------------------------------------------------------
    @_mapped
    async def first_seen(
        self, agent_id: str, items: Sequence[tuple[str, EntryId]], *, ttl: float
    ) -> list[bool]:
        if not items:
            return []
        args: list[Any] = [self.keys.seen_prefix(agent_id), _ms(ttl)]
        for message_id, entry_id in items:
            args += (message_id, entry_id)
        flags = await self._fast.script(scripts.FIRST_SEEN, keys=[], args=args)
        return [bool(f) for f in flags]

    # state --------------------------------------------------------------------------------
    @_mapped
    async def load_state(self, agent_id: str) -> dict[str, str]:
        raw: Any = await self._r.hgetall(self.keys.state(agent_id))
        return {_s(k): _s(v) for k, v in raw.items()}

    @_mapped
    async def save_state(self, agent_id: str, fields: Mapping[str, str]) -> None:
        if fields:
            await self._r.hset(self.keys.state(agent_id), mapping=dict(fields))  # type: ignore[arg-type]

    @_mapped
    async def clear_state(self, agent_id: str) -> None:
        await self._r.delete(self.keys.state(agent_id))
