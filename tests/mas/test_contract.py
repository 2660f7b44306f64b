"""The transport contract: every test runs on MemoryTransport and on RedisTransport."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from massgen.mas import (
    Agent,
    AgentIdTaken,
    AgentMessage,
    AgentRecord,
    BusSettings,
    CommitResult,
    Envelope,
    MessageKind,
    RemoteError,
    RequestTimeout,
)

from .helpers import FAST, Bus, Recorder, crash, until, wait_for


async def test_send_reaches_target_with_sender_and_payload(bus: Bus) -> None:
    b = bus.agent(Recorder, "b")
    a = bus.agent(Agent, "a")
    await b.start()
    await a.start()
    arrived = b.expect(1)
    await a.send("b", {"n": 1, "nested": {"xs": [1, 2.5, None, True]}})
    await until(arrived)
    m = b.got[0]
    assert isinstance(m, AgentMessage)
    assert (m.sender_id, m.target_id, m.kind) == ("a", "b", MessageKind.MESSAGE)
    assert m.payload == {"n": 1, "nested": {"xs": [1, 2.5, None, True]}}
    assert m.attempt == 1


async def test_message_to_offline_agent_waits_for_it(bus: Bus) -> None:
    a = bus.agent(Agent, "a")
    await a.start()
    await a.send("later", {"x": 1})
    await a.send("later", {"x": 2})
    b = bus.agent(Recorder, "later")
    arrived = b.expect(2)
    await b.start()
    await until(arrived)
    assert sorted(m.payload["x"] for m in b.got) == [1, 2]


async def test_request_returns_the_reply_message(bus: Bus) -> None:
    server = bus.agent(Recorder, "server")
    client = bus.agent(Agent, "client")
    await server.start()
    await client.start()
    replies = await asyncio.gather(*(client.request("server", {"i": i}) for i in range(20)))
    assert [r.payload for r in replies] == [{"echo": {"i": i}} for i in range(20)]
    assert all(r.is_reply and not r.expects_reply for r in replies)
    assert all(r.sender_id == "server" and r.target_id == "client" for r in replies)
    assert len({r.correlation_id for r in replies}) == 20


async def test_request_times_out_when_nobody_answers(bus: Bus) -> None:
    client = bus.agent(Agent, "client")
    await client.start()
    with pytest.raises(RequestTimeout):
        await client.request("nobody", {}, timeout=0.3)


async def test_first_reply_wins(bus: Bus) -> None:
    outcomes: list[bool] = []
    both = asyncio.Event()

    class Twice(Agent):
        async def on_message(self, message: AgentMessage) -> None:
            outcomes.append(await message.reply({"n": 1}))
            outcomes.append(await message.reply({"n": 2}))
            both.set()

    await bus.agent(Twice, "server").start()
    client = bus.agent(Agent, "client")
    await client.start()
    assert (await client.request("server", {})).payload == {"n": 1}
    await until(both)
    assert outcomes == [True, False]


async def test_failing_request_raises_remote_error_after_max_deliveries(bus: Bus) -> None:
    calls: list[int] = []

    class Broken(Agent):
        async def on_message(self, message: AgentMessage) -> None:
            calls.append(message.attempt)
            raise ValueError("boom")

    await bus.agent(Broken, "server").start()
    client = bus.agent(Agent, "client")
    await client.start()
    with pytest.raises(RemoteError, match="boom"):
        await client.request("server", {}, timeout=10)
    assert calls == [1, 2, 3]  # FAST.max_deliveries


async def test_discover_by_capabilities(bus: Bus) -> None:
    class WithMeta(Agent):
        def get_metadata(self) -> dict[str, Any]:
            return {"version": "1.0.0"}

    await bus.agent(WithMeta, "nlp1", capabilities=["nlp", "text"]).start()
    await bus.agent(Agent, "nlp2", capabilities=["nlp"]).start()
    me = bus.agent(Agent, "vision", capabilities=["vision"])
    await me.start()
    assert [d["id"] for d in await me.discover(capabilities=["nlp"])] == ["nlp1", "nlp2"]
    # any of them, as the seed framework's discover
    assert [d["id"] for d in await me.discover(capabilities=["nlp", "text"])] == ["nlp1", "nlp2"]
    assert [d["id"] for d in await me.discover(capabilities=["text", "vision"])] == [
        "nlp1",
        "vision",
    ]
    assert await me.discover(capabilities=["audio", "math"]) == []
    # every one of them, when asked for
    assert [d["id"] for d in await me.discover(["nlp", "text"], match="all")] == ["nlp1"]
    assert await me.discover(capabilities=["nlp", "vision"], match="all") == []
    with pytest.raises(ValueError, match="match"):
        await me.discover(["nlp"], match="every")  # type: ignore[arg-type]
    everyone = await me.discover()
    assert [d["id"] for d in everyone] == ["nlp1", "nlp2", "vision"]
    first = everyone[0]
    assert first["capabilities"] == ["nlp", "text"]
    assert first["metadata"] == {"version": "1.0.0"}
    assert first["status"] == "running"
    assert first["pid"] > 0 and first["host"]
    assert first["replicas"] == 1


async def test_stopped_agent_leaves_discovery(bus: Bus) -> None:
    a = bus.agent(Agent, "a")
    b = bus.agent(Agent, "b")
    await a.start()
    await b.start()
    await b.stop()
    assert [d["id"] for d in await a.discover()] == ["a"]


async def test_crashed_agent_leaves_discovery_within_ttl(bus: Bus) -> None:
    a = bus.agent(Agent, "a")
    b = bus.agent(Agent, "b")
    await a.start()
    await b.start()
    await crash(b)
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    ids: list[str] = ["b"]

    async def gone() -> None:
        while "b" in ids:
            ids[:] = [d["id"] for d in await a.discover()]
            await asyncio.sleep(0.02)

    await asyncio.wait_for(gone(), timeout=5)
    assert loop.time() - t0 <= FAST.heartbeat_ttl + 0.5


async def test_second_live_agent_with_same_id_is_refused(bus: Bus) -> None:
    await bus.agent(Agent, "solo").start()
    dup = bus.agent(Agent, "solo")
    with pytest.raises(AgentIdTaken, match="solo"):
        await dup.start()
    replica = bus.agent(Agent, "solo", replica=True)  # the first did not declare replica
    with pytest.raises(AgentIdTaken):
        await replica.start()


async def test_id_is_free_again_after_a_crash(bus: Bus) -> None:
    first = bus.agent(Agent, "solo")
    await first.start()
    await crash(first)
    second = bus.agent(Agent, "solo")
    async with asyncio.timeout(5):
        while True:
            try:
                await second.start()
                break
            except AgentIdTaken:
                await asyncio.sleep(0.05)
    assert [d["id"] for d in await second.discover()] == ["solo"]


async def test_replicas_share_one_inbox(bus: Bus) -> None:
    r1 = bus.agent(Recorder, "work", replica=True)
    r2 = bus.agent(Recorder, "work", replica=True)
    await r1.start()
    await r2.start()
    sender = bus.agent(Agent, "sender")
    await sender.start()
    await sender.send_many([("work", {"i": i}) for i in range(200)])
    await wait_for(lambda: len(r1.got) + len(r2.got) >= 200, what="200 messages")
    ids = [m.payload["i"] for m in r1.got + r2.got]
    assert sorted(ids) == list(range(200))
    found = await sender.discover()
    work = next(d for d in found if d["id"] == "work")
    assert work["replicas"] == 2


async def test_broadcast_reaches_every_other_matching_agent(bus: Bus) -> None:
    agents = [
        bus.agent(Recorder, "x1", capabilities=["x"]),
        bus.agent(Recorder, "x2", capabilities=["x", "y"]),
        bus.agent(Recorder, "other", capabilities=["y"]),
    ]
    for a in agents:
        await a.start()
    events = [a.expect(1) for a in agents[1:2]]
    reached = await agents[0].broadcast({"hello": 1}, capabilities=["x"])
    assert reached == ["x2"]
    await until(events[0])
    assert agents[1].got[0].kind == MessageKind.BROADCAST
    assert agents[0].got == [] and agents[2].got == []
    assert await agents[2].broadcast({"all": 1}) == ["x1", "x2"]


async def test_failing_message_is_dead_lettered_after_max_deliveries(bus: Bus) -> None:
    """R2 (both transports): exactly N deliveries, then the dead-letter stream; others pass."""
    attempts: list[int] = []
    done: list[int] = []

    class Picky(Agent):
        async def on_message(self, message: AgentMessage) -> None:
            if message.payload["i"] == 3:
                attempts.append(message.attempt)
                raise RuntimeError("always fails")
            done.append(message.payload["i"])

    picky = bus.agent(Picky, "picky")
    await picky.start()
    sender = bus.agent(Agent, "sender")
    await sender.start()
    await sender.send_many([("picky", {"i": i}) for i in range(10)])

    async def dead() -> int:
        return len(await picky.transport.dead_letters("picky"))

    async with asyncio.timeout(10):
        while await dead() < 1 or len(done) < 9:
            await asyncio.sleep(0.02)
    assert attempts == [1, 2, 3]
    assert sorted(done) == [0, 1, 2, 4, 5, 6, 7, 8, 9]
    [letter] = await picky.transport.dead_letters("picky")
    assert "RuntimeError: always fails" in letter.reason


async def test_work_of_a_crashed_agent_is_reclaimed_by_a_replica(bus: Bus) -> None:
    gate = asyncio.Event()
    seen: list[tuple[str, int]] = []

    class Slow(Agent):
        async def on_message(self, message: AgentMessage) -> None:
            seen.append((self.instance_id, message.attempt))
            await gate.wait()

    first = bus.agent(Slow, "work", replica=True)
    await first.start()
    sender = bus.agent(Agent, "sender")
    await sender.start()
    await sender.send_many([("work", {"i": i}) for i in range(5)])
    await wait_for(lambda: len(seen) == 5, what="first holds 5")
    await crash(first)
    second = bus.agent(Recorder, "work", replica=True)
    arrived = second.expect(5)
    await second.start()
    await until(arrived)
    assert sorted(m.payload["i"] for m in second.got) == list(range(5))
    assert all(m.attempt == 2 for m in second.got)


async def test_transport_leases_are_fenced(bus: Bus) -> None:
    """A consumer that lost its lease can neither ack nor answer; the new holder can."""
    t = bus.transport()
    await t.connect()
    await t.ensure_inbox("w")
    request = AgentMessage(
        id="req1",
        sender_id="client",
        target_id="w",
        kind=MessageKind.REQUEST,
        reply_to="client-inst",
        created_at=1.0,
    )
    await t.send([Envelope(request)])
    [d1] = await t.fetch("w", "c1", count=10, block=0.5)
    assert (
        await t.reclaim("w", "c2", BusSettings(lease=60, max_deliveries=5, dlq_maxlen=10), 10) == []
    )
    await t.release("w", "c1", d1.entry_id, 0.05)
    [d2] = await t.reclaim("w", "c2", BusSettings(lease=0.05, max_deliveries=5, dlq_maxlen=10), 10)
    assert d2.entry_id == d1.entry_id and d2.attempt == 2

    def reply(n: int) -> Envelope:
        return Envelope(
            AgentMessage(
                id=f"rep{n}",
                sender_id="w",
                target_id="client",
                kind=MessageKind.REPLY,
                correlation_id="req1",
                reply_to="client-inst",
                payload={"n": n},
            )
        )

    assert await t.renew("w", "c1", [d1.entry_id]) == [d1.entry_id]
    assert await t.commit_reply("w", "c1", d1.entry_id, reply(1), ttl=60) == (
        CommitResult.LEASE_LOST
    )
    assert await t.ack("w", "c1", [d1.entry_id]) == 0
    assert await t.commit_reply("w", "c2", d2.entry_id, reply(2), ttl=60) == (
        CommitResult.COMMITTED
    )
    # the commit finished the request: it is no longer held, so nothing more can be done
    assert await t.commit_reply("w", "c2", d2.entry_id, reply(3), ttl=60) == (
        CommitResult.LEASE_LOST
    )
    assert await t.ack("w", "c2", [d2.entry_id]) == 0
    # and whoever answers the same request id again, even unfenced, is discarded
    assert await t.commit_reply("w", "c3", None, reply(4), ttl=60) == CommitResult.DUPLICATE
    got = await t.read_replies("client-inst", block=0.5)
    assert [e.message.payload for e in got] == [{"n": 2}]
    stored = await t.get_reply("req1")
    assert stored is not None and stored.message.payload == {"n": 2}


async def test_registry_refuses_duplicates_and_reaps_the_dead(bus: Bus) -> None:
    t = bus.transport()
    await t.connect()
    rec = AgentRecord(id="r", instance_id="a" * 16, capabilities=["c"], pid=1)
    await t.register(rec, ttl=0.2, retention=60)
    with pytest.raises(AgentIdTaken):
        await t.register(rec.model_copy(update={"instance_id": "b" * 16}), ttl=1, retention=60)
    assert [r.instance_id for r in await t.discover(["c"])] == ["a" * 16]
    assert await t.heartbeat("r", "a" * 16, ttl=0.2, retention=60)
    async with asyncio.timeout(5):
        while await t.discover():
            await asyncio.sleep(0.02)
    dead = await t.reap(retention=60)
    assert [(r.id, r.status) for r in dead] == [("r", "dead")]
    assert not await t.heartbeat("r", "a" * 16, ttl=0.2, retention=60)


async def test_state_round_trips_types_across_restart(bus: Bus) -> None:
    a = bus.agent(Agent, "stateful")
    await a.start()
    await a.update_state({"counter": 42, "items": [1, "two", 3.0], "cfg": {"on": True}})
    await a.update_state({"counter": 43})
    await a.stop()
    again = bus.agent(Agent, "stateful")
    await again.start()
    assert again.state == {"counter": 43, "items": [1, "two", 3.0], "cfg": {"on": True}}
    assert type(again.state["counter"]) is int
    assert type(again.state["items"][2]) is float


async def test_batched_ack_and_renew_are_fenced_per_entry(bus: Bus) -> None:
    """Many ids in one call (the scripts' one-pass path): only the caller's are acted on."""
    t = bus.transport()
    await t.connect()
    await t.ensure_inbox("w")
    await t.send(
        [Envelope(AgentMessage(id=f"m{i}", sender_id="s", target_id="w")) for i in range(40)]
    )
    mine = [d.entry_id for d in await t.fetch("w", "c1", count=20, block=0.5)]
    theirs = [d.entry_id for d in await t.fetch("w", "c2", count=20, block=0.5)]
    mixed = [x for pair in zip(mine, theirs, strict=True) for x in pair]
    assert sorted(await t.renew("w", "c1", mixed), key=str) == sorted(theirs, key=str)
    assert await t.ack("w", "c1", mixed[:30]) == 15
    assert await t.ack("w", "c1", mixed) == 5  # the other 15 were finished already
    assert await t.renew("w", "c2", theirs) == []
    assert await t.ack("w", "c2", theirs + theirs[:1]) == 20


async def test_entries_fetched_together_keep_separate_leases(bus: Bus) -> None:
    """One fetch leases a batch; giving one entry back or renewing one leaves the others'
    leases as they were."""
    t = bus.transport()
    await t.connect()
    await t.ensure_inbox("w")
    await t.send(
        [Envelope(AgentMessage(id=f"m{i}", sender_id="s", target_id="w")) for i in range(3)]
    )
    d0, d1, d2 = await t.fetch("w", "c1", count=10, block=0.5)
    await t.release("w", "c1", d0.entry_id, 60)
    taken = await t.reclaim("w", "c2", BusSettings(lease=60, max_deliveries=5, dlq_maxlen=10), 10)
    assert [(d.entry_id, d.attempt) for d in taken] == [(d0.entry_id, 2)]
    assert await t.renew("w", "c1", [d1.entry_id]) == []
    assert await t.ack("w", "c1", [d0.entry_id, d1.entry_id, d2.entry_id]) == 2
    assert await t.ack("w", "c2", [d0.entry_id]) == 1
    assert [s.waiting for s in await t.inbox_stats() if s.agent_id == "w"] == [0]


async def test_committing_the_same_reply_again_is_not_a_duplicate(bus: Bus) -> None:
    """A commit retried after its answer was lost (the connection dropped) finds its own
    reply stored: COMMITTED again, and the requester still gets exactly one reply."""
    t = bus.transport()
    await t.connect()
    await t.ensure_inbox("w")
    request = AgentMessage(
        id="req9", sender_id="c", target_id="w", kind=MessageKind.REQUEST, reply_to="c-inst"
    )
    await t.send([Envelope(request)])
    [d] = await t.fetch("w", "c1", count=10, block=0.5)
    reply = Envelope(
        AgentMessage(
            id="rep9",
            sender_id="w",
            target_id="c",
            kind=MessageKind.REPLY,
            correlation_id="req9",
            reply_to="c-inst",
            payload={"ok": True},
        )
    )
    assert await t.commit_reply("w", "c1", d.entry_id, reply, ttl=60) == CommitResult.COMMITTED
    assert await t.commit_reply("w", "c1", d.entry_id, reply, ttl=60) == CommitResult.COMMITTED
    assert await t.commit_reply("w", "c1", None, reply, ttl=60) == CommitResult.COMMITTED
    got = await t.read_replies("c-inst", block=0.5)
    assert [e.message.id for e in got] == ["rep9"]
    assert await t.read_replies("c-inst", block=0) == []
