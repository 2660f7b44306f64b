"""What code ported from the seed framework relies on (see docs/mas.md).

Each test here failed before massgen.mas matched the framework on that point.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace

import pytest

from massgen.mas import Agent, AgentMessage, BusSettings

from .helpers import FAST, Bus, Recorder, until, wait_for


async def test_requests_expect_a_reply_and_plain_messages_do_not(bus: Bus) -> None:
    seen: list[tuple[str, bool, bool]] = []
    two = asyncio.Event()

    class Server(Agent):
        async def on_message(self, message: AgentMessage) -> None:
            seen.append((message.payload["what"], message.expects_reply, message.is_reply))
            if message.expects_reply:
                await message.reply({"ok": True})
            if len(seen) == 2:
                two.set()

    await bus.agent(Server, "server").start()
    client = bus.agent(Agent, "client")
    await client.start()
    await client.send("server", {"what": "note"})
    reply = await client.request("server", {"what": "question"}, timeout=10)
    await until(two)
    assert sorted(seen) == [("note", False, False), ("question", True, False)]
    assert (reply.is_reply, reply.expects_reply) == (True, False)


async def test_request_returns_the_reply_message_like_the_framework(bus: Bus) -> None:
    await bus.agent(Recorder, "server").start()
    client = bus.agent(Agent, "client")
    await client.start()
    response = await client.request("server", {"data": "x"}, timeout=10)
    assert isinstance(response, AgentMessage)
    assert response.payload["echo"] == {"data": "x"}
    assert (response.sender_id, response.target_id) == ("server", "client")


async def test_reply_to_a_plain_message_raises_and_sends_nothing(bus: Bus) -> None:
    errors: list[BaseException] = []

    class Bad(Agent):
        async def on_message(self, message: AgentMessage) -> None:
            try:
                await message.reply({"data": "bad"})
            except RuntimeError as e:
                errors.append(e)
            await self.send(message.sender_id, {"done": True})

    await bus.agent(Bad, "bad").start()
    sender = bus.agent(Recorder, "sender")
    arrived = sender.expect(1)
    await sender.start()
    await sender.send("bad", {"data": "test"})
    await until(arrived)
    # had reply() sent anything, it would have reached the sender before "done"
    assert [m.payload for m in sender.got] == [{"done": True}]
    [error] = errors
    assert "does not have correlation ID" in str(error)  # the framework's words, ours now
    assert str(sender.got[0].sender_id) == "bad"


async def test_request_with_no_timeout_waits_until_the_reply(bus: Bus) -> None:
    release = asyncio.Event()
    holding = asyncio.Event()

    class Slow(Agent):
        async def on_message(self, message: AgentMessage) -> None:
            holding.set()
            await release.wait()
            await message.reply({"late": True})

    await bus.agent(Slow, "slow").start()
    client = bus.agent(Agent, "client")
    await client.start()
    call = asyncio.ensure_future(client.request("slow", {}, timeout=None))
    await until(holding)
    assert not call.done()
    release.set()
    async with asyncio.timeout(10):
        response = await call
    assert response.payload == {"late": True}


def test_the_default_request_timeout_is_documented_as_30_seconds() -> None:
    import inspect

    assert inspect.signature(Agent.request).parameters["timeout"].default == 30.0
    assert "30 seconds by default" in (Agent.request.__doc__ or "")


class Abort(BaseException):
    """Not an Exception: what a test framework's outcome or a library's control flow is."""


@pytest.mark.parametrize("raised", [Abort, asyncio.CancelledError])
async def test_a_handler_raising_a_base_exception_fails_that_message_only(
    bus: Bus, raised: type[BaseException], caplog: pytest.LogCaptureFixture
) -> None:
    attempts: list[int] = []
    handled: list[int] = []
    later = asyncio.Event()

    class Fragile(Agent):
        async def on_message(self, message: AgentMessage) -> None:
            if message.payload["n"] == 0:
                attempts.append(message.attempt)
                raise raised()
            handled.append(message.payload["n"])
            if len(handled) == 3:
                later.set()

    # one worker: had it died, nothing after the first message would be handled
    await bus.agent(Fragile, "fragile", concurrency=1).start()
    sender = bus.agent(Agent, "sender")
    await sender.start()
    for n in range(4):
        await sender.send("fragile", {"n": n})
    await until(later)
    assert handled == [1, 2, 3]
    await wait_for(lambda: len(attempts) == 3, what="the failed message's redeliveries")
    assert attempts == [1, 2, 3]  # redelivered like any failure, then dead-lettered
    await wait_for(lambda: "BaseException" in caplog.text, what="the log line")


async def test_request_returns_after_the_local_handlers_reply_returned(bus: Bus) -> None:
    """The seed's tests count handled requests right after request() returns: when both
    agents share a process, the handler's code after ``reply()`` has run by then (Redis
    tends to wake the requester's blocked read before it answers the committer)."""
    holding = asyncio.Event()
    release = asyncio.Event()

    class Counting(Agent):
        handled = 0

        async def on_message(self, message: AgentMessage) -> None:
            holding.set()
            await release.wait()  # the requester is blocked reading its replies by now
            await message.reply({"n": self.handled})
            self.handled += 1

    server = bus.agent(Counting, "server")
    client = bus.agent(Agent, "client")
    await server.start()
    await client.start()
    for i in range(20):
        holding.clear()
        release.clear()
        call = asyncio.ensure_future(client.request("server", {}, timeout=10))
        await until(holding)
        release.set()
        response = await call
        assert (response.payload["n"], server.handled) == (i, i + 1)


