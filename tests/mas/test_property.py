"""R6: a Hypothesis state machine sends, kills consumers, restarts them and reclaims on real
Redis. Whatever the interleaving, every message sent is handled (at least once) and
acknowledged exactly once: delivered = sent, each once after dedup by id."""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections import Counter
from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from massgen.mas import AgentMessage, BusSettings, Delivery, Envelope, RedisTransport

from .helpers import SHARED_REDIS, clean_prefix

AGENT = "prop"


class DeliveryMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.prefix = f"test:prop:{uuid.uuid4().hex[:8]}:"
        self.t = RedisTransport(SHARED_REDIS, prefix=self.prefix)
        self.run(self.t.connect())
        self.run(self.t.ensure_inbox(AGENT))
        self.ids = itertools.count()
        self.names = itertools.count()
        self.sent: set[str] = set()
        self.handled: Counter[str] = Counter()
        self.acked: Counter[str] = Counter()
        self.held: dict[str, list[Delivery]] = {}  # live consumer -> deliveries it holds

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    def _consumer(self, data: st.DataObject) -> str | None:
        if not self.held:
            return None
        return data.draw(st.sampled_from(sorted(self.held)))

    @initialize()
    def first_consumer(self) -> None:
        self.held[f"c{next(self.names)}"] = []

    @rule(n=st.integers(1, 5))
    def send(self, n: int) -> None:
        envs = []
        for _ in range(n):
            mid = f"m{next(self.ids)}"
            self.sent.add(mid)
            envs.append(Envelope(AgentMessage(id=mid, sender_id="s", target_id=AGENT)))
        self.run(self.t.send(envs))

    @rule(data=st.data(), count=st.integers(1, 4))
    def fetch(self, data: st.DataObject, count: int) -> None:
        c = self._consumer(data)
        if c is not None:
            self.held[c] += self.run(self.t.fetch(AGENT, c, count=count, block=0))

    @rule(data=st.data(), ack=st.booleans())
    def handle_one(self, data: st.DataObject, ack: bool) -> None:
        """Handle the oldest held message; ``ack=False`` means the consumer dies right after
        handling, before its ack (the case at-least-once redelivers)."""
        c = self._consumer(data)
        if c is None or not self.held[c]:
            return
        d = self.held[c].pop(0)
        assert d.envelope is not None
        self.handled[d.envelope.message.id] += 1
        if ack:
            if self.run(self.t.ack(AGENT, c, [d.entry_id])) == 1:
                self.acked[d.envelope.message.id] += 1
        else:
            del self.held[c]

    @rule(data=st.data())
    def kill(self, data: st.DataObject) -> None:
        c = self._consumer(data)
        if c is not None:
            del self.held[c]  # whatever it held is abandoned, unacknowledged

    @rule()
    def restart(self) -> None:
        self.held[f"c{next(self.names)}"] = []

    @rule(data=st.data())
    def reclaim(self, data: st.DataObject) -> None:
        """Lease 0: a live consumer takes over everything pending, held by the dead and (as if
        their leases had run out) by the living; the latter's acks are then fenced off."""
        c = self._consumer(data)
        if c is None:
            return
        got = self.run(
            self.t.reclaim(
                AGENT, c, BusSettings(lease=0.0, max_deliveries=1000, dlq_maxlen=10), 100
            )
        )
        taken = {d.entry_id for d in got}
        for other, held in self.held.items():
            if other != c:
                self.held[other] = [d for d in held if d.entry_id not in taken]
        self.held[c] += [d for d in got if d.entry_id not in {x.entry_id for x in self.held[c]}]

    @invariant()
    def acked_at_most_once(self) -> None:
        assert all(n == 1 for n in self.acked.values())
        assert set(self.acked) <= set(self.handled) <= self.sent

    def teardown(self) -> None:
        try:
            # drain: a fresh consumer reclaims whatever is pending and reads whatever is new
            last = "final"
            for _ in range(50):
                got = self.run(
                    self.t.reclaim(
                        AGENT, last, BusSettings(lease=0.0, max_deliveries=1000, dlq_maxlen=10), 100
                    )
                ) + self.run(self.t.fetch(AGENT, last, count=100, block=0))
                if not got:
                    break
                for d in got:
                    assert d.envelope is not None
                    self.handled[d.envelope.message.id] += 1
                    if self.run(self.t.ack(AGENT, last, [d.entry_id])) == 1:
                        self.acked[d.envelope.message.id] += 1
            assert set(self.handled) == self.sent  # delivered = sent
            assert set(self.acked) == self.sent  # each acknowledged ...
            assert all(n == 1 for n in self.acked.values())  # ... exactly once
        finally:
            self.run(self.t.close())
            self.run(clean_prefix(SHARED_REDIS, self.prefix))
            self.loop.close()


DeliveryMachine.TestCase.settings = settings(max_examples=12, stateful_step_count=20, deadline=None)
test_delivery_invariant = DeliveryMachine.TestCase
