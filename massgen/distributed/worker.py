"""Host a team's LLM agents on the bus, so runs anywhere can send them turns.

Each hosted agent is one :class:`massgen.mas.Agent` whose id is the agent's name and which
is always a replica: start the same agent in several workers (on several machines) and
they share its inbox, each turn going to one of them. A turn is answered with the backend
the orchestrator itself would use (wrapped in its retries), so a remote turn costs and
fails exactly like a local one; the reply carries the completion or the error, and the
caller re-raises that error as the same class (see :mod:`massgen.distributed.codec`).

A turn carries the memory the run owns (the session's summary and exchanges, recalled
long-term items: see :mod:`massgen.memory.short_term`); the worker composes the request from
it with its own copy of the agent, never from the agent's own memory, so the turns of many
runs and sessions it answers at once never see each other's. A summary it had to write
goes back in the reply for the run to store. When the run asks for it, the turn's token
deltas are streamed to the run's feed as they come (see :mod:`massgen.distributed.live`).

Delivery is at least once: a worker that dies mid-turn has its turn redelivered to another
replica after the lease, and only the first reply to a request counts.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import logging
import socket
import textwrap
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

from massgen import events as ev
from massgen.agents.handle import LocalHandle
from massgen.agents.loop import tool_listener
from massgen.backends.base import Backend, layers
from massgen.distributed.codec import (
    completion_to_dict,
    error_to_dict,
    folded_to_dict,
    memory_from_dict,
    tool_events_to_list,
    turn_from_dict,
)
from massgen.distributed.live import FEED_PREFIX, DeltaPump
from massgen.distributed.timeouts import turn_timeout
from massgen.errors import ConfigError, MassGenError, TransportError
from massgen.mas import Agent as BusAgent
from massgen.mas import (
    AgentMessage,
    BusSettings,
    MemoryHub,
    MessageKind,
    Transport,
    resolve_transport,
)
from massgen.mas.keys import DEFAULT_PREFIX
from massgen.memory.short_term import Folded
from massgen.resilience import RetryingBackend, RetryPolicy
from massgen.types import Completion

if TYPE_CHECKING:
    from massgen.orchestrator import Orchestrator

log = logging.getLogger(__name__)
_HOST = socket.gethostname()

#: Every hosted LLM agent has this capability, besides its own ones.
LLM = "llm"
DEFAULT_CONCURRENCY = 8
#: On stop, turns already running get this long to finish (the bus default cancels at once).
DRAIN_TIMEOUT = 10.0
ROLE_EXCERPT = 60
"""Characters of a role shown in listings (``massgen agents list``)."""


@dataclass(frozen=True, slots=True)
class TurnReport:
    """One turn a worker handled, for its log. ``error`` is set when the turn failed."""

    agent: str
    phase: str
    round: int
    run: str
    seconds: float
    attempt: int
    error: str | None = None
    note: str = ""


OnTurn = Callable[[TurnReport], None]


def role_digest(role: str) -> str:
    """A short fingerprint of a role: callers check they talk to the agent they configured."""
    return hashlib.sha256(role.encode()).hexdigest()[:12]


class HostedAgent(BusAgent):
    """One LLM agent on the bus: answers ``{"turn": ...}`` requests with its backend.

    ``in_flight``, ``processed`` and ``failed`` count this instance's turns; they are part
    of its registry record (re-published when they change), so ``massgen agents list``
    shows them.
    """

    def __init__(
        self,
        handle: LocalHandle,
        *,
        transport: Transport,
        settings: BusSettings,
        secret: str | None,
        concurrency: int,
        team: str | None = None,
        on_turn: OnTurn | None = None,
    ) -> None:
        agent = handle.agent
        backend = handle.backend  # built now: a bad backend stops the worker before Redis
        policy = _retry_policy(backend)
        raw = agent.backend
        static = {
            "backend": raw.provider,
            "model": agent.model or raw.model,
            "role": textwrap.shorten(agent.role, ROLE_EXCERPT, placeholder="…"),
            "role_digest": role_digest(agent.role),
            "tools": backend.supports_tools,
            "fallback": agent.fallback,
            "team": team,
            "turn_timeout": turn_timeout(getattr(raw, "timeout", None), policy, settings.lease),
            "heartbeat_ttl": settings.heartbeat_ttl,
            "concurrency": concurrency,
        }
        super().__init__(
            agent.name,
            [*agent.capabilities, LLM],
            transport=transport,
            metadata=static,
            replica=True,
            secret=secret,
            concurrency=concurrency,
            settings=settings,
        )
        self.handle = handle
        self.in_flight = 0
        self.processed = 0
        self.failed = 0
        self._on_turn = on_turn

    @property
    def address(self) -> str:
        """This instance, as the run's log names the worker a turn went to: host/instance."""
        return f"{_HOST}/{self.instance_id}"

    def get_metadata(self) -> dict[str, Any]:
        return {
            **super().get_metadata(),
            "in_flight": self.in_flight,
            "processed": self.processed,
            "failed": self.failed,
        }

    async def on_message(self, message: AgentMessage) -> None:
        if message.kind is not MessageKind.REQUEST:
            log.warning("agent %s ignored a %s from %s", self.id, message.kind, message.sender_id)
            return
        started = time.perf_counter()
        run = str(message.payload.get("run") or message.sender_id)
        report = TurnReport(self.id, "?", 0, run, 0.0, message.attempt)
        try:
            turn = turn_from_dict(message.payload.get("turn"))
            memory = memory_from_dict(message.payload.get("memory") or {})
        except TransportError as e:
            await self._finish(message, report, e)
            return
        report = dataclasses.replace(report, phase=turn.phase, round=turn.round)
        deadline = message.payload.get("deadline")
        if isinstance(deadline, int | float) and time.time() > deadline:
            # the caller gave up on this turn long ago: do not pay for it
            expired = TransportError(f"agent {self.id!r}: the turn expired before a worker took it")
            await self._finish(message, report, expired)
            return
        self.in_flight += 1
        await self._publish()
        retries: list[str] = []

        def on_retry(attempt: int, limit: int, wait: float, error: BaseException) -> None:
            retries.append(f"retry {attempt}/{limit} after {wait:.1f}s ({error})")

        pump = self._pump(message.payload.get("stream"))
        heard: list[ev.Event] = []  # the turn's tool calls, sent back with the answer

        def on_event(event: ev.Event) -> None:
            heard.append(event)
            if pump is not None:
                pump.event(event)  # and live, when the run streams

        listening = tool_listener.set(on_event)
        written: list[Folded] = []  # a summary written before the answer failed still counts
        folded: Folded | None = None
        try:
            outcome: Completion | Exception
            outcome, folded = await self.handle.answer(turn, memory, pump, written.append, on_retry)
        except asyncio.CancelledError:
            if pump is not None:
                pump.cancel()
            raise  # stopping: the turn goes back to the inbox for another replica
        except Exception as e:
            outcome = e
            folded = written[0] if written else None
        finally:
            tool_listener.reset(listening)
            self.in_flight -= 1
        if pump is not None:
            await pump.close()
        report = dataclasses.replace(
            report, seconds=time.perf_counter() - started, note="; ".join(retries)
        )
        await self._finish(message, report, outcome, folded, heard)

    def _pump(self, stream: Any) -> DeltaPump | None:
        """Where the run wants this turn's deltas, if it wants them."""
        if not isinstance(stream, dict):
            return None
        to, key = stream.get("to"), stream.get("key")
        if not (isinstance(to, str) and to.startswith(FEED_PREFIX) and isinstance(key, str)):
            return None
        return DeltaPump(self, to, key)

    async def _finish(
        self,
        message: AgentMessage,
        report: TurnReport,
        outcome: Completion | Exception,
        folded: Folded | None = None,
        heard: list[ev.Event] | None = None,
    ) -> None:
        """Count the turn, publish the counters, reply, then log."""
        reply: dict[str, Any] = {"worker": self.address}
        if isinstance(outcome, Completion):
            self.processed += 1
            reply["completion"] = completion_to_dict(outcome)
            if folded is not None:
                reply["folded"] = folded_to_dict(folded)
            if events := tool_events_to_list(heard or []):
                reply["events"] = events
        else:
            self.failed += 1
            reply["error"] = error_to_dict(outcome)
            if folded is not None:
                reply["folded"] = folded_to_dict(folded)
            report = dataclasses.replace(report, error=_short(outcome))
        await self._publish()
        if not await message.reply(reply):
            discarded = "reply discarded (answered elsewhere)"
            report = dataclasses.replace(
                report, note="; ".join(filter(None, [report.note, discarded]))
            )
        if self._on_turn is not None:
            self._on_turn(report)

    async def _publish(self) -> None:
        """Re-register this instance's record so the registry shows the new counters."""
        try:
            await self.publish_record()
        except MassGenError as e:
            log.warning("agent %s: could not publish its counters: %s", self.id, e)