async def test_stop_cancels_a_waiting_handler_at_once_and_its_message_comes_back(
    bus: Bus,
) -> None:
    holding = asyncio.Event()
    attempts: list[int] = []

    class Sleeper(Agent):
        async def on_message(self, message: AgentMessage) -> None:
            attempts.append(message.attempt)
            holding.set()
            await asyncio.Event().wait()  # a handler waiting for something that never comes

    default = BusSettings()
    assert default.drain_timeout == 0
    settings = replace(FAST, drain_timeout=default.drain_timeout)
    sleeper = bus.agent(Sleeper, "sleeper", settings=settings)
    await sleeper.start()
    sender = bus.agent(Agent, "sender")
    await sender.start()
    await sender.send("sleeper", {})
    await until(holding)
    async with asyncio.timeout(1.5):  # well under FAST's own 2 s drain, let alone 10 s
        await sleeper.stop()
    holding.clear()
    again = bus.agent(Sleeper, "sleeper", settings=settings)
    await again.start()
    await until(holding)  # given back at stop, so the next start takes it at once
    assert attempts == [1, 2]


async def test_a_drain_timeout_lets_a_running_handler_finish(bus: Bus) -> None:
    holding = asyncio.Event()
    release = asyncio.Event()
    finished: list[int] = []

    class Slow(Agent):
        async def on_message(self, message: AgentMessage) -> None:
            holding.set()
            await release.wait()
            finished.append(message.attempt)

    slow = bus.agent(Slow, "slow", settings=replace(FAST, drain_timeout=30.0))
    await slow.start()
    sender = bus.agent(Agent, "sender")
    await sender.start()
    await sender.send("slow", {})
    await until(holding)
    stopping = asyncio.ensure_future(slow.stop())
    await wait_for(lambda: slow.status == "stopping", what="stop to begin")
    assert not stopping.done()
    release.set()
    async with asyncio.timeout(10):
        await stopping
    assert finished == [1]
    stats = {s.agent_id: s for s in await bus.transport().inbox_stats()}
    assert stats["slow"].waiting == 0  # acknowledged, not given back


async def test_message_id_and_timestamp_keep_the_frameworks_names(bus: Bus) -> None:
    b = bus.agent(Recorder, "b")
    arrived = b.expect(1)
    await b.start()
    a = bus.agent(Agent, "a")
    await a.start()
    before = time.time()
    await a.send("b", {})
    await until(arrived)
    [m] = b.got
    assert m.message_id == m.id and m.message_id
    assert m.timestamp == m.created_at and before - 1 <= m.timestamp <= time.time()


async def test_reset_state_restores_defaults_and_deletes_what_is_stored(bus: Bus) -> None:
    from pydantic import BaseModel

    class Counter(BaseModel):
        count: int = 0
        name: str = "fresh"

    a = bus.agent(Agent, "counter", state_model=Counter)
    await a.start()
    await a.update_state({"count": 7, "name": "used"})
    await a.reset_state()
    assert (a.state.count, a.state.name) == (0, "fresh")
    assert await a.transport.load_state("counter") == {}
    await a.stop()
    again = bus.agent(Agent, "counter", state_model=Counter)
    await again.start()
    assert (again.state.count, again.state.name) == (0, "fresh")

    plain = bus.agent(Agent, "plain")
    await plain.start()
    await plain.update_state({"x": 1})
    await plain.reset_state()
    assert plain.state == {}
    assert await plain.transport.load_state("plain") == {}
    stopped = bus.agent(Agent, "stopped")
    with pytest.raises(RuntimeError, match="start it first"):
        await stopped.reset_state()


async def test_wait_transport_ready_returns_once_started_and_times_out_before(bus: Bus) -> None:
    a = bus.agent(Agent, "ready")
    with pytest.raises(TimeoutError):
        await a.wait_transport_ready(timeout=0.05)
    waiter = asyncio.ensure_future(a.wait_transport_ready())
    await asyncio.sleep(0)
    assert not waiter.done()
    await a.start()
    await asyncio.wait_for(waiter, 5)
    await a.wait_transport_ready(timeout=0)  # started: at once
    await a.stop()
    with pytest.raises(TimeoutError):
        await a.wait_transport_ready(timeout=0.05)


async def test_token_is_random_per_start_and_only_its_hash_is_registered(bus: Bus) -> None:
    import hashlib

    a = bus.agent(Agent, "tok")
    assert a.token is None
    await a.start()
    first = a.token
    assert isinstance(first, str) and len(first) >= 32
    [record] = [r for r in await a.transport.discover() if r.id == "tok"]
    assert record.token_hash == hashlib.sha256(first.encode()).hexdigest()
    assert first not in record.model_dump_json()
    await a.stop()
    await a.start()
    assert a.token != first
    other = bus.agent(Agent, "tok2")
    await other.start()
    assert other.token not in (a.token, first)


async def test_on_start_may_wait_for_the_transport_and_send(bus: Bus) -> None:
    """The seed signals readiness before ``on_start``: code that awaits it there must not
    hang."""
    arrived = asyncio.Event()

    class Greeter(Agent):
        async def on_start(self) -> None:
            await self.wait_transport_ready(timeout=5)
            await self.send("listener", {"hello": self.id})

    class Listener(Agent):
        async def on_message(self, message: AgentMessage) -> None:
            if message.payload == {"hello": "greeter"}:
                arrived.set()

    await bus.agent(Listener, "listener").start()
    await bus.agent(Greeter, "greeter").start()
    await until(arrived)
