"""The receiving half of an agent: fetch, check, handle, acknowledge, renew and reclaim (at
least once: after a crash a message is handled again, by this agent or a replica)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from massgen.errors import MassGenError, TransportError
from massgen.mas.message import AgentMessage, MessageKind, Signer, Verdict, same_secret
from massgen.mas.transport import (
    AgentRecord,
    AgentStatus,
    BusSettings,
    CommitResult,
    Delivery,
    EntryId,
    Envelope,
    Transport,
)

log = logging.getLogger("massgen.mas.agent")

_RETRY_PAUSE = 0.2  # after a transport error in a background loop (the client already retried)


class Inbox:
    """Background loops an :class:`~massgen.mas.agent.Agent` runs while started."""

    id: str
    instance_id: str
    settings: BusSettings
    concurrency: int
    status: AgentStatus
    _transport: Transport
    _signer: Signer | None
    _waiting: dict[str, tuple[asyncio.Future[AgentMessage], str]]
    on_message: Callable[[AgentMessage], Awaitable[None]]
    _commit: Callable[[AgentMessage, dict[str, Any], str | None], Awaitable[CommitResult]]

    def _init_inbox(self) -> None:
        self._handed_back: set[EntryId] = set()  # logged once each
        self._defer_until = 0.0  # loop time: take no work before (see _hand_back)
        self._ready: deque[Delivery] = deque()  # admitted, waiting for a worker
        self._idle: deque[asyncio.Future[None]] = deque()  # workers waiting for work
        self._inflight: dict[EntryId, Delivery] = {}
        self._room = asyncio.Event()
        self._active = 0
        self._progress = asyncio.Event()
        self._acks: list[EntryId] = []
        self._answered: set[EntryId] = set()  # requests whose reply commit acknowledged them
        self._ack_wake = asyncio.Event()
        self._reclaim_wake = asyncio.Event()
        self._outbox: list[tuple[Envelope, asyncio.Future[None]]] = []  # see _reply_loop
        self._outbox_wake = asyncio.Event()
        self._reply_idle = asyncio.Event()
        self._since_trim = 0
        self._next_reclaim = 0.0  # loop time

    async def _forever(self, step: Callable[[], Awaitable[None]], what: str) -> None:
        while True:
            try:
                await step()
            except TransportError as e:
                log.warning("agent %s: %s failed, retrying: %s", self.id, what, e)
                await asyncio.sleep(_RETRY_PAUSE)

    async def _fetch(self) -> None:
        s = self.settings
        defer = self._defer_until - asyncio.get_running_loop().time()
        room = max(s.batch, self.concurrency) - len(self._inflight)
        if defer > 0:
            await asyncio.sleep(defer)  # leave new work to replicas that can verify it
        elif room <= 0:
            self._room.clear()
            await self._room.wait()
        elif got := await self._transport.fetch(
            self.id, self.instance_id, count=min(s.batch, room), block=s.block
        ):
            await self._admit(got)
            await asyncio.sleep(0)  # let handlers start before the next blocking read

    async def _admit(self, deliveries: list[Delivery]) -> None:
        """Check signature, freshness and replay; queue what passes."""
        signer, inflight, me, reply = self._signer, self._inflight, self.id, MessageKind.REPLY
        accepted: list[Delivery] = []
        for d in deliveries:
            if d.entry_id in inflight:
                continue  # our own work, reclaimed while we still run it
            env = d.envelope
            msg = env.message if env else None
            if signer is None and msg and msg.target_id == me and msg.kind is not reply:
                inflight[d.entry_id] = d  # the common case, without a call per message
                accepted.append(d)
                continue
            verdict = self._verdict(d, signer)
            if verdict is Verdict.OK:
                accepted.append(d)
            else:
                await self._refuse(d, verdict)
        if signer is not None and accepted:
            lag = max(0.0, time.time() - min(d.enqueued_at for d in accepted))
            items = [(d.envelope.message.id, d.entry_id) for d in accepted if d.envelope]
            firsts = await self._transport.first_seen(me, items, ttl=2 * signer.window + lag)
            for d, first in zip(list(accepted), firsts, strict=True):
                if not first:
                    accepted.remove(d)
                    await self._refuse(d, Verdict.REPLAYED)
            for d in accepted:
                inflight[d.entry_id] = d
        if accepted:
            self._ready.extend(accepted)
            self._wake_workers(len(accepted))

    def _verdict(self, d: Delivery, signer: Signer | None) -> Verdict:
        env = d.envelope
        if env is None:
            return Verdict.MALFORMED
        msg = env.message
        if msg.target_id != self.id or msg.kind is MessageKind.REPLY:
            return Verdict.WRONG_TARGET
        if signer is None:
            return Verdict.OK
        verdict = signer.verify(env.signed_body(), env.mac)
        if verdict is Verdict.OK and not signer.fresh(msg.created_at, d.enqueued_at):
            return Verdict.STALE
        return verdict

    async def _refuse(self, d: Delivery, verdict: Verdict) -> None:
        if verdict in (Verdict.BAD_MAC, Verdict.UNSIGNED) and await self._hand_back(d, verdict):
            return
        problem = f" ({d.problem})" if d.problem else ""
        log.warning(f"agent {self.id} refused {_what(d)}: {verdict.value}{problem}")
        reason, s = f"refused: {verdict.value}", self.settings
        await self._transport.dead_letter(
            self.id, self.instance_id, d, reason, dlq_maxlen=s.dlq_maxlen
        )

    async def _hand_back(self, d: Delivery, verdict: Verdict) -> bool:
        """Leave a message we cannot verify to a live replica that signs otherwise: released
        uncounted, and we take no work for one reclaim interval; False if there is none."""
        _, mismatched = await self._peers()
        others = [f"{r.instance_id}@{r.host}/{r.pid}" for r in mismatched if r.id == self.id]
        if not others:
            return False
        s = self.settings
        await self._transport.release(self.id, self.instance_id, d.entry_id, s.lease, True)
        self._defer_until = asyncio.get_running_loop().time() + s.reclaim_every
        if d.entry_id not in self._handed_back:
            if len(self._handed_back) > 10_000:
                self._handed_back.clear()
            self._handed_back.add(d.entry_id)
            log.error(
                f"agent {self.id} cannot verify {_what(d)} ({verdict.value}): left for "
                f"replica(s) {', '.join(others)}, which sign with another secret; this "
                "instance's secret differs from theirs"
            )
        return True

    async def _peers(self) -> tuple[list[AgentRecord], list[AgentRecord]]:
        """Other live instances, and those of them signing otherwise (they refuse each other)."""
        records = [r for r in await self._transport.discover() if r.instance_id != self.instance_id]
        return records, [
            r for r in records if not same_secret(self._signer, r.instance_id, r.proof)
        ]

    def _wake_workers(self, n: int) -> None:
        """Wake at most ``n`` idle workers (one per message, not all)."""
        while n > 0 and self._idle:
            waiter = self._idle.popleft()
            if not waiter.done():  # a cancelled worker leaves its waiter behind
                waiter.set_result(None)
                n -= 1

    async def _worker(self) -> None:
        ready, idle, answered = self._ready, self._idle, self._answered
        loop = asyncio.get_running_loop()
        me = asyncio.current_task()
        assert me is not None
        while True:
            if not ready:
                waiter: asyncio.Future[None] = loop.create_future()
                idle.append(waiter)
                await waiter
                continue
            self._active += 1
            try:
                while ready:  # a run of messages without re-entering the outer loop
                    d = ready.popleft()
                    assert d.envelope is not None
                    msg = d.envelope.message
                    msg.attempt = d.attempt
                    msg.entry_id = eid = d.entry_id
                    msg.context = self
                    try:
                        await self.on_message(msg)
                    except (KeyboardInterrupt, SystemExit):
                        raise  # they stop the event loop, as anywhere in asyncio
                    except BaseException as e:
                        # our stop's cancellation goes through; any other exception (a
                        # handler's own CancelledError too) fails this message only
                        if isinstance(e, asyncio.CancelledError) and me.cancelling():
                            raise
                        await self._failed(d, e)
                        continue
                    if eid in answered:
                        answered.discard(eid)  # the reply's commit acknowledged it
                    else:
                        self._acks.append(eid)
                        self._ack_wake.set()
            finally:
                self._active -= 1
                if not self._active:
                    self._progress.set()

    async def _failed(self, d: Delivery, error: BaseException) -> None:
        assert d.envelope is not None
        msg, s = d.envelope.message, self.settings
        base = "" if isinstance(error, Exception) else " (a BaseException; handling goes on)"
        log.warning(
            f"agent {self.id}: handler failed on message {msg.id} (delivery {d.attempt} of "
            f"{s.max_deliveries}): {type(error).__name__}: {error}{base}"
        )
        try:
            if d.attempt >= s.max_deliveries:
                reason = f"{type(error).__name__}: {error}"
                if msg.kind is MessageKind.REQUEST and msg.reply_to:
                    await self._commit(msg, {}, reason)
                await self._transport.dead_letter(
                    self.id, self.instance_id, d, reason, dlq_maxlen=s.dlq_maxlen
                )
            else:
                idle = s.lease - s.retry_delay
                await self._transport.release(self.id, self.instance_id, d.entry_id, idle)
                asyncio.get_running_loop().call_later(s.retry_delay, self._reclaim_wake.set)
        except TransportError as e:
            log.warning("agent %s: could not give back message %s: %s", self.id, msg.id, e)
        finally:
            self._answered.discard(d.entry_id)
            self._inflight.pop(d.entry_id, None)
            self._room.set()

    async def _ack(self) -> None:
        await self._ack_wake.wait()
        self._ack_wake.clear()
        await self._flush_acks()

    async def _flush_acks(self) -> None:
        if not self._acks:
            return
        ids, self._acks = self._acks, []
        held = [self._inflight.pop(eid, None) for eid in ids]  # no renewals while acking
        self._room.set()  # the next read need not wait for this ack's round trip
        try:
            await self._transport.ack(self.id, self.instance_id, ids)
        except BaseException:
            self._acks[:0] = ids
            self._inflight.update((eid, d) for eid, d in zip(ids, held, strict=True) if d)
            self._ack_wake.set()
            raise
        self._since_trim += len(ids)
        if self._since_trim >= self.settings.trim_every:
            self._since_trim = 0
            await self._transport.trim(self.id)

    async def _release_all(self) -> None:
        """Give back unfinished work at once, so a replica need not wait for the lease."""
        for eid in list(self._inflight):
            with contextlib.suppress(MassGenError):
                await self._transport.release(self.id, self.instance_id, eid, self.settings.lease)
        self._inflight.clear()

    async def _lease(self) -> None:
        """Renew the leases of work in flight; reclaim work whose holder went silent."""
        s, loop = self.settings, asyncio.get_running_loop()
        with contextlib.suppress(TimeoutError):
            wait = min(s.lease / 3, self._next_reclaim - loop.time())
            async with asyncio.timeout(max(0.0, wait)):
                await self._reclaim_wake.wait()
        if self._inflight:
            ids = list(self._inflight)
            if lost := await self._transport.renew(self.id, self.instance_id, ids):
                log.warning(
                    f"agent {self.id} lost the lease of {len(lost)} message(s); their "
                    "results will be refused"
                )
        due = self._reclaim_wake.is_set() or loop.time() >= self._next_reclaim
        # not while stopping, nor while what we handed back waits for a replica
        if due and self.status is AgentStatus.RUNNING and loop.time() >= self._defer_until:
            self._reclaim_wake.clear()
            self._next_reclaim = loop.time() + s.reclaim_every
            room = max(s.batch, self.concurrency) - len(self._inflight)
            if room > 0 and (
                got := await self._transport.reclaim(self.id, self.instance_id, s, room)
            ):
                log.info("agent %s reclaimed %d message(s)", self.id, len(got))
                await self._admit(got)

    async def _reply_loop(self) -> None:
        """Hand each reply to the request waiting for it. Idle when none waits: the next
        request's message then goes out with the read (``_outbox``), in one round trip."""
        try:
            while True:
                if not self._waiting and not self._outbox:
                    self._reply_idle.set()
                    await self._outbox_wake.wait()
                self._reply_idle.clear()
                self._outbox_wake.clear()
                sends, self._outbox = self._outbox, []
                try:
                    replies = await self._transport.read_replies(
                        self.instance_id,
                        block=self.settings.block,
                        send=[env for env, _ in sends],
                    )
                except TransportError as e:
                    for _, sent in sends:
                        if not sent.done():
                            sent.set_exception(e)
                            sent.exception()  # the requester sees it; nobody else logs it
                    log.warning("agent %s: reading replies failed, retrying: %s", self.id, e)
                    await asyncio.sleep(_RETRY_PAUSE)
                    continue
                for _, sent in sends:
                    if not sent.done():
                        sent.set_result(None)
                self._hand_replies(replies)
                if replies and self._waiting:
                    await asyncio.sleep(0)  # let the requesters resume before the next read
        finally:
            self._reply_idle.clear()
            for _, sent in self._outbox:
                sent.cancel()
            self._outbox = []

    def _hand_replies(self, replies: list[Envelope]) -> None:
        for env in replies:
            waiting = self._waiting.get(env.message.correlation_id or "")
            if waiting is None:
                continue  # a late duplicate, or a request we gave up on
            fut, target = waiting
            if not fut.done() and self._accept_reply(env, target):
                fut.set_result(env.message)
                del self._waiting[env.message.correlation_id or ""]  # idle at once if last

    def _accept_reply(self, env: Envelope, target: str) -> bool:
        signer, msg = self._signer, env.message
        verdict = signer.verify(env.signed_body(), env.mac) if signer else Verdict.OK
        if verdict is not Verdict.OK:
            why = f" claiming sender {msg.sender_id!r}: {verdict.value}"
        elif msg.sender_id != target:
            why = f": sent by {msg.sender_id!r}, asked {target!r}"
        else:
            return True
        log.warning(f"agent {self.id} refused reply {msg.id}{why}")
        return False


def _what(d: Delivery) -> str:
    msg = d.envelope.message if d.envelope else None
    return (
        f"message {msg.id if msg else d.entry_id} claiming sender {msg.sender_id if msg else '?'!r}"
    )
