"""A peer on the bus: subclass :class:`Agent` and override ``on_message``. A message is
acknowledged only after your handler returns, so after a crash it is handled again."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import secrets
import socket
import time
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel

from massgen.errors import (
    AgentIdTaken,
    GatewayRejected,
    MassGenError,
    RemoteError,
    RequestTimeout,
    SecretMismatch,
    StateError,
    TransportError,
    WireError,
)
from massgen.mas.keys import DEFAULT_PREFIX
from massgen.mas.memory import MemoryHub
from massgen.mas.message import AgentMessage, IdFactory, MessageKind, encode
from massgen.mas.signing import Signer, Verdict, same_secret
from massgen.mas.transport import (
    AgentRecord,
    AgentStatus,
    BusSettings,
    CommitResult,
    Delivery,
    EntryId,
    Envelope,
    Lifecycle,
    Transport,
    cancel_and_wait,
    resolve_transport,
)

if TYPE_CHECKING:
    from massgen.mas.gateway import GatewayService

log = logging.getLogger(__name__)

_RETRY_PAUSE = 0.2  # after a transport error in a background loop (the client already retried)


def _dump(key: str, value: Any) -> str:
    try:
        text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    except (TypeError, ValueError) as e:
        raise StateError(
            f"state field {key!r}: {type(value).__name__} is not JSON; "
            "use a state_model for richer types"
        ) from e
    if json.loads(text) != value:
        raise StateError(
            f"state field {key!r} would not survive storage unchanged (tuple, set or "
            "non-string dict key?); use lists and string keys, or a state_model"
        )
    return text


# Replies being committed in this process, by request id: a requester here waits for the
# commit to return, so ``request()`` never resumes before the handler's ``reply()`` returned.
_COMMITTING: dict[str, asyncio.Future[None]] = {}


class Agent(Lifecycle):
    """An agent on Redis at ``redis_url`` (else ``$MASSGEN_REDIS_URL``, else localhost), or
    on the in-process bus with ``transport=MemoryTransport()`` or ``hub=MemoryHub()``.

    ``replica=True`` lets processes share one id and inbox; ``secret`` (or
    ``$MASSGEN_SECRET``) signs messages and refuses unsigned, forged, stale and replayed ones;
    ``use_gateway=True`` routes through :meth:`set_gateway`'s gateway (``gateway_url`` is the
    seed's, unused); ``strict_secret`` makes a secret mismatch with every live peer fail
    ``start()`` (``check_secret=False`` skips the check); ``concurrency`` handlers at once.
    """

    def __init__(
        self,
        agent_id: str,
        capabilities: Sequence[str] | None = None,
        redis_url: str | None = None,
        state_model: type[BaseModel] | None = None,
        use_gateway: bool = False,
        gateway_url: str | None = None,
        *,
        transport: Transport | None = None,
        hub: MemoryHub | None = None,
        metadata: dict[str, Any] | None = None,
        replica: bool = False,
        secret: str | bytes | None = None,
        prefix: str = DEFAULT_PREFIX,
        concurrency: int = 16,
        settings: BusSettings | None = None,
        strict_secret: bool = False,
        check_secret: bool = True,
    ) -> None:
        if not agent_id:
            raise ValueError("an agent needs a non-empty id")
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.id = agent_id
        self.capabilities = list(capabilities or [])
        self.replica = replica
        self.concurrency = concurrency
        self.settings = settings or BusSettings()
        self.instance_id = os.urandom(8).hex()  # 16 hex: the registry's scripts rely on it
        self.status = AgentStatus.CREATED
        self._metadata = dict(metadata or {})
        self._transport, self._owns_transport = resolve_transport(
            redis_url, transport=transport, hub=hub, prefix=prefix
        )
        self._signer = Signer.resolve(secret)
        self.strict_secret = strict_secret
        self.check_secret = check_secret or strict_secret
        self.use_gateway = use_gateway
        self.gateway_url = gateway_url or redis_url
        self._gateway: GatewayService | None = None
        self._token: str | None = None
        self._transport_ready = asyncio.Event()
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
        self._state_model = state_model
        self._state: dict[str, Any] | BaseModel = state_model() if state_model else {}
        self._new_id = IdFactory()
        self._started = 0.0
        self._tasks: set[asyncio.Task[None]] = set()
        self._waiting: dict[str, tuple[asyncio.Future[AgentMessage], str]] = {}
        self._reply_task: asyncio.Task[None] | None = None
        self._publishing = asyncio.Lock()  # the last record written is the newest

    async def on_start(self) -> None:
        """Called once registered with its state loaded, before messages flow."""

    async def on_stop(self) -> None:
        """Called after the last message was handled, before leaving the registry."""

    async def on_message(self, message: AgentMessage) -> None:
        """Handle one message. Raise to have it redelivered (up to ``max_deliveries``)."""
        log.debug("agent %s ignored message %s (no on_message)", self.id, message.id)

    def get_metadata(self) -> dict[str, Any]:
        return dict(self._metadata)

    @property
    def state(self) -> Any:
        """A dict, or a ``state_model`` instance; change it with :meth:`update_state`."""
        return self._state

    @property
    def token(self) -> str | None:
        """A secret new at each ``start()`` that a gateway checks (Redis holds its SHA-256)."""
        return self._token

    @property
    def transport(self) -> Transport:
        return self._transport

    @property
    def where(self) -> str:
        return self._transport.where

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.id!r}, status={self.status.value}, on={self.where!r})"

    async def start(self) -> None:
        if self.status is not AgentStatus.CREATED and self.status is not AgentStatus.STOPPED:
            raise RuntimeError(f"agent {self.id!r} is already {self.status.value}")
        self.status = AgentStatus.STARTING
        t = self._transport
        try:
            if self._owns_transport:
                await t.connect()
            await t.ensure_inbox(self.id)
            self._started = time.time()
            self._token = secrets.token_urlsafe(32)
            await self._register()
            try:
                if self.check_secret:
                    await self._check_secret()
                data = {k: json.loads(v) for k, v in (await t.load_state(self.id)).items()}
                model = self._state_model
                self._state = data if model is None else model.model_validate(data)
                # sending may begin, in on_start too (as with the seed)
                self._transport_ready.set()
                await self.on_start()
            except BaseException:
                self._transport_ready.clear()
                await t.deregister(self.id, self.instance_id)
                raise
        except BaseException:
            self.status = AgentStatus.STOPPED
            if self._owns_transport:
                await t.close()
            raise
        for name, step in [
            ("heartbeat", self._heartbeat),
            ("fetch", self._fetch),
            ("ack", self._ack),
            ("lease", self._upkeep),
        ]:
            self._spawn(self._forever(step, name), name)
        for i in range(self.concurrency):
            self._spawn(self._worker(), f"worker-{i}")
        self.status = AgentStatus.RUNNING
        log.info("agent %s started on %s (instance %s)", self.id, self.where, self.instance_id)

    async def wait_transport_ready(self, timeout: float | None = None) -> None:  # noqa: ASYNC109 - the seed API
        """Wait until the agent may send (set before ``on_start``, cleared by ``stop()``), for
        code that starts it in another task; ``TimeoutError`` after ``timeout`` seconds."""
        async with asyncio.timeout(timeout):
            await self._transport_ready.wait()

    async def secret_mismatches(self) -> list[AgentRecord]:
        """Live instances that sign otherwise than this agent (they refuse each other)."""
        return (await self._peers())[1]

    async def _check_secret(self) -> None:
        records, bad = await self._peers()
        if not bad:
            return
        names = [f"{r.id}/{r.instance_id}@{r.host}/{r.pid}" for r in bad]
        if self.strict_secret and len(bad) == len(records):
            raise SecretMismatch(self.id, names)
        log.error(
            f"agent {self.id}: {len(bad)} live agent instance(s) sign with another secret "
            f"than this one (or the reverse); their messages and ours will be refused: "
            + ", ".join(names)
        )

    async def stop(self) -> None:
        """Cancel handlers (after ``settings.drain_timeout``; their messages are delivered
        again), acknowledge, run ``on_stop``, leave the registry, disconnect."""
        if self.status is not AgentStatus.RUNNING:
            return
        self.status = AgentStatus.STOPPING
        self._transport_ready.clear()
        t = self._transport
        await self._cancel(lambda task: task.get_name().endswith(":fetch"))
        # let running handlers finish, then give back what was fetched but never started
        if self.settings.drain_timeout > 0:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.settings.drain_timeout):
                    while self._ready or self._active:
                        self._progress.clear()
                        await self._progress.wait()
        await self._cancel(lambda task: task.get_name().split(":")[-1].startswith("worker"))
        await self._flush_acks()
        await self._release_all()
        await self._cancel(lambda task: True)  # the reply listener too
        try:
            await self.on_stop()
        finally:
            with contextlib.suppress(MassGenError):
                await t.deregister(self.id, self.instance_id)
                await t.drop_replies(self.instance_id)
            if self._owns_transport:
                await t.close()
            for fut, _ in self._waiting.values():
                fut.cancel()
            self.status = AgentStatus.STOPPED
            log.info("agent %s stopped", self.id)

    def set_gateway(self, gateway: GatewayService) -> None:
        """The gateway (you start and stop it) that checks messages with ``use_gateway``."""
        self._gateway = gateway

    async def _deliver(self, envelopes: list[Envelope]) -> None:
        if not self.use_gateway:
            await self._transport.send(envelopes)
            return
        gateway = self._gateway_for_sending()
        for env in envelopes:
            result = await gateway.handle_message(env.message, self._token or "", envelope=env)
            if not result.success:
                raise GatewayRejected(result)

    def _gateway_for_sending(self) -> GatewayService:
        if self._gateway is None:
            raise RuntimeError(
                "Gateway not configured. Use set_gateway() to configure gateway instance."
            )
        if self._token is None or not self._transport_ready.is_set():
            raise RuntimeError(f"agent {self.id!r} is {self.status.value}; start it first")
        return self._gateway

    async def send(self, target: str, payload: dict[str, Any]) -> None:
        """Store a message in ``target``'s inbox (it waits there for an offline target)."""
        await self._deliver([self._seal(self._message(target, payload, MessageKind.MESSAGE))])

    async def send_many(self, items: Sequence[tuple[str, dict[str, Any]]]) -> None:
        """Send many ``(target, payload)`` messages in one round trip."""
        await self._deliver(self._envelopes(items, MessageKind.MESSAGE))

    async def request(
        self,
        target: str,
        payload: dict[str, Any],
        timeout: float | None = 30.0,  # noqa: ASYNC109 - the seed API; we also fall back to the stored reply
        *,
        message_id: str | None = None,
    ) -> AgentMessage:
        """Ask ``target`` and return its reply (timeout: 30 seconds by default; ``None``: for ever).
        :class:`RequestTimeout` when none comes in time, :class:`RemoteError` when its
        handler failed every delivery; ``message_id`` (:meth:`new_message_id`) names it."""
        self._ensure_running()
        self._ensure_reply_listener()
        msg = self._message(target, payload, MessageKind.REQUEST, reply_to=self.instance_id)
        msg.id = message_id or msg.id
        fut: asyncio.Future[AgentMessage] = asyncio.get_running_loop().create_future()
        self._waiting[msg.id] = (fut, target)
        try:
            env, sent = self._seal(msg), None
            if self._reply_idle.is_set() and not self.use_gateway:
                sent = asyncio.get_running_loop().create_future()  # stored with the next read
                self._outbox.append((env, sent))
                self._outbox_wake.set()
            else:
                await self._deliver([env])
            try:
                async with asyncio.timeout(timeout):
                    if sent is not None:
                        await sent
                    reply = await fut
                committing = _COMMITTING.get(msg.id)
                if committing is not None:  # the answering agent runs in this process
                    await asyncio.shield(committing)
            except TimeoutError:
                stored = await self._transport.get_reply(msg.id)
                if stored is None or not self._accept_reply(stored, target):
                    raise RequestTimeout(f"no reply from {target!r} within {timeout:g}s") from None
                reply = stored.message
        finally:
            self._waiting.pop(msg.id, None)
        if reply.error is not None:
            raise RemoteError(target, reply.error)
        return reply

    @property
    def signs(self) -> bool:
        return self._signer is not None

    def new_message_id(self) -> str:
        return self._new_id()

    async def dead_lettered(self, target: str, message_id: str, *, look: int = 100) -> str | None:
        """Why ``target`` dead-lettered ``message_id`` (e.g. ``refused: unsigned``), or None
        when it is not among the newest ``look`` dead letters there."""
        needle = message_id.encode()
        for letter in await self._transport.dead_letters(target, look, newest=True):
            if needle not in letter.raw:
                continue
            with contextlib.suppress(WireError):
                if Envelope.parse(letter.raw).message.id == message_id:
                    return letter.reason
        return None

    async def broadcast(
        self, payload: dict[str, Any], capabilities: Sequence[str] | None = None
    ) -> list[str]:
        """Send to every other live agent having all ``capabilities``; return their ids."""
        records = await self._transport.discover(capabilities or ())
        targets = sorted({r.id for r in records} - {self.id})
        await self._deliver(self._envelopes([(t, payload) for t in targets], MessageKind.BROADCAST))
        return targets

    async def discover(
        self,
        capabilities: Sequence[str] | None = None,
        *,
        match: Literal["any", "all"] = "any",
    ) -> list[dict[str, Any]]:
        """Live agents having any (``match="all"``: every one) of ``capabilities``, one dict
        per agent id (see :func:`agents_from_records`)."""
        if match not in ("any", "all"):
            raise ValueError(f"match must be 'any' or 'all', not {match!r}")
        want = set(capabilities or ())
        records = await self._transport.discover((capabilities or ()) if match == "all" else ())
        if match == "any" and want:
            records = [r for r in records if not want.isdisjoint(r.capabilities)]
        return agents_from_records(records)

    async def publish_record(self) -> None:
        """Write the registry record again, so discovery shows what :meth:`get_metadata`
        returns now (allowed while stopping: finishing handlers may report)."""
        if self.status is not AgentStatus.STOPPING:
            self._ensure_running()
        await self._register()

    async def _register(self) -> None:
        s = self.settings
        async with self._publishing:
            await self._transport.register(
                self._record(), ttl=s.heartbeat_ttl, retention=s.dead_retention
            )

    async def _heartbeat(self) -> None:
        s = self.settings
        await asyncio.sleep(s.heartbeat_interval)
        if not await self._transport.heartbeat(
            self.id, self.instance_id, ttl=s.heartbeat_ttl, retention=s.dead_retention
        ):
            log.warning("agent %s was declared dead; registering again", self.id)
            try:
                await self._register()
            except AgentIdTaken as e:
                log.error("agent %s cannot register again: %s", self.id, e)

    async def update_state(self, changes: dict[str, Any]) -> None:
        """Change and persist some state fields (each keeps its exact type)."""
        model = self._state_model
        if model is None:
            assert isinstance(self._state, dict)
            fields = {k: _dump(k, v) for k, v in changes.items()}
            self._state = {**self._state, **changes}
        else:
            assert isinstance(self._state, BaseModel)
            unknown = set(changes) - set(model.model_fields)
            if unknown:
                raise StateError(f"{model.__name__} has no field(s) {sorted(unknown)}")
            new = model.model_validate({**self._state.model_dump(), **changes})
            dumped = new.model_dump(mode="json")
            self._state = new
            fields = {k: json.dumps(dumped[k], separators=(",", ":")) for k in changes}
        await self._transport.save_state(self.id, fields)

    async def reset_state(self) -> None:
        """Back to ``{}`` or a fresh ``state_model()``, deleting what is stored."""
        self._ensure_running()
        await self._transport.clear_state(self.id)
        self._state = self._state_model() if self._state_model else {}

    async def reply_for(self, message: AgentMessage, payload: dict[str, Any]) -> bool:
        if not message.expects_reply:
            raise RuntimeError(
                f"cannot reply: message {message.id} ({message.kind.value} from "
                f"{message.sender_id!r}) does not have correlation ID; only messages sent with "
                f"request() can be replied to (use send({message.sender_id!r}, ...) instead)"
            )
        if self.use_gateway:  # a reply is a message to the requester: the gateway checks it
            probe = self._message(
                message.sender_id, payload, MessageKind.REPLY, correlation_id=message.id
            )
            result = await self._gateway_for_sending().check(
                probe, self._token or "", envelope=self._seal(probe)
            )
            if not result.success:
                raise GatewayRejected(result)
        return await self._commit(message, payload, None) is CommitResult.COMMITTED

    def _message(
        self, target: str, payload: dict[str, Any], kind: MessageKind, **fields: Any
    ) -> AgentMessage:
        return AgentMessage(
            id=self._new_id(),
            sender_id=self.id,
            target_id=target,
            payload=payload,
            kind=kind,
            created_at=time.time(),
            **fields,
        )

    def _envelopes(
        self, items: Sequence[tuple[str, dict[str, Any]]], kind: MessageKind
    ) -> list[Envelope]:
        """Messages of one call in one loop (one clock read): the bulk-send hot path."""
        sender, now = self.id, time.time()
        seal = Envelope if self._signer is None else self._seal
        return [
            seal(
                AgentMessage(
                    id=i, sender_id=sender, target_id=t, payload=p, kind=kind, created_at=now
                )
            )
            for i, (t, p) in zip(self._new_id.many(len(items)), items, strict=True)
        ]

    def _seal(self, msg: AgentMessage) -> Envelope:
        if self._signer is None:
            return Envelope(msg)
        body = encode(msg)
        return Envelope(msg, self._signer.sign(body), body)

    def _record(self) -> AgentRecord:
        return AgentRecord(
            id=self.id,
            instance_id=self.instance_id,
            capabilities=self.capabilities,
            metadata=self.get_metadata(),
            host=socket.gethostname(),
            pid=os.getpid(),
            started=self._started,
            replica=self.replica,
            proof=self._signer.proof(self.instance_id) if self._signer is not None else "",
            token_hash=hashlib.sha256(self._token.encode()).hexdigest() if self._token else "",
        )

    async def _commit(
        self, request: AgentMessage, payload: dict[str, Any], error: str | None
    ) -> CommitResult:
        fields = {"correlation_id": request.id, "reply_to": request.reply_to, "error": error}
        reply = self._seal(self._message(request.sender_id, payload, MessageKind.REPLY, **fields))
        committed = asyncio.get_running_loop().create_future()
        _COMMITTING[request.id] = committed
        try:
            result = await self._transport.commit_reply(
                self.id, self.instance_id, request.entry_id, reply, ttl=self.settings.reply_ttl
            )
        finally:
            if _COMMITTING.get(request.id) is committed:
                del _COMMITTING[request.id]
            committed.set_result(None)
        if result is not CommitResult.LEASE_LOST and request.entry_id is not None:
            # the commit acknowledged the request: no lease to keep, no ack to send
            self._answered.add(request.entry_id)
            self._inflight.pop(request.entry_id, None)
            self._room.set()
        if result is not CommitResult.COMMITTED:
            log.warning(f"agent {self.id}: reply to request {request.id} refused ({result.value})")
        return result

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        task = asyncio.create_task(coro, name=f"mas:{self.id}:{name}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _cancel(self, which: Callable[[asyncio.Task[None]], bool]) -> None:
        await cancel_and_wait([t for t in self._tasks if which(t)])

    def _ensure_running(self) -> None:
        if self.status is not AgentStatus.RUNNING:
            raise RuntimeError(f"agent {self.id!r} is {self.status.value}; start it first")

    def _ensure_reply_listener(self) -> None:
        if self._reply_task is None or self._reply_task.done():
            self._reply_task = self._spawn(self._reply_loop(), "replies")

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

    async def _upkeep(self) -> None:
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


def agents_from_records(records: Sequence[AgentRecord]) -> list[dict[str, Any]]:
    """One dict per agent id, as :meth:`Agent.discover` returns them (oldest replica first)."""
    grouped: dict[str, list[AgentRecord]] = {}
    for r in records:
        grouped.setdefault(r.id, []).append(r)
    out = []
    for agent_id, recs in sorted(grouped.items()):
        recs.sort(key=lambda r: r.started)
        first = recs[0]
        shared = first.model_dump(include={"capabilities", "metadata", "host", "pid", "started"})
        each = {"instance_id", "host", "pid", "started", "expires"}
        out.append(
            {"id": agent_id, **shared, "status": first.status.value, "replicas": len(recs)}
            | {"instances": [r.model_dump(include=each) for r in recs]}
        )
    return out


def _what(d: Delivery) -> str:
    msg = d.envelope.message if d.envelope else None
    return (
        f"message {msg.id if msg else d.entry_id} claiming sender {msg.sender_id if msg else '?'!r}"
    )
