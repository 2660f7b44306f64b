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
from collections.abc import Callable, Coroutine, Sequence
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
    WireError,
)
from massgen.mas.inbox import Inbox
from massgen.mas.memory import MemoryHub
from massgen.mas.message import AgentMessage, IdFactory, MessageKind, Signer, encode
from massgen.mas.transport import (
    DEFAULT_PREFIX,
    AgentRecord,
    AgentStatus,
    BusSettings,
    CommitResult,
    Envelope,
    Lifecycle,
    Transport,
    cancel_and_wait,
    resolve_transport,
)

if TYPE_CHECKING:
    from massgen.mas.gateway import GatewayService

log = logging.getLogger(__name__)


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


class Agent(Inbox, Lifecycle):
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
        self._init_inbox()
        self._state_model = state_model
        self._state: dict[str, Any] | BaseModel = state_model() if state_model else {}
        self._new_id = IdFactory()
        self._started = 0.0
        self._tasks: set[asyncio.Task[None]] = set()
        self._waiting: dict[str, tuple[asyncio.Future[AgentMessage], str]] = {}
        self._reply_task: asyncio.Task[None] | None = None
        self._publishing = asyncio.Lock()  # the last record written is the newest
        self.beats, self.last_beat = 0, 0.0  # heartbeats sent; when the record was last renewed

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
        for step in (self._heartbeat, self._fetch, self._ack, self._lease):
            name = step.__name__.lstrip("_")
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
        if self._reply_task is None or self._reply_task.done():
            self._reply_task = self._spawn(self._reply_loop(), "replies")
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
                self._outbox_wake.set()  # an idle reply loop reads again: a reply is due
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
            self.last_beat = time.time()

    async def _heartbeat(self) -> None:
        s = self.settings
        await asyncio.sleep(s.heartbeat_interval)
        alive = await self._transport.heartbeat(
            self.id, self.instance_id, ttl=s.heartbeat_ttl, retention=s.dead_retention
        )
        self.beats, self.last_beat = self.beats + 1, time.time()
        if not alive:
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


def agents_from_records(records: Sequence[AgentRecord]) -> list[dict[str, Any]]:
    """One dict per agent id, as :meth:`Agent.discover` returns them (oldest replica first)."""
    grouped: dict[str, list[AgentRecord]] = {}
    for r in records:
        grouped.setdefault(r.id, []).append(r)
    out = []
    for agent_id, recs in sorted(grouped.items()):
        recs.sort(key=lambda r: r.started)
        first = recs[0]
        instances = [
            {"instance_id": r.instance_id, "host": r.host, "pid": r.pid, "started": r.started}
            | {"expires": r.expires}
            for r in recs
        ]
        out.append(
            {"id": agent_id, "capabilities": list(first.capabilities)}
            | {"metadata": dict(first.metadata), "host": first.host, "pid": first.pid}
            | {"started": first.started, "status": first.status.value, "replicas": len(recs)}
            | {"instances": instances}
        )
    return out
