"""R15: with a shared secret, forged senders, bad MACs, replayed ids and stale timestamps
are refused, logged and never handled (both transports); secrets never reach logs."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from massgen.mas import Agent, AgentMessage, Envelope, MessageKind, Signer
from massgen.mas.message import Verdict, encode, pack

from .helpers import Bus, Recorder, until

SECRET = "canary-secret-5f1e"


async def _setup(bus: Bus) -> tuple[Recorder, Agent, Signer]:
    target = bus.agent(Recorder, "target", secret=SECRET)
    sender = bus.agent(Agent, "sender", secret=SECRET)
    await target.start()
    await sender.start()
    return target, sender, Signer(SECRET)


def _signed(signer: Signer, msg: AgentMessage) -> Envelope:
    body = encode(msg)
    return Envelope(msg, signer.sign(body), body)


async def _dead(target: Agent, n: int) -> list[str]:
    async with asyncio.timeout(10):
        while True:
            letters = await target.transport.dead_letters("target")
            if len(letters) >= n:
                return [d.reason for d in letters]
            await asyncio.sleep(0.02)


async def test_signed_messages_pass(bus: Bus) -> None:
    target, sender, _ = await _setup(bus)
    arrived = target.expect(1)
    await sender.send("target", {"ok": 1})
    await until(arrived)
    assert await target.transport.dead_letters("target") == []


async def test_forged_altered_replayed_and_stale_messages_are_refused(
    bus: Bus, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    target, sender, signer = await _setup(bus)
    t = sender.transport
    now = time.time()

    def msg(mid: str, **kw: object) -> AgentMessage:
        base: dict = {"id": mid, "sender_id": "sender", "target_id": "target", "created_at": now}
        return AgentMessage(**{**base, **kw})  # type: ignore[arg-type]

    good = _signed(signer, msg("good-1", payload={"n": 1}))
    # forged sender: a signed message whose sender field was changed afterwards
    forged = _signed(signer, msg("forged-1"))
    forged.message.sender_id = "admin"
    forged.body = encode(forged.message)
    # bad MAC: signed with another secret
    bad = _signed(Signer("not-the-secret"), msg("bad-1"))
    # unsigned
    unsigned = Envelope(msg("unsigned-1"))
    # stale: created long before it entered the inbox
    stale = _signed(signer, msg("stale-1", created_at=now - 3600))
    # replay: the good message again, as a new inbox entry
    replay = Envelope(good.message, good.mac, good.body)
    # addressed to someone else, copied into target's inbox
    other = _signed(signer, msg("other-1", target_id="elsewhere"))
    other_copy = Envelope(other.message, other.mac, other.body)

    arrived = target.expect(1)
    await t.send([good])
    await until(arrived)
    for env in (forged, bad, unsigned, stale, replay):
        await t.send([env])
    # deliver the copy to target's inbox although it names another agent
    await _send_raw_to(bus, t, "target", other_copy)

    reasons = await _dead(target, 6)
    assert sorted(reasons) == sorted(
        [
            "refused: bad signature (forged or altered)",
            "refused: bad signature (forged or altered)",
            "refused: unsigned",
            "refused: stale timestamp",
            "refused: replayed message id",
            "refused: addressed to another agent",
        ]
    )
    assert [m.id for m in target.got] == ["good-1"]  # no handler call for any of them
    logged = caplog.text
    for mid in ("forged-1", "bad-1", "unsigned-1", "stale-1", "good-1", "other-1"):
        assert f"refused message {mid}" in logged
    assert "claiming sender 'admin'" in logged
    assert SECRET not in logged


async def _send_raw_to(bus: Bus, t: object, inbox_of: str, env: Envelope) -> None:
    """Put ``env`` in ``inbox_of``'s inbox whatever its target field says."""
    if bus.kind == "memory":
        box = bus.hub.inboxes[inbox_of]
        box.put(env, time.time())
        box.wake.set()
    else:
        from massgen.mas import RedisTransport
        from massgen.mas.transport import FIELD

        assert isinstance(t, RedisTransport)
        assert env.body is not None
        await t.client.xadd(t.keys.inbox(inbox_of), {FIELD: pack(env.body, env.mac)})


