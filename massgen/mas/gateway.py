"""Gateway mode, as the seed framework has it: agents made with ``use_gateway=True`` hand
each message and reply, with their token, to :meth:`GatewayService.handle_message`. It checks
the token (a live instance registered its SHA-256), the MAC (``features.message_signing``),
the permissions (none until granted: ``auth_manager().allow_bidirectional("a", "b")``) and
per-sender sliding-window rate limits, audits each decision (payloads as SHA-256) and stores
what passes in the target's inbox; a refusal raises :class:`GatewayRejected` at the sender.
Its state lives in Redis, shared by the gateways of several processes (docs/mas.md)."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import time
from collections.abc import Awaitable, Callable, Sequence
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from massgen.errors import ConfigError, GatewayRejected, TransportError
from massgen.mas.message import AgentMessage, Signer, Verdict
from massgen.mas.transport import DEFAULT_PREFIX, Envelope, Keys, Lifecycle, redis_transport

if TYPE_CHECKING:
    from massgen.mas.redis_transport import RedisTransport

log = logging.getLogger(__name__)

__all__ = [
    "AuthorizationManager",
    "FeaturesSettings",
    "GatewayDecision",
    "GatewayRejected",
    "GatewayResult",
    "GatewayService",
    "GatewaySettings",
    "RateLimitSettings",
    "RedisSettings",
]


class GatewayDecision(StrEnum):
    ALLOWED = "ALLOWED"
    AUTH_FAILED = "AUTH_FAILED"
    SIGNATURE_INVALID = "SIGNATURE_INVALID"
    AUTHZ_DENIED = "AUTHZ_DENIED"
    RATE_LIMITED = "RATE_LIMITED"
    ROUTING_FAILED = "ROUTING_FAILED"
    SERVICE_UNAVAILABLE = "SERVICE_UNAVAILABLE"


class GatewayResult(BaseModel):
    success: bool
    decision: str
    message: str | None = None
    latency_ms: float | None = None


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RedisSettings(_Section):
    url: str | None = None
    """``None``: ``$MASSGEN_REDIS_URL``, else ``redis://localhost:6379``."""
    prefix: str = DEFAULT_PREFIX


class RateLimitSettings(_Section):
    per_minute: int = Field(default=100, ge=1)
    per_hour: int = Field(default=1000, ge=1)


class FeaturesSettings(_Section):
    """Only ``message_signing`` is implemented; the others are a ConfigError at ``start()``."""

    message_signing: bool = False
    dlp: bool = False
    priority_queue: bool = False
    rbac: bool = False
    circuit_breaker: bool = False


class GatewaySettings(_Section):
    """The seed's shape: nested sections (or dicts for them)."""

    redis: RedisSettings = Field(default_factory=RedisSettings)
    rate_limit: RateLimitSettings = Field(default_factory=RateLimitSettings)
    features: FeaturesSettings = Field(default_factory=FeaturesSettings)
    secret: str | None = None
    """Checks signatures with ``features.message_signing`` (``None``: ``$MASSGEN_SECRET``)."""
    audit_maxlen: int = Field(default=100_000, ge=1)

    @classmethod
    def from_yaml(cls, file_path: str | Path) -> GatewaySettings:
        import yaml

        return cls.model_validate(yaml.safe_load(Path(file_path).read_text()) or {})


# KEYS: minute window, hour window. ARGV: now ms, member, per minute, per hour. Drops what left
# each window, refuses if either is full, else counts the message.
_RATE = """
local now = tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - 60000)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - 3600000)
local m = redis.call('ZCARD', KEYS[1])
if m >= tonumber(ARGV[3]) then return {0, 'minute', m} end
local h = redis.call('ZCARD', KEYS[2])
if h >= tonumber(ARGV[4]) then return {0, 'hour', h} end
redis.call('ZADD', KEYS[1], now, ARGV[2])
redis.call('ZADD', KEYS[2], now, ARGV[2])
redis.call('PEXPIRE', KEYS[1], 60000)
redis.call('PEXPIRE', KEYS[2], 3600000)
return {1, '', m + 1}
"""


def _s(x: Any) -> str:
    return x.decode() if isinstance(x, bytes) else str(x)