class Worker:
    """Hosts some (by default all) agents of an orchestrator's team on the bus.

    ``agents`` names the ones to host; an unknown name is a
    :class:`~massgen.errors.ConfigError` with a suggestion. The bus is ``redis_url`` (or
    ``$MASSGEN_REDIS_URL``, else ``redis://localhost:6379``), a ``transport`` you built, or
    an in-process ``hub``.
    ``concurrency`` is how many turns each hosted agent runs at once; a worker fetches no
    more than that, so the rest stays in the inbox for other replicas.
    """

    def __init__(
        self,
        orchestrator: Orchestrator,
        agents: Sequence[str] | None = None,
        *,
        redis_url: str | None = None,
        prefix: str = DEFAULT_PREFIX,
        secret: str | None = None,
        concurrency: int = DEFAULT_CONCURRENCY,
        settings: BusSettings | None = None,
        transport: Transport | None = None,
        hub: MemoryHub | None = None,
        team: str | None = None,
        on_turn: OnTurn | None = None,
    ) -> None:
        if concurrency < 1:
            raise ConfigError("concurrency must be at least 1", key="concurrency")
        names = list(dict.fromkeys(agents or orchestrator.agents))
        for name in names:
            if name not in orchestrator.agents:
                from massgen.config.suggest import did_you_mean

                raise ConfigError(
                    f"no agent named {name!r} in this team",
                    key="agent",
                    hint=did_you_mean(name, orchestrator.agents)
                    or "the team has: " + ", ".join(orchestrator.agents),
                )
        base = settings or BusSettings(drain_timeout=DRAIN_TIMEOUT)
        bus_settings = dataclasses.replace(base, batch=min(base.batch, concurrency))
        self._transport, self._owns = resolve_transport(
            redis_url, transport=transport, hub=hub, prefix=prefix
        )
        self.where = str(getattr(self._transport, "where", "the in-process bus"))
        self.hosted: list[HostedAgent] = []
        for name in names:
            handle = orchestrator.handles.get(name)
            if not isinstance(handle, LocalHandle):
                raise ConfigError(
                    f"agent {name!r} does not run in this process, so it cannot be hosted here",
                    key="agent",
                )
            self.hosted.append(
                HostedAgent(
                    handle,
                    transport=self._transport,
                    settings=bus_settings,
                    secret=secret,
                    concurrency=concurrency,
                    team=team,
                    on_turn=on_turn,
                )
            )
        self._started: list[HostedAgent] = []

    @property
    def transport(self) -> Transport:
        return self._transport

    async def start(self) -> None:
        """Connect (bad URL or credentials raise a ConfigError here), then register every
        hosted agent."""
        if self._owns:
            await self._transport.connect()
        try:
            for agent in self.hosted:
                await agent.start()
                self._started.append(agent)
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        """Finish turns in progress (within the drain timeout), give back the rest, leave."""
        started, self._started = self._started, []
        try:
            await asyncio.gather(*(a.stop() for a in started))
        finally:
            if self._owns:
                with contextlib.suppress(MassGenError):
                    await self._transport.close()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()


def _retry_policy(backend: Backend) -> RetryPolicy | None:
    """The retry policy somewhere in the chain of wrappers."""
    return next((b.policy for b in layers(backend) if isinstance(b, RetryingBackend)), None)


def _short(error: BaseException) -> str:
    text = str(error) if isinstance(error, MassGenError) else f"{type(error).__name__}: {error}"
    return text.splitlines()[0][:300] if text else type(error).__name__
