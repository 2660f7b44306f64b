"""The monitor: it takes work back from dead instances, dead-letters what used up its
deliveries, reports unread and pending work (not the stream length) and logs only changes.
Also the public ``Agent.publish_record`` and ``inbox_stats`` error mapping."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import pytest

from massgen.errors import MassGenError, TransportError
from massgen.mas import (
    Agent,
    AgentMessage,
    AgentRecord,
    BusAuthError,
    BusSettings,
    Envelope,
    MASService,
    RedisTransport,
    Transport,
)

from .helpers import Bus, RedisServer, free_port

DEAD = "a" * 16
LIVE = "b" * 16


def message(n: int, target: str = "w") -> Envelope:
    return Envelope(AgentMessage(id=f"m{n}", sender_id="client", target_id=target, payload={}))


async def stats_of(t: Transport, agent_id: str) -> tuple[int, int, int]:
    [s] = [s for s in await t.inbox_stats() if s.agent_id == agent_id]
    return s.unread, s.pending, s.dead_letters


async def test_service_takes_back_work_of_dead_instances(
    bus: Bus, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="massgen.mas.service")
    t = bus.transport()
    await t.connect()
    await t.ensure_inbox("w")
    await t.register(AgentRecord(id="w", instance_id=DEAD, replica=True), ttl=0.3, retention=60)
    await t.register(AgentRecord(id="w", instance_id=LIVE, replica=True), ttl=60, retention=60)
    await t.send([message(n) for n in range(5)])
    da = await t.fetch("w", DEAD, count=3, block=0.5)
    [db] = await t.fetch("w", LIVE, count=1, block=0.5)
    assert await stats_of(t, "w") == (1, 4, 0)
    # da[0] is delivered a second time to the same (soon dead) instance
    await t.release("w", DEAD, da[0].entry_id, 30)
    [again] = await t.reclaim("w", DEAD, BusSettings(lease=30, max_deliveries=5, dlq_maxlen=10), 10)
    assert (again.entry_id, again.attempt) == (da[0].entry_id, 2)

    service = MASService(transport=t, settings=BusSettings(lease=0.3, max_deliveries=2))
    released: list[Any] = []
    dead_lettered: list[Any] = []
    async with asyncio.timeout(10):  # until the heartbeat and the leases ran out
        while len(released) < 2 or not dead_lettered:
            report = await service.check()
            released += report.released.get("w", [])
            dead_lettered += report.dead_lettered.get("w", [])
            await asyncio.sleep(0.02)

    assert sorted(released) == sorted([da[1].entry_id, da[2].entry_id])
    assert dead_lettered == [da[0].entry_id]
    [letter] = await t.dead_letters("w")
    assert letter.reason == f"delivered 2 times; holder {DEAD} died"
    assert letter.consumer == DEAD
    # the dead holder is fenced out; the live one keeps its own work
    assert await t.ack("w", DEAD, [da[1].entry_id]) == 0
    assert await t.renew("w", LIVE, [db.entry_id]) == []
    assert await stats_of(t, "w") == (1, 3, 1)
    # the next live consumer's reclaim takes the released work at once, delivery count + 1
    got = await t.reclaim("w", LIVE, BusSettings(lease=30, max_deliveries=2, dlq_maxlen=10), 10)
    assert sorted((d.entry_id, d.attempt) for d in got) == sorted((e, 2) for e in released)
    assert await t.ack("w", LIVE, [d.entry_id for d in got] + [db.entry_id]) == 3
    assert await stats_of(t, "w") == (1, 0, 1)

    text = caplog.text
    assert f"took 2 message(s) from dead instance(s) {DEAD}" in text
    assert f"dead-lettered 1 message(s) of dead instance(s) {DEAD}" in text
    # nothing more to take: a further pass does nothing and leaves the service's own alone
    report = await service.check()
    assert report.released == {} and report.dead_lettered == {}


async def test_service_leaves_work_of_live_instances_alone(bus: Bus) -> None:
    t = bus.transport()
    await t.connect()
    await t.ensure_inbox("w")
    await t.register(AgentRecord(id="w", instance_id=LIVE), ttl=60, retention=60)
    await t.send([message(1)])
    [d] = await t.fetch("w", LIVE, count=1, block=0.5)
    await t.release("w", LIVE, d.entry_id, 0.3)  # idle past the lease
    service = MASService(transport=t, settings=BusSettings(lease=0.3))
    report = await service.check()
    assert report.released == {} and report.dead_lettered == {}
    assert await t.ack("w", LIVE, [d.entry_id]) == 1  # still its own


async def test_service_logs_waiting_work_only_when_it_changes(
    bus: Bus, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="massgen.mas.service")
    t = bus.transport()
    await t.connect()
    await t.ensure_inbox("nobody")
    await t.send([message(1, "nobody"), message(2, "nobody")])
    [d] = await t.fetch("nobody", "gone", count=1, block=0.5)
    await t.ack("nobody", "gone", [d.entry_id])  # acknowledged: not waiting any more
    service = MASService(transport=t)

    def lines() -> list[str]:
        return [r.getMessage() for r in caplog.records if "no live agent" in r.getMessage()]

    await service.check()
    await service.check()
    assert lines() == [
        "inbox nobody: 1 message(s) unread, 0 delivered and unacknowledged, no live agent"
    ]
    [s] = service.last_report.inboxes
    assert (s.unread, s.pending, s.waiting) == (1, 0, 1)
    await t.send([message(3, "nobody")])
    await service.check()
    await service.check()
    assert len(lines()) == 2 and lines()[1].startswith("inbox nobody: 2 message(s) unread")


async def test_publish_record_shows_new_metadata(bus: Bus) -> None:
    class Counting(Agent):
        turns = 0

        def get_metadata(self) -> dict[str, Any]:
            return {"turns": self.turns}

    a = bus.agent(Counting, "counting")
    assert isinstance(a, Counting)
    await a.start()
    [before] = await a.discover()
    a.turns = 3
    await a.publish_record()  # a non-replica may publish its own record again
    [after] = await a.discover()
    assert (before["metadata"], after["metadata"]) == ({"turns": 0}, {"turns": 3})
    assert after["replicas"] == 1
    await a.stop()
    with pytest.raises(RuntimeError, match="start it first"):
        await a.publish_record()


async def test_inbox_stats_maps_redis_errors(
    redis_server: Callable[..., RedisServer],
) -> None:
    down = RedisTransport(f"redis://127.0.0.1:{free_port()}/0", retries=0)
    with pytest.raises(TransportError, match="Redis at"):
        await down.inbox_stats()
    await down.close()

    server = redis_server()
    admin = RedisTransport(server.url, prefix="p:")
    await admin.ensure_inbox("w")
    await admin.client.execute_command(
        "ACL", "SETUSER", "lim", "on", ">Lim1t3d-pass", "~*", "+@all", "-xinfo"
    )
    limited = RedisTransport(f"redis://lim:Lim1t3d-pass@127.0.0.1:{server.port}/0", prefix="p:")
    try:
        with pytest.raises(MassGenError) as info:
            await limited.inbox_stats()
        assert isinstance(info.value, TransportError | BusAuthError)
        assert "Lim1t3d-pass" not in str(info.value)
    finally:
        await limited.close()
        await admin.close()