def _result(decision: GatewayDecision, text: str | None, ms: float | None = None) -> GatewayResult:
    ok = decision is GatewayDecision.ALLOWED
    return GatewayResult(success=ok, decision=decision, message=text, latency_ms=ms)


class GatewayService(Lifecycle):
    """Checks and routes the messages of agents in gateway mode (see the module doc)."""

    def __init__(
        self,
        settings: GatewaySettings | None = None,
        *,
        redis_url: str | None = None,
        prefix: str | None = None,
    ) -> None:
        s = settings or GatewaySettings()
        if redis_url is not None or prefix is not None:
            redis = RedisSettings(url=redis_url or s.redis.url, prefix=prefix or s.redis.prefix)
            s = s.model_copy(update={"redis": redis})
        self.settings = s
        self.keys = Keys(s.redis.prefix)
        self._transport: RedisTransport | None = None
        self._signer: Signer | None = None

    @property
    def running(self) -> bool:
        return self._transport is not None

    async def start(self) -> None:
        s = self.settings
        wanted = [name for name, on in s.features if on and name != "message_signing"]
        if wanted:
            raise ConfigError(
                f"gateway feature(s) {', '.join(wanted)} are not implemented in massgen.mas",
                key="features",
                hint="turn them off; docs/mas.md lists what the gateway checks",
            )
        if s.features.message_signing:
            self._signer = Signer.resolve(s.secret)
            if self._signer is None:
                raise ConfigError(
                    "message_signing needs the agents' secret",
                    key="secret",
                    hint="pass GatewaySettings(secret=...) or set MASSGEN_SECRET",
                )
        transport = redis_transport(s.redis.url, s.redis.prefix)
        await transport.connect()
        self._transport = transport
        log.info("mas gateway started on %s (prefix %s)", transport.where, s.redis.prefix)

    async def stop(self) -> None:
        transport, self._transport = self._transport, None  # checks refuse from here on
        if transport is not None:
            await transport.close()

    def _redis(self) -> Any:
        if self._transport is None:
            raise RuntimeError("Gateway not started")
        return self._transport.client

    async def handle_message(
        self,
        message: AgentMessage,
        token: str,
        signature: str | None = None,
        timestamp: float | None = None,
        nonce: str | None = None,
        *,
        envelope: Envelope | None = None,
    ) -> GatewayResult:
        """Check ``message`` and, if allowed, store it in the target's inbox. ``signature`` is
        the MAC of its wire form (``envelope`` carries both); ``timestamp`` and ``nonce`` are
        the seed's, unused: the inbox's time and the message id guard freshness and replays."""
        env = envelope or Envelope(message, signature)
        result = await self.check(message, token, envelope=env)
        if not result.success:
            return result
        started = time.perf_counter()
        try:
            assert self._transport is not None
            await self._transport.send([env])
        except TransportError as e:
            ms = (time.perf_counter() - started) * 1000 + (result.latency_ms or 0.0)
            await self._audit(message, GatewayDecision.ROUTING_FAILED, ms, ["routing_error"])
            return _result(GatewayDecision.ROUTING_FAILED, str(e), ms)
        ms = (time.perf_counter() - started) * 1000 + (result.latency_ms or 0.0)
        return _result(GatewayDecision.ALLOWED, "Message delivered", ms)

    async def check(
        self, message: AgentMessage, token: str, *, envelope: Envelope | None = None
    ) -> GatewayResult:
        """Every stage but routing (agents check their replies with it); audited."""
        started = time.perf_counter()
        if not self.running:
            return _result(GatewayDecision.SERVICE_UNAVAILABLE, "Gateway service not running")
        import redis.exceptions as rexc

        try:
            decision, reason = await self._decide(message, token, envelope)
        except rexc.RedisError as e:
            raise TransportError(f"gateway: Redis failed while checking a message: {e}") from e
        ms = (time.perf_counter() - started) * 1000
        allowed = decision is GatewayDecision.ALLOWED
        await self._audit(message, decision, ms, [] if allowed else [reason])
        if not allowed:
            log.warning(
                f"gateway refused message {message.id} from {message.sender_id!r} to "
                f"{message.target_id!r}: {decision.value} ({reason})"
            )
        return _result(decision, reason or None, ms)

    async def _decide(
        self, message: AgentMessage, token: str, envelope: Envelope | None
    ) -> tuple[GatewayDecision, str]:
        assert self._transport is not None
        sender, target = message.sender_id, message.target_id
        live = await self._transport.discover()
        mine = [r for r in live if r.id == sender]
        if not token or not sender:
            return GatewayDecision.AUTH_FAILED, "Missing agent_id or token"
        if not mine:
            return GatewayDecision.AUTH_FAILED, "Agent not registered"
        digest = hashlib.sha256(token.encode()).hexdigest()
        if not any(hmac.compare_digest(digest, r.token_hash) for r in mine if r.token_hash):
            return GatewayDecision.AUTH_FAILED, "Invalid or expired token"
        if self._signer is not None:
            env = envelope or Envelope(message)
            verdict = self._signer.verify(env.signed_body(), env.mac)
            if verdict is not Verdict.OK:
                return GatewayDecision.SIGNATURE_INVALID, verdict.value
        if not any(r.id == target for r in live):
            return GatewayDecision.AUTHZ_DENIED, f"target {target!r} is not a live agent"
        r = self._redis()
        blocked, allowed_all, allowed = (
            await r.pipeline(transaction=False)
            .sismember(self.keys.gateway("blocked", sender), target)
            .sismember(self.keys.gateway("allowed", sender), "*")
            .sismember(self.keys.gateway("allowed", sender), target)
            .execute()
        )
        if blocked or not (allowed_all or allowed):
            return GatewayDecision.AUTHZ_DENIED, "Not authorized to message target"
        per_minute, per_hour = await self.rate_limits(sender)
        windows = [f"{self.keys.gateway('rate', sender)}:{w}" for w in ("minute", "hour")]
        member = f"{message.id}:{os.urandom(4).hex()}"
        now = int(time.time() * 1000)
        ok, window, _ = await r.eval(_RATE, 2, *windows, now, member, per_minute, per_hour)
        if not int(ok):
            w = _s(window)
            limit = per_minute if w == "minute" else per_hour
            return GatewayDecision.RATE_LIMITED, f"Rate limit exceeded: {limit} per {w}"
        return GatewayDecision.ALLOWED, ""

    async def _audit(
        self, message: AgentMessage, decision: GatewayDecision, ms: float, violations: list[str]
    ) -> None:
        payload = json.dumps(message.payload, sort_keys=True, default=str).encode()
        try:
            await self._redis().xadd(
                self.keys.gateway_audit,
                {
                    "message_id": message.id,
                    "sender_id": message.sender_id,
                    "target_id": message.target_id,
                    "decision": decision.value,
                    "latency_ms": f"{ms:.3f}",
                    "payload_hash": hashlib.sha256(payload).hexdigest(),
                    "violations": json.dumps(violations),
                    "timestamp": f"{time.time():.6f}",
                },
                maxlen=self.settings.audit_maxlen,
                approximate=True,
            )
        except Exception as e:  # the decision stands; a lost audit line is logged loudly
            log.error("gateway: could not write the audit entry of %s: %s", message.id, e)

    async def audit_log(
        self, count: int = 100, *, sender_id: str | None = None, target_id: str | None = None
    ) -> list[dict[str, Any]]:
        """The newest audit entries, newest last, optionally of one sender or target."""
        rows = await self._redis().xrevrange(self.keys.gateway_audit, count=count * 10)
        out = []
        for entry_id, fields in rows:
            d: dict[str, Any] = {_s(k): _s(v) for k, v in fields.items()}
            if sender_id not in (None, d["sender_id"]) or target_id not in (None, d["target_id"]):
                continue
            d["violations"] = json.loads(d["violations"])
            d["latency_ms"] = float(d["latency_ms"])
            d["timestamp"] = float(d["timestamp"])
            d["entry_id"] = _s(entry_id)
            out.append(d)
            if len(out) >= count:
                break
        return out[::-1]

    async def set_limits(
        self, agent_id: str, per_minute: int | None = None, per_hour: int | None = None
    ) -> None:
        fields = {k: v for k, v in (("per_minute", per_minute), ("per_hour", per_hour)) if v}
        if fields:
            await self._redis().hset(self.keys.gateway("limits", agent_id), mapping=fields)

    async def rate_limits(self, agent_id: str) -> tuple[int, int]:
        got = await self._redis().hmget(
            self.keys.gateway("limits", agent_id), ["per_minute", "per_hour"]
        )
        d = self.settings.rate_limit
        return (int(got[0]) if got[0] else d.per_minute, int(got[1]) if got[1] else d.per_hour)

    async def set_permissions(
        self,
        agent_id: str,
        allowed_targets: Sequence[str] | None = None,
        blocked_targets: Sequence[str] | None = None,
    ) -> None:
        """Replace the allowed (``*``: every target) and/or blocked targets."""
        r = self._redis()
        for kind, targets in (("allowed", allowed_targets), ("blocked", blocked_targets)):
            if targets is not None:
                key = self.keys.gateway(kind, agent_id)
                await r.delete(key)
                if targets:
                    await r.sadd(key, *targets)

    async def add_permission(self, agent_id: str, target_id: str) -> None:
        await self._redis().sadd(self.keys.gateway("allowed", agent_id), target_id)

    async def remove_permission(self, agent_id: str, target_id: str) -> None:
        await self._redis().srem(self.keys.gateway("allowed", agent_id), target_id)

    async def block_target(self, agent_id: str, target_id: str) -> None:
        await self._redis().sadd(self.keys.gateway("blocked", agent_id), target_id)

    async def unblock_target(self, agent_id: str, target_id: str) -> None:
        await self._redis().srem(self.keys.gateway("blocked", agent_id), target_id)

    async def get_permissions(self, agent_id: str) -> dict[str, list[str]]:
        r = self._redis()
        return {
            kind: sorted(_s(x) for x in await r.smembers(self.keys.gateway(kind, agent_id)))
            for kind in ("allowed", "blocked")
        }

    def auth_manager(self) -> AuthorizationManager:
        return AuthorizationManager(self)

    async def get_stats(self) -> dict[str, Any]:
        r = self._redis()
        return {
            "audit": {"entries": int(await r.xlen(self.keys.gateway_audit))},
            "status": "running" if self.running else "stopped",
        }