async def test_forged_reply_is_refused(bus: Bus, caplog: pytest.LogCaptureFixture) -> None:
    """A reply not signed with the secret never resolves a request."""
    caplog.set_level(logging.WARNING)

    class Liar(Agent):
        async def on_message(self, message: AgentMessage) -> None:
            reply = AgentMessage(
                id="fake-reply",
                sender_id="target",
                target_id=message.sender_id,
                kind=MessageKind.REPLY,
                correlation_id=message.id,
                reply_to=message.reply_to,
                payload={"evil": True},
            )
            await self.transport.commit_reply(
                "target",
                self.instance_id,
                message.entry_id,
                _signed(Signer("wrong"), reply),
                ttl=60,
            )

    liar = bus.agent(Liar, "target")  # has no secret: it cannot sign
    client = bus.agent(Agent, "client", secret=SECRET)
    await liar.start()
    await client.start()
    with pytest.raises(TimeoutError):
        await client.request("target", {}, timeout=0.5)
    assert "refused reply fake-reply" in caplog.text


async def test_a_replica_with_another_secret_leaves_messages_to_the_one_that_verifies(
    bus: Bus, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 11: the replica that cannot verify a message hands it back uncounted instead
    of dead-lettering it; the replica with the sender's secret answers every request."""
    caplog.set_level(logging.ERROR, logger="massgen.mas.agent")
    answered: dict[str, int] = {}

    class Answer(Agent):
        async def on_message(self, message: AgentMessage) -> None:
            answered[self.instance_id] = answered.get(self.instance_id, 0) + 1
            await message.reply({"by": self.instance_id, "attempt": message.attempt})

    stale = bus.agent(Answer, "work", replica=True, secret="a-stale-secret")
    await stale.start()  # alone: nothing to compare with
    right = bus.agent(Answer, "work", replica=True, secret=SECRET)
    await right.start()  # the stale replica is live: logged, not refused (not strict)
    assert [r.instance_id for r in await right.secret_mismatches()] == [stale.instance_id]
    client = bus.agent(Agent, "client", secret=SECRET)
    await client.start()
    replies = await asyncio.gather(
        *(client.request("work", {"i": i}, timeout=20) for i in range(20))
    )
    assert {r.payload["by"] for r in replies} == {right.instance_id}
    assert {r.payload["attempt"] for r in replies} == {1}  # handing back is not a delivery
    assert await right.transport.dead_letters("work") == []
    assert answered == {right.instance_id: 20}
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert any("agent work: 1 live agent instance(s)" in e for e in errors), errors
    # with no replica left that signs otherwise, what cannot be verified is refused for good
    await right.stop()
    await client.send("work", {"late": True})
    assert [d.reason for d in await _dead_of(stale, "work", 1)] == [
        "refused: bad signature (forged or altered)"
    ]


async def _dead_of(agent: Agent, inbox: str, n: int) -> list:
    async with asyncio.timeout(10):
        while True:
            letters = await agent.transport.dead_letters(inbox)
            if len(letters) >= n:
                return letters
            await asyncio.sleep(0.02)


async def test_strict_secret_refuses_to_start_among_peers_signing_otherwise(bus: Bus) -> None:
    from massgen.mas import SecretMismatch

    await bus.agent(Agent, "peer", secret=SECRET).start()
    await bus.agent(Agent, "work", replica=True, secret=SECRET).start()
    odd = bus.agent(Agent, "work", replica=True, secret="another", strict_secret=True)
    with pytest.raises(SecretMismatch) as e:
        await odd.start()
    assert len(e.value.peers) == 2 and all("@" in p for p in e.value.peers)
    assert odd.status == "stopped"
    # unsigned among signers is a mismatch too; the same secret is not
    with pytest.raises(SecretMismatch):
        await bus.agent(Agent, "plain", strict_secret=True).start()
    same = bus.agent(Agent, "work", replica=True, secret=SECRET, strict_secret=True)
    await same.start()
    assert await same.secret_mismatches() == []


async def test_a_requester_finds_its_refused_request_among_the_dead_letters(bus: Bus) -> None:
    """What a run looks for while a turn waits (both transports): the request it sent, by
    id, among the newest dead letters of the target that could not verify it."""
    target = bus.agent(Recorder, "target", secret=SECRET)
    await target.start()
    other = bus.agent(Agent, "sender", secret="another-secret")
    await other.start()
    for i in range(3):  # older dead letters, before and after ours
        await other.send("target", {"i": i})
    mid = other.new_message_id()
    asking = asyncio.create_task(other.request("target", {"ask": 1}, 30, message_id=mid))
    found: list[str | None] = [None]

    async def look() -> None:
        found[0] = await other.dead_lettered("target", mid)

    try:
        async with asyncio.timeout(10):
            while found[0] is None:
                await look()
                await asyncio.sleep(0)  # a yield: the memory bus answers without one
    finally:
        asking.cancel()
    assert found[0] == f"refused: {Verdict.BAD_MAC.value}"
    assert await other.dead_lettered("target", other.new_message_id()) is None
    assert not target.got
