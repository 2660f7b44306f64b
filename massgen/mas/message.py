"""The one message type agents exchange: a slotted dataclass (~8x cheaper to build than a
pydantic model), validated by a pydantic ``TypeAdapter`` whenever it is read (see ``wire``)."""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class MessageKind(StrEnum):
    MESSAGE = "message"
    REQUEST = "request"
    REPLY = "reply"
    BROADCAST = "broadcast"


@dataclass(slots=True, kw_only=True)
class AgentMessage:
    """A message between agents. Delivery is at least once: after a crash your handler may see
    the same ``id`` again with a higher ``attempt``, so make its effects idempotent by ``id``.
    ``attempt``, ``entry_id`` and ``context`` (the receiving agent) are set on delivery."""

    id: str
    sender_id: str
    target_id: str
    payload: dict[str, Any] = field(default_factory=dict)
    kind: MessageKind = MessageKind.MESSAGE
    created_at: float = 0.0
    correlation_id: str | None = None
    reply_to: str | None = None
    error: str | None = None
    attempt: int = 1
    entry_id: str | int | None = field(default=None, repr=False, compare=False)
    context: Any = field(default=None, repr=False, compare=False)  # the receiving Agent

    @property
    def message_id(self) -> str:
        return self.id

    @property
    def timestamp(self) -> float:
        return self.created_at

    @property
    def expects_reply(self) -> bool:
        return self.kind == MessageKind.REQUEST and self.reply_to is not None

    @property
    def is_reply(self) -> bool:
        return self.kind == MessageKind.REPLY

    async def reply(self, payload: dict[str, Any]) -> bool:
        """Answer this request; ``False`` when another reply was committed first or this
        worker lost its lease (yours is then discarded). ``RuntimeError`` for a non-request."""
        if self.context is None:
            raise RuntimeError("this message was not received by an agent; nothing to reply to")
        return await self.context.reply_for(self, payload)


class IdFactory:
    """Unique ids at ~0.3 us (``uuid4()``: ~3 us): a random 64-bit prefix plus a counter."""

    __slots__ = ("_counter", "_prefix")

    def __init__(self) -> None:
        self._prefix = os.urandom(8).hex()
        self._counter = itertools.count(1)

    def __call__(self) -> str:
        return f"{self._prefix}{next(self._counter):x}"

    def many(self, n: int) -> list[str]:
        p, c = self._prefix, self._counter
        return [f"{p}{next(c):x}" for _ in range(n)]
