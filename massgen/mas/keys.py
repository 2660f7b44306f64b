"""Every Redis key and name the runtime uses, in one place.

You change the namespace with ``prefix`` (default ``massgen:``) so several teams or test runs
can share one Redis. docs/redis.md lists each key with its type and lifetime; keep the two in
step.
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_PREFIX = "massgen:"
#: Consumer group every inbox stream has; replicas of one agent are consumers of it.
GROUP = "workers"
#: The one field of a stream entry: the signed wire blob (see ``massgen.mas.wire``).
FIELD = b"m"


@dataclass(frozen=True, slots=True)
class Keys:
    """Builds key names under one prefix."""

    prefix: str = DEFAULT_PREFIX

    @property
    def registry(self) -> str:
        """ZSET: member ``{instance_id}:{agent_id}``, score = heartbeat expiry (ms)."""
        return f"{self.prefix}registry"

    @property
    def registry_version(self) -> str:
        """STRING counter: bumped whenever a registry record is written or removed, so
        discovery can reuse the records it parsed while the counter stays put."""
        return f"{self.prefix}registry:version"

    def agent(self, agent_id: str) -> str:
        """HASH: field ``instance_id`` -> JSON record of that live (or dead) instance."""
        return f"{self.prefix}agent:{agent_id}"

    def inbox(self, agent_id: str) -> str:
        """STREAM with consumer group :data:`GROUP`: work sent to the agent."""
        return f"{self.prefix}inbox:{agent_id}"

    def dlq(self, agent_id: str) -> str:
        """STREAM: messages that failed too often or were refused, with the reason."""
        return f"{self.prefix}dlq:{agent_id}"

    def replies(self, instance_id: str) -> str:
        """STREAM: replies to requests one agent instance made (read with XREAD)."""
        return f"{self.prefix}replies:{instance_id}"

    def reply(self, request_id: str) -> str:
        """STRING: the committed reply to one request (SET NX: first reply wins)."""
        return f"{self.prefix}reply:{request_id}"

    def state(self, agent_id: str) -> str:
        """HASH: field -> JSON value of the agent's persisted state."""
        return f"{self.prefix}state:{agent_id}"

    def seen_prefix(self, agent_id: str) -> str:
        """The part of :meth:`seen` before the message id (Lua scripts append it)."""
        return f"{self.prefix}seen:{agent_id}:"

    def gateway_allowed(self, agent_id: str) -> str:
        """SET: targets the agent may message through a gateway (``*``: any)."""
        return f"{self.prefix}gw:allowed:{agent_id}"

    def gateway_blocked(self, agent_id: str) -> str:
        """SET: targets the agent may not message through a gateway (wins over allowed)."""
        return f"{self.prefix}gw:blocked:{agent_id}"

    def gateway_limits(self, agent_id: str) -> str:
        """HASH: ``per_minute``, ``per_hour``: the agent's own rate limits."""
        return f"{self.prefix}gw:limits:{agent_id}"

    def gateway_window(self, agent_id: str, window: str) -> str:
        """ZSET: messages the agent sent in the last minute or hour (score: time, ms)."""
        return f"{self.prefix}gw:rate:{agent_id}:{window}"

    @property
    def gateway_audit(self) -> str:
        """STREAM: one entry per gateway decision (payloads only as their SHA-256)."""
        return f"{self.prefix}gw:audit"

    def agent_prefix(self) -> str:
        """The part of :meth:`agent` before the agent id (Lua scripts append it)."""
        return f"{self.prefix}agent:"

    def inbox_prefix(self) -> str:
        """The part of :meth:`inbox` before the agent id (to scan inboxes)."""
        return f"{self.prefix}inbox:"
