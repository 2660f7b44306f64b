"""Token deltas of remote turns, streamed to the run's feed (a bus agent from a small pool of
ids) as numbered one-way messages, one per :data:`INTERVAL`; the reply stays the answer."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from massgen import events as ev
from massgen.distributed.codec import TOOL_EVENTS, tool_events_from_list, tool_events_to_list
from massgen.errors import MassGenError
from massgen.mas import Agent as BusAgent
from massgen.mas import AgentIdTaken, AgentMessage, Transport

log = logging.getLogger(__name__)

FEED_PREFIX = "massgen-live-"
POOL = 64  # feed ids tried before a run gives up streaming (its turns show whole answers)
INTERVAL = 0.02  # seconds between two delta messages of one turn

OnDelta = Callable[[str], None]


@dataclass(slots=True)
class _Sink:
    agent: str
    on_delta: OnDelta
    on_event: ev.Subscriber | None = None
    last: int = 0
    shown: list[str] = field(default_factory=list)
    heard: set[tuple[str, str]] = field(default_factory=set)


class Feed(BusAgent):
    """Hands the deltas workers stream for this run's turns to each turn's ``on_delta``."""

    def __init__(self, agent_id: str, **bus: Any) -> None:
        super().__init__(agent_id, ["live"], concurrency=1, **bus)
        self._sinks: dict[str, _Sink] = {}

    def open(
        self, key: str, agent: str, on_delta: OnDelta, on_event: ev.Subscriber | None = None
    ) -> None:
        """Pass on the deltas (and tool events) ``agent`` sends for turn ``key``."""
        self._sinks[key] = _Sink(agent, on_delta, on_event)

    def close(self, key: str) -> tuple[str, set[tuple[str, str]]]:
        """Stop turn ``key``; the text shown so far and the tool events passed on."""
        sink = self._sinks.pop(key, None)
        return ("".join(sink.shown), sink.heard) if sink is not None else ("", set())

    async def on_message(self, message: AgentMessage) -> None:
        piece = message.payload.get("delta")
        if not isinstance(piece, dict):
            return
        sink = self._sinks.get(str(piece.get("key")))
        seq, text = piece.get("seq"), piece.get("text")
        if (
            sink is None  # a turn already answered, or a run that held this id before
            or message.sender_id != sink.agent
            or not isinstance(seq, int)
            or not isinstance(text, str)
            or seq <= sink.last  # a duplicate, or overtaken by a newer piece
        ):
            return
        sink.last = seq
        if text:
            sink.shown.append(text)
            sink.on_delta(text)
        if sink.on_event is not None and piece.get("events"):
            try:
                heard = tool_events_from_list(piece["events"])
            except MassGenError:
                return  # the reply carries them too
            for event in heard:
                sink.heard.add(event_id(event))
                sink.on_event(event)


class LiveFeeds:
    """The run's feed, started on the first turn that streams and stopped with the run."""

    def __init__(self, transport: Transport, **bus: Any) -> None:
        self._bus = {"transport": transport, **bus}  # secret, settings
        self._feed: Feed | None = None
        self._tried = False
        self._lock = asyncio.Lock()

    async def feed(self) -> Feed | None:
        """The feed, or ``None`` when none could be started (turns then are not streamed)."""
        async with self._lock:
            if self._tried:
                return self._feed
            self._tried = True
            for i in range(POOL):
                feed = Feed(f"{FEED_PREFIX}{i}", **self._bus)
                try:
                    await feed.start()
                except AgentIdTaken:
                    continue  # another run's
                except MassGenError as e:
                    log.warning("no live token stream from workers: %s", e)
                    return None
                self._feed = feed
                return feed
            log.warning("no live token stream from workers: %d runs already stream", POOL)
            return None

    async def stop(self) -> None:
        feed, self._feed = self._feed, None
        with contextlib.suppress(MassGenError):
            if feed is not None:
                await feed.stop()


def event_id(event: ev.Event) -> tuple[str, str]:
    """What tells a turn's tool events apart: kind and call id."""
    return (event.kind, str(getattr(event, "call_id", "")))


class DeltaPump:
    """A worker's ``on_delta`` for one turn: forwards deltas and tool events to the run's
    feed, coalesced (one message per ``interval`` at most) and numbered."""

    def __init__(self, agent: BusAgent, to: str, key: str, interval: float = INTERVAL) -> None:
        self._agent, self._to, self._key, self._interval = agent, to, key, interval
        self._buffer: list[str] = []
        self._events: list[ev.Event] = []
        self._seq = 0
        self.sent = 0
        self._task: asyncio.Task[None] | None = None
        self._closing = asyncio.Event()

    def __call__(self, text: str) -> None:
        if text:
            self._add(self._buffer, text)

    def event(self, event: ev.Event) -> None:
        if event.kind in TOOL_EVENTS:
            self._add(self._events, event)

    def _add(self, into: list[Any], item: object) -> None:
        if not self._closing.is_set():
            into.append(item)
            if self._task is None:
                self._task = asyncio.ensure_future(self._run())

    async def close(self) -> None:
        """Send what is left (before the reply is committed, so it usually arrives first)."""
        self._closing.set()
        if self._task is not None:
            await self._task
        await self._flush()

    def cancel(self) -> None:
        self._closing.set()
        if self._task is not None:
            self._task.cancel()

    async def _run(self) -> None:
        """Send what came in, then wait out the interval (or the close); stop when idle."""
        try:
            while self._buffer or self._events:
                await self._flush()
                if self._closing.is_set():
                    return
                with contextlib.suppress(TimeoutError):  # pace: one message per interval
                    async with asyncio.timeout(self._interval):
                        await self._closing.wait()
        finally:
            self._task = None

    async def _flush(self) -> None:
        if not (self._buffer or self._events):
            return
        text, events = "".join(self._buffer), tool_events_to_list(self._events)
        self._buffer, self._events = [], []
        self._seq += 1
        piece: dict[str, Any] = {"key": self._key, "seq": self._seq, "text": text}
        if events:
            piece["events"] = events
        try:
            await self._agent.send(self._to, {"delta": piece})
            self.sent += 1
        except MassGenError as e:  # the live view misses a piece; the reply has the answer
            log.debug("agent %s: a delta was not sent: %s", self._agent.id, e)
