"""Token deltas of remote turns, streamed to the run as the worker's model produces them:
in process and over real Redis, coalesced on the worker, de-duplicated on the run."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from massgen import events as ev
from massgen.agents.agent import Agent
from massgen.backends.base import Backend
from massgen.backends.function import FunctionBackend
from massgen.distributed import Worker, distributed
from massgen.distributed.connect import Feed, LiveFeeds
from massgen.distributed.worker import FEED_PREFIX, DeltaPump
from massgen.mas import AgentMessage, MemoryHub, MemoryTransport
from massgen.orchestrator import Orchestrator
from massgen.types import Completion, CompletionRequest, StreamChunk, Turn, Usage
from tests.mas.helpers import FAST, SHARED_REDIS


class Gated(Backend):
    """Streams ``first``, waits for ``gate``, then streams ``rest``."""

    provider = "gated"

    def __init__(self, first: list[str], rest: list[str]) -> None:
        super().__init__(model="gated")
        self.first, self.rest = first, rest
        self.gate = asyncio.Event()
        self.held = asyncio.Event()
        self.streamed = 0

    async def complete(self, request: CompletionRequest) -> Completion:
        await self.gate.wait()
        return Completion(text="".join(self.first + self.rest), model="gated", usage=Usage(1, 1))

    async def stream(self, request: CompletionRequest) -> AsyncIterator[StreamChunk]:
        self.streamed += 1
        for piece in self.first:
            yield StreamChunk(delta=piece)
        self.held.set()
        await self.gate.wait()
        for piece in self.rest:
            yield StreamChunk(delta=piece)
        text = "".join(self.first + self.rest)
        yield StreamChunk(completion=Completion(text=text, model="gated", usage=Usage(1, 1)))


def _bus(kind: str, prefix: str) -> dict[str, Any]:
    if kind == "memory":
        return {"hub": MemoryHub()}
    return {"redis_url": SHARED_REDIS, "prefix": prefix}


@pytest.mark.parametrize("kind", ["memory", "redis"])
async def test_a_remote_turn_streams_its_tokens_before_the_answer(kind: str, prefix: str):
    bus = _bus(kind, prefix)
    backend = Gated(["Hel", "lo"], [" wor", "ld"])
    host = Orchestrator([Agent("ada", backend, role="r")])
    caller = Orchestrator([Agent("ada", FunctionBackend(lambda r: "local"), role="r")])
    pieces: list[str] = []
    first = asyncio.Event()

    def on_delta(text: str) -> None:
        pieces.append(text)
        first.set()

    async with Worker(host, settings=FAST, **bus), distributed(caller, settings=FAST, **bus):
        ask = asyncio.ensure_future(caller.handles["ada"].ask(Turn("answer", "q"), on_delta))
        async with asyncio.timeout(10):
            await first.wait()  # tokens arrive while the worker's model is still held
        assert backend.held.is_set() and not backend.gate.is_set() and not ask.done()
        assert "".join(pieces) == "Hello"
        backend.gate.set()
        done = await asyncio.wait_for(ask, 10)
    assert done.text == "Hello world" and "".join(pieces) == "Hello world"
    assert backend.streamed == 1


async def test_without_a_listener_the_worker_does_not_stream():
    hub = MemoryHub()
    backend = Gated(["a"], ["b"])
    backend.gate.set()
    host = Orchestrator([Agent("ada", backend, role="r")])
    caller = Orchestrator([Agent("ada", FunctionBackend(lambda r: "local"), role="r")])
    async with Worker(host, hub=hub, settings=FAST), distributed(caller, hub=hub, settings=FAST):
        done = await caller.handles["ada"].ask(Turn("answer", "q"))
    assert done.text == "ab" and backend.streamed == 0  # one plain request


async def test_the_live_view_gets_a_remote_agents_tokens_as_events(prefix: str):
    backend = Gated(["Paris", " is"], [" the", " capital."])
    backend.gate.set()
    events: list[ev.Event] = []
    host = Orchestrator([Agent("ada", backend, role="r")], strategy="parallel")
    caller = Orchestrator(
        [Agent("ada", FunctionBackend(lambda r: "local"), role="r")],
        strategy="parallel",
        subscribers=[events.append],
    )
    bus = _bus("redis", prefix)
    async with Worker(host, settings=FAST, **bus), distributed(caller, settings=FAST, **bus):
        result = await caller.arun("Capital of France?")
    deltas = [e.text for e in events if isinstance(e, ev.TokenDelta) and e.agent == "ada"]
    assert "".join(deltas) == result.final_answer == "Paris is the capital."
    assert backend.streamed == 1


def _delta(sender: str, key: str, seq: Any, text: Any) -> AgentMessage:
    payload = {"delta": {"key": key, "seq": seq, "text": text}}
    return AgentMessage(id=f"m{seq}", sender_id=sender, target_id="feed", payload=payload)


async def test_the_feed_drops_duplicates_late_pieces_and_strangers():
    feed = Feed("feed", transport=MemoryTransport(MemoryHub()), secret=None, settings=FAST)
    got: list[str] = []
    other: list[str] = []
    feed.open("k", "ada", got.append)
    feed.open("k2", "bob", other.append)
    for message in [
        _delta("ada", "k", 1, "a"),
        _delta("ada", "k", 1, "a"),  # delivered twice
        _delta("ada", "k", 3, "c"),
        _delta("ada", "k", 2, "b"),  # overtaken by piece 3
        _delta("mallory", "k", 4, "x"),  # not the agent asked
        _delta("ada", "k2", 5, "y"),  # another turn's key, from the wrong agent
        _delta("ada", "nope", 1, "z"),  # a turn this feed does not know
        _delta("ada", "k", "4", "s"),  # malformed
        AgentMessage(id="x", sender_id="ada", target_id="feed", payload={"hello": 1}),
    ]:
        await feed.on_message(message)
    assert got == ["a", "c"] and other == []
    assert feed.close("k") == ("ac", set()) and feed.close("k") == ("", set())
    await feed.on_message(_delta("ada", "k", 9, "late"))  # after the answer: dropped
    assert got == ["a", "c"]


class Recorder:
    """Stands in for the worker's bus agent: records what the pump sends."""

    id = "ada"

    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any]]] = []

    async def send(self, target: str, payload: dict[str, Any]) -> None:
        self.sent.append((target, payload))