class AuthorizationManager:
    """Grant and block in the common patterns (the seed framework's names)."""

    def __init__(self, gateway: GatewayService) -> None:
        self._gw = gateway
        self._pending: list[tuple[Callable[[str, str], Awaitable[None]], str, str]] = []

    async def allow_bidirectional(self, agent_a: str, agent_b: str) -> None:
        await self._gw.add_permission(agent_a, agent_b)
        await self._gw.add_permission(agent_b, agent_a)

    async def allow_network(self, agents: Sequence[str], bidirectional: bool = True) -> None:
        """Everyone to everyone (``bidirectional``), else a chain ``a -> b -> c``."""
        if bidirectional:
            for sender in agents:
                targets = [a for a in agents if a != sender]
                if targets:
                    await self._gw.set_permissions(sender, allowed_targets=targets)
        else:
            for a, b in zip(agents, agents[1:], strict=False):
                await self._gw.add_permission(a, b)

    async def allow_broadcast(self, sender: str, receivers: Sequence[str]) -> None:
        await self._gw.set_permissions(sender, allowed_targets=list(receivers))

    async def allow_wildcard(self, agent_id: str) -> None:
        await self._gw.set_permissions(agent_id, allowed_targets=["*"])

    def allow(self, sender: str, targets: str | Sequence[str]) -> AuthorizationManager:
        """Queue a grant; :meth:`apply` writes the queue."""
        for t in [targets] if isinstance(targets, str) else targets:
            self._pending.append((self._gw.add_permission, sender, t))
        return self

    def block(self, sender: str, target: str) -> AuthorizationManager:
        self._pending.append((self._gw.block_target, sender, target))
        return self

    async def apply(self) -> None:
        pending, self._pending = self._pending, []
        for write, sender, target in pending:
            await write(sender, target)
