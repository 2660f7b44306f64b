"""Every Redis key the bus uses, under one prefix (docs/redis.md lists each with its type)."""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_PREFIX = "massgen:"
GROUP = "workers"
"""The consumer group of every inbox stream; replicas of one agent are consumers of it."""
FIELD = b"m"
"""The one field of a stream entry: the signed wire blob (see :mod:`massgen.mas.message`)."""


@dataclass(frozen=True, slots=True)
class Keys:
    """Key names under ``prefix``, so several teams or test runs can share one Redis."""

    prefix: str = DEFAULT_PREFIX

    @property
    def registry(self) -> str:  # ZSET "{instance_id}:{agent_id}" -> heartbeat expiry (ms)
        return f"{self.prefix}registry"

    def agent(self, agent_id: str) -> str:  # HASH instance_id -> JSON record
        return f"{self.prefix}agent:{agent_id}"

    def inbox(self, agent_id: str) -> str:  # STREAM with consumer group GROUP
        return f"{self.prefix}inbox:{agent_id}"

    def dlq(self, agent_id: str) -> str:  # STREAM of dead letters with their reason
        return f"{self.prefix}dlq:{agent_id}"

    def replies(self, instance_id: str) -> str:  # STREAM of replies to one requester
        return f"{self.prefix}replies:{instance_id}"

    def reply(self, request_id: str) -> str:  # STRING: the committed reply (first wins)
        return f"{self.prefix}reply:{request_id}"

    def state(self, agent_id: str) -> str:  # HASH field -> JSON value
        return f"{self.prefix}state:{agent_id}"

    def seen(self, agent_id: str, message_id: str) -> str:  # STRING: entry a message id came in
        return f"{self.prefix}seen:{agent_id}:{message_id}"

    def gateway(self, kind: str, agent_id: str) -> str:
        """``allowed``/``blocked`` SETs of targets, ``limits`` HASH, ``rate:minute``/``rate:hour``
        ZSETs of sent messages."""
        return f"{self.prefix}gw:{kind}:{agent_id}"

    @property
    def gateway_audit(self) -> str:  # STREAM: one entry per gateway decision
        return f"{self.prefix}gw:audit"