async def test_the_pump_coalesces_and_numbers_pieces():
    bus = Recorder()
    pump = DeltaPump(bus, "massgen-live-0", "k", interval=60.0)  # type: ignore[arg-type]
    started = time.perf_counter()
    for i in range(200):
        pump(f"{i},")
    await asyncio.sleep(0)  # the first flush goes out at once
    for i in range(200, 400):
        pump(f"{i},")
    await pump.close()  # the rest goes out at once, without waiting out the interval
    assert time.perf_counter() - started < 30
    pieces = [p["delta"] for _, p in bus.sent]
    assert [p["seq"] for p in pieces] == [1, 2]
    assert "".join(p["text"] for p in pieces) == "".join(f"{i}," for i in range(400))
    assert {t for t, _ in bus.sent} == {"massgen-live-0"} and pump.sent == 2
    pump("after")  # a closed pump sends nothing more
    assert len(bus.sent) == 2


async def test_runs_streaming_at_once_hold_feeds_of_their_own():
    hub = MemoryHub()
    transports = [MemoryTransport(hub) for _ in range(3)]
    feeds = [LiveFeeds(t, settings=FAST) for t in transports]
    try:
        got = [await f.feed() for f in feeds]
        ids = [g.id for g in got if g is not None]
        assert ids == [f"{FEED_PREFIX}0", f"{FEED_PREFIX}1", f"{FEED_PREFIX}2"]
        await feeds[0].stop()
        again = LiveFeeds(MemoryTransport(hub), settings=FAST)
        reused = await again.feed()
        assert reused is not None and reused.id == f"{FEED_PREFIX}0"  # ids are reused
        await again.stop()
    finally:
        for f in feeds:
            await f.stop()


async def test_a_workers_tool_calls_reach_the_run_while_the_tool_runs() -> None:
    """The ToolCalled event arrives live (the tool is still held); the reply does not show
    it a second time."""
    from massgen.tools import tool
    from massgen.types import ToolCall

    hub = MemoryHub()
    release = asyncio.Event()

    @tool
    async def lookup(what: str) -> str:
        """Look something up (held until the test releases it)."""
        await release.wait()
        return f"found {what}"

    def model(request: CompletionRequest) -> Completion:
        if request.messages[-1].role == "tool":
            return Completion(text="Done.", model="m", usage=Usage(2, 1))
        call = ToolCall("call_1", "lookup", {"what": "x"})
        return Completion(text="", model="m", usage=Usage(1, 1), tool_calls=(call,))

    host = Orchestrator([Agent("ada", FunctionBackend(model, tools=True), tools=[lookup])])
    caller = Orchestrator([Agent("ada", FunctionBackend(lambda r: "local", tools=True))])
    heard: list[ev.Event] = []
    called = asyncio.Event()

    def on_event(event: ev.Event) -> None:
        heard.append(event)
        if isinstance(event, ev.ToolCalled):
            called.set()

    from massgen.tools import ToolContext

    async with Worker(host, hub=hub, settings=FAST), distributed(caller, hub=hub, settings=FAST):
        ask = asyncio.ensure_future(
            caller.handles["ada"].ask(
                Turn("answer", "q"), lambda text: None, ToolContext(emit=on_event)
            )
        )
        async with asyncio.timeout(10):
            await called.wait()  # live: the tool has not returned yet
        assert not release.is_set() and not ask.done()
        release.set()
        done = await asyncio.wait_for(ask, 10)
    assert done.text == "Done."
    kinds = [(e.kind, getattr(e, "call_id", "")) for e in heard]
    assert kinds == [("ToolCalled", "call_1"), ("ToolResult", "call_1")]  # each exactly once


async def test_a_turn_in_flight_when_its_worker_stops_is_answered_once() -> None:
    """Stopping drains: the turn running then finishes, its reply is sent, and it is never
    run again (by this worker or another)."""
    hub = MemoryHub()
    backend = Gated([], ["Paris."])
    host = Orchestrator([Agent("ada", backend, role="r")])
    caller = Orchestrator([Agent("ada", FunctionBackend(lambda r: "local"), role="r")])
    worker = Worker(host, hub=hub, settings=FAST)
    await worker.start()
    try:
        async with distributed(caller, hub=hub, settings=FAST):
            ask = asyncio.ensure_future(caller.handles["ada"].ask(Turn("answer", "q"), print))
            async with asyncio.timeout(10):
                await backend.held.wait()
            stopping = asyncio.ensure_future(worker.stop())
            await asyncio.sleep(0)  # let stop() begin draining
            backend.gate.set()
            done = await asyncio.wait_for(ask, 10)
            await asyncio.wait_for(stopping, 10)
    finally:
        await worker.stop()
    assert done.text == "Paris."
    assert backend.streamed == 1  # run once: not redelivered after the stop
    assert [a.processed for a in worker.hosted] == [1]
