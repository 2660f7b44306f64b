"""The bus over Redis Streams with consumer groups, fenced by Lua scripts, on the process's
shared redis-py client (:mod:`massgen.store.redis_client`). Concurrent commands share round
trips (:mod:`massgen.mas.scripts`); idle readers wait in ``XREADGROUP``/``XREAD BLOCK``.
What fails after the client's retries is a :class:`~massgen.errors.TransportError`."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping, Sequence
from typing import Any

import redis.asyncio as aioredis
from redis import exceptions as rexc
from redis.asyncio.connection import AbstractConnection

from massgen.errors import (
    AgentIdTaken,
    BusAuthError,
    BusRefused,
    BusUnreachable,
    MassGenError,
    TransportError,
    WireError,
)
from massgen.mas import scripts
from massgen.mas.scripts import Pipeliner
from massgen.mas.transport import (
    DEFAULT_PREFIX,
    FIELD,
    GROUP,
    HANDBACK_IDLE,
    AgentRecord,
    BusSettings,
    CommitResult,
    DeadLetter,
    Delivery,
    EntryId,
    Envelope,
    InboxStats,
    Keys,
    Orphans,
)
from massgen.redact import redact_url as redact
from massgen.store.redis_client import REPLY_TIMEOUT, RedisLease, map_errors, redis_client


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


def _s(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _ms(seconds: float, least: int = 1) -> int:
    """Milliseconds for a TTL or a block time (at least 1: 0 means "forever" to BLOCK)."""
    return max(least, int(seconds * 1000))


def _delivery(entry_id: bytes | str, blob: bytes, attempt: int) -> Delivery:
    eid = _s(entry_id)
    enqueued = int(eid.partition("-")[0]) / 1000
    try:
        return Delivery(eid, Envelope.parse(blob), attempt, enqueued)
    except WireError as e:
        return Delivery(eid, None, attempt, enqueued, problem=str(e), raw=blob)


def _streams(got: Any) -> Any:
    """``(key, entries)`` pairs of a raw stream read: a map in RESP3, a list in RESP2."""
    return got.items() if isinstance(got, dict) else got or ()


def _field(fields: list[bytes] | None) -> bytes:
    """The ``m`` field of a raw stream entry (``[field, value, ...]``; None if deleted)."""
    if fields and fields[0] == FIELD:
        return fields[1]
    return dict(zip(fields[::2], fields[1::2], strict=True)).get(FIELD, b"") if fields else b""


# send maps its errors inline: one coroutine less per message
@map_errors(lambda self, e: _translate(e, self.where), skip={"send"})
class RedisTransport:
    """:data:`~massgen.mas.transport.Transport` over one Redis (standalone, not Cluster);
    ``options`` go to :func:`~massgen.store.redis_client.redis_client` (e.g. ``retries``)."""

    def __init__(self, url: str, *, prefix: str = DEFAULT_PREFIX, **options: Any) -> None:
        self.url = url
        self.where = redact(url)
        self.keys = Keys(prefix)
        self._lease = RedisLease(url, **options)
        self._reply_timeout = float(options.get("reply_timeout", REPLY_TIMEOUT))
        self._pipe = Pipeliner(lambda: self._lease.client, self._exchange)
        self._cursors: dict[str, bytes | str] = {}
        self._records: dict[tuple[bytes, bytes], AgentRecord] = {}  # by (json, expiry)
        self._readers: dict[str, AbstractConnection] = {}
        self._replies: dict[str, tuple[bytes | str, int]] = {}  # cursor, read since trimmed

    def __repr__(self) -> str:
        return f"RedisTransport({self.where!r}, prefix={self.keys.prefix!r})"

    @property
    def client(self) -> aioredis.Redis:
        """The shared redis-py client (for tests and tools)."""
        return self._lease.client

    async def connect(self) -> None:
        """Check the URL, the server and the credentials once, without retrying."""
        probe = redis_client(self.url, retries=0)
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

    async def _exchange(
        self, name: str, wait: float, commands: Sequence[Sequence[Any]]
    ) -> list[Any]:
        """Raw replies (errors as exception objects) of ``commands``, in one write on the
        connection held for ``name`` (a blocking reader; ``""``: single commands), blocking up
        to ``wait``. Timed here: redis-py's socket timeout starts a task per read."""
        try:
            async with asyncio.timeout(max(wait, 0.0) + self._reply_timeout):
                conn = self._readers.get(name)
                if conn is None:
                    conn = await self.client.connection_pool.get_connection()
                    conn.socket_timeout = None
                    self._readers[name] = conn

                async def once() -> list[Any]:
                    await conn.send_packed_command(conn.pack_commands(commands), False)
                    out: list[Any] = []
                    for _ in commands:
                        try:
                            out.append(await conn.read_response())
                        except rexc.ResponseError as e:
                            out.append(e)
                    return out

                return await conn.retry.call_with_retry(once, lambda _: conn.disconnect())
        except TimeoutError:
            await self._drop_reader(name)  # a reply may still come: never reuse the connection
            raise rexc.TimeoutError(f"no reply in {self._reply_timeout:g} s") from None

    async def _drop_reader(self, name: str) -> None:
        conn = self._readers.pop(name, None)
        if conn is not None:  # back to the pool as the others are, without a pending reply
            await conn.disconnect()
            pool = self.client.connection_pool
            conn.socket_timeout = pool.connection_kwargs.get("socket_timeout")
            await pool.release(conn)

    async def close(self) -> None:
        await self._pipe.aclose()
        for name in list(self._readers):
            await self._drop_reader(name)
        await self._lease.aclose()

    async def register(self, record: AgentRecord, *, ttl: float, retention: float) -> None:
        if len(record.instance_id) != 16:
            raise ValueError("instance ids are 16 hex characters")
        keys = [self.keys.registry, self.keys.agent(record.id)]
        body = record.model_dump_json(exclude={"expires"})
        args = [record.id, record.instance_id, body, _ms(ttl), _ms(retention), int(record.replica)]
        if not await self._pipe.script(scripts.REGISTER, keys, args):
            raise AgentIdTaken(record.id)

    async def heartbeat(
        self, agent_id: str, instance_id: str, *, ttl: float, retention: float
    ) -> bool:
        keys = [self.keys.registry, self.keys.agent(agent_id)]
        args = [f"{instance_id}:{agent_id}", _ms(ttl), _ms(retention)]
        return bool(await self._pipe.script(scripts.HEARTBEAT, keys, args))

    async def deregister(self, agent_id: str, instance_id: str) -> None:
        """Leave the registry; drop the consumer from the group only if it holds nothing."""
        inbox = self.keys.inbox(agent_id)
        await self._drop_reader(f"{inbox}:{instance_id}")
        await self._pipe.run(
            [
                ("ZREM", self.keys.registry, f"{instance_id}:{agent_id}"),
                ("HDEL", self.keys.agent(agent_id), instance_id),
            ]
        )
        with contextlib.suppress(rexc.ResponseError):  # no inbox or no group: nothing to drop
            if not await self.client.xpending_range(inbox, GROUP, "-", "+", 1, instance_id):
                await self.client.xgroup_delconsumer(inbox, GROUP, instance_id)

    async def discover(self, capabilities: Sequence[str] = ()) -> list[AgentRecord]:
        flat = await self._pipe.script(
            scripts.DISCOVER, [self.keys.registry], [self.keys.agent("")]
        )
        cache, records = self._records, []
        for i in range(0, len(flat), 2):  # a record is parsed again only when it changed
            rec = cache.get((flat[i], flat[i + 1]))
            if rec is None:
                if len(cache) > 10_000:
                    cache.clear()
                rec = AgentRecord.model_validate_json(flat[i])
                rec = cache[flat[i], flat[i + 1]] = rec.model_copy(
                    update={"expires": int(flat[i + 1]) / 1000}
                )
            records.append(rec)
        want = set(capabilities)
        return [r for r in records if want.issubset(r.capabilities)] if want else records

    async def reap(self, *, retention: float) -> list[AgentRecord]:
        flat = await self._pipe.script(
            scripts.REAP, [self.keys.registry], [self.keys.agent(""), _ms(retention)]
        )
        return [AgentRecord.model_validate_json(x) for x in flat]

    async def ensure_inbox(self, agent_id: str) -> None:
        try:
            await self.client.xgroup_create(self.keys.inbox(agent_id), GROUP, id="0", mkstream=True)
        except rexc.ResponseError as e:
            if "BUSYGROUP" not in str(e):
                raise

    async def send(self, envelopes: Sequence[Envelope]) -> None:
        """Stored once this returns; concurrent sends share one command."""
        if envelopes:
            keys = [self.keys.inbox(env.message.target_id) for env in envelopes]
            try:
                await self._pipe.add(keys, [env.blob() for env in envelopes])
            except rexc.RedisError as e:
                raise _translate(e, self.where) from e

    async def fetch(
        self, agent_id: str, consumer: str, *, count: int, block: float
    ) -> list[Delivery]:
        key = self.keys.inbox(agent_id)
        wait = ("BLOCK", _ms(block)) if block > 0 else ()
        read = ("XREADGROUP", "GROUP", GROUP, consumer, "COUNT", count, *wait, "STREAMS", key, ">")
        [got] = await self._exchange(f"{key}:{consumer}", block, [read])
        if isinstance(got, rexc.ResponseError):
            if "NOGROUP" not in str(got):
                raise got
            await self.ensure_inbox(agent_id)  # the inbox vanished (flushed, restarted empty)
            return []
        return [
            _delivery(entry_id, _field(fields), 1)
            for _, entries in _streams(got)
            for entry_id, fields in entries
        ]

    async def _fenced(
        self, mode: str, agent_id: str, consumer: str, ids: Sequence[EntryId], idle: float = 0
    ) -> Any:
        args = [GROUP, consumer, mode, _ms(idle, 0), *ids]
        return await self._pipe.script(scripts.FENCED, [self.keys.inbox(agent_id)], args)

    async def ack(self, agent_id: str, consumer: str, entry_ids: Sequence[EntryId]) -> int:
        return int(await self._fenced("ack", agent_id, consumer, entry_ids)) if entry_ids else 0

    async def renew(
        self, agent_id: str, consumer: str, entry_ids: Sequence[EntryId]
    ) -> list[EntryId]:
        if not entry_ids:
            return []
        return [_s(x) for x in await self._fenced("renew", agent_id, consumer, entry_ids)]

    async def release(
        self, agent_id: str, consumer: str, entry_id: EntryId, idle: float, uncount: bool = False
    ) -> None:
        mode = "uncount" if uncount else "release"
        await self._fenced(mode, agent_id, consumer, [entry_id], idle)

    async def reclaim(
        self, agent_id: str, consumer: str, s: BusSettings, count: int
    ) -> list[Delivery]:
        cursor = self._cursors.get(agent_id, "0-0")
        flat = await self._pipe.script(
            scripts.RECLAIM,
            [self.keys.inbox(agent_id), self.keys.dlq(agent_id)],
            [GROUP, consumer, _ms(s.lease, 0), cursor, count, s.max_deliveries, s.dlq_maxlen],
        )
        self._cursors[agent_id] = flat[0]
        return [_delivery(flat[i], flat[i + 2], int(flat[i + 1])) for i in range(1, len(flat), 3)]

    async def dead_letter(
        self, agent_id: str, consumer: str, delivery: Delivery, reason: str, *, dlq_maxlen: int
    ) -> None:
        await self._pipe.script(
            scripts.DEAD_LETTER,
            [self.keys.inbox(agent_id), self.keys.dlq(agent_id)],
            [GROUP, consumer, delivery.entry_id, delivery.blob(), reason, dlq_maxlen],
        )

    async def dead_letters(
        self, agent_id: str, count: int = 100, *, newest: bool = False
    ) -> list[DeadLetter]:
        key, r = self.keys.dlq(agent_id), self.client
        rows: Any = await (r.xrevrange(key, count=count) if newest else r.xrange(key, count=count))
        return [
            DeadLetter(
                _s(eid), _s(f.get(b"reason", b"")), _s(f.get(b"consumer", b"")), f.get(FIELD, b"")
            )
            for eid, f in rows
        ]

    async def _group(self, key: str | bytes) -> dict[str, Any] | None:
        """``XINFO GROUPS`` of the inbox's group (None: no inbox or no group yet)."""
        try:
            groups: Any = await self.client.xinfo_groups(key)
        except rexc.ResponseError as e:
            if "no such key" in str(e):
                return None
            raise
        return next((g for g in groups if _s(g["name"]) == GROUP), None)

    async def trim(self, agent_id: str) -> int:
        """Drop entries below both the oldest pending one and the last delivered one: only
        acknowledged entries go (entries below them never become pending again)."""
        key = self.keys.inbox(agent_id)
        group = await self._group(key)
        if group is None:
            return 0
        pending: Any = await self.client.xpending(key, GROUP)  # pending ids <= last delivered
        threshold = _s(pending["min"] if pending["pending"] else group["last-delivered-id"])
        return int(await self.client.xtrim(key, minid=threshold, approximate=True))

    async def inbox_stats(self) -> list[InboxStats]:
        """Per inbox (found with ``SCAN``): stored, pending, unread entries and dead letters."""
        prefix, r, out = self.keys.inbox(""), self.client, []
        async for key in r.scan_iter(match=prefix + "*", count=500, _type="stream"):
            agent_id = _s(key)[len(prefix) :]
            group = await self._group(key)
            if group is None:
                continue
            lag = group.get("lag")
            if not isinstance(lag, int):  # Redis cannot tell after deletions: count
                after = "(" + _s(group["last-delivered-id"])
                lag = len(await r.xrange(key, after, "+", count=100_000) or ())
            length, dead = await self._pipe.run([("XLEN", key), ("XLEN", self.keys.dlq(agent_id))])
            out.append(InboxStats(agent_id, int(length), int(group["pending"]), int(dead), lag))
        return sorted(out, key=lambda s: s.agent_id)

    async def reclaim_orphans(
        self, agent_id: str, consumer: str, s: BusSettings, count: int
    ) -> Orphans:
        keys = [self.keys.inbox(agent_id), self.keys.dlq(agent_id), self.keys.registry]
        args = [GROUP, agent_id, consumer, _ms(s.lease, 0), s.max_deliveries, s.dlq_maxlen, count]
        args.append(_ms(max(s.lease, HANDBACK_IDLE)))
        try:
            released, dead, holders = await self._pipe.script(scripts.ORPHANS, keys, args)
        except rexc.ResponseError as e:
            if "NOGROUP" not in str(e):
                raise
            return Orphans([], [], [])
        return Orphans([_s(x) for x in released], [_s(x) for x in dead], [_s(x) for x in holders])

    async def commit_reply(
        self, agent_id: str, consumer: str, entry_id: EntryId | None, reply: Envelope, *, ttl: float
    ) -> CommitResult:
        msg = reply.message
        if msg.correlation_id is None or not msg.reply_to:
            raise ValueError("a reply needs correlation_id and reply_to")
        keys = [
            self.keys.inbox(agent_id),
            self.keys.reply(msg.correlation_id),
            self.keys.replies(msg.reply_to),
        ]
        eid = "" if entry_id is None else entry_id
        result = await self._pipe.script(
            scripts.COMMIT, keys, [GROUP, consumer, eid, reply.blob(), _ms(ttl)]
        )
        return {1: CommitResult.COMMITTED, 0: CommitResult.DUPLICATE}.get(
            int(result), CommitResult.LEASE_LOST
        )

    async def read_replies(
        self, reply_to: str, *, block: float, send: Sequence[Envelope] = ()
    ) -> list[Envelope]:
        key = self.keys.replies(reply_to)
        commands: list[Sequence[Any]] = [
            ("XADD", self.keys.inbox(e.message.target_id), "*", FIELD, e.blob()) for e in send
        ]
        cursor, n = self._replies.get(reply_to, ("0-0", 0))
        if n >= 1000:  # trim what was read, with this read (the last one did not wait for it)
            commands.append(("XTRIM", key, "MINID", "~", cursor))
            n = 0
        wait = ("BLOCK", _ms(block)) if block > 0 else ()
        commands.append(("XREAD", "COUNT", 1000, *wait, "STREAMS", key, cursor))
        *done, got = await self._exchange(key, block, commands)
        for reply in (*done, got):
            if isinstance(reply, Exception):
                raise reply
        out, last = [], None
        for _, entries in _streams(got):
            for eid, fields in entries:
                last = eid
                with contextlib.suppress(WireError):
                    out.append(Envelope.parse(_field(fields)))
        self._replies[reply_to] = (cursor if last is None else last, n + len(out))
        return out

    async def get_reply(self, request_id: str) -> Envelope | None:
        blob: Any = await self._pipe.call("GET", self.keys.reply(request_id))
        with contextlib.suppress(WireError):
            return None if blob is None else Envelope.parse(blob)
        return None

    async def drop_replies(self, reply_to: str) -> None:
        await self._drop_reader(self.keys.replies(reply_to))
        await self._pipe.call("DEL", self.keys.replies(reply_to))
        self._replies.pop(reply_to, None)

    async def first_seen(
        self, agent_id: str, items: Sequence[tuple[str, EntryId]], *, ttl: float
    ) -> list[bool]:
        if not items:
            return []
        args: list[Any] = [self.keys.seen(agent_id, ""), _ms(ttl)]
        for message_id, entry_id in items:
            args += (message_id, entry_id)
        return [bool(f) for f in await self._pipe.script(scripts.FIRST_SEEN, [], args)]

    async def load_state(self, agent_id: str) -> dict[str, str]:
        raw: Any = await self.client.hgetall(self.keys.state(agent_id))
        return {_s(k): _s(v) for k, v in raw.items()}

    async def save_state(self, agent_id: str, fields: Mapping[str, str]) -> None:
        if fields:
            await self.client.hset(self.keys.state(agent_id), mapping=dict(fields))  # type: ignore[arg-type]

    async def clear_state(self, agent_id: str) -> None:
        await self.client.delete(self.keys.state(agent_id))
