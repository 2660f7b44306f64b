"""Traces of runs, built from their events: run → round → agent turn → provider attempt → tool
call, named and attributed after the GenAI semantic conventions, sent over OTLP/HTTP.

Imported only when tracing is on (:func:`massgen.observability.tracing_settings`). Each
orchestrator and each worker has a :class:`Tracing` of its own; every span is given its parent
and its times from the events (no context variables). A run's events are kept as they come
and turned into spans in one pass when it ends (a remote turn's when it does), then encoded
(:mod:`massgen.observability.otlp`, where it says why not the OpenTelemetry SDK) and sent in
batches (:mod:`massgen.observability.export`).
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from massgen import events as ev
from massgen.observability import Export
from massgen.observability.export import Exporter
from massgen.observability.otlp import CLIENT, INTERNAL, SERVER, Span, parse_traceparent
from massgen.types import NESTED, Completion, Turn

if TYPE_CHECKING:
    from massgen.agents.agent import Agent
    from massgen.config.models import ObservabilityConfig

HELD = 512
"""Events a run's tracer keeps at most before turning them into spans."""
STAGED = ("answer", "review")
"""Phases whose turns run side by side: a ``round N`` span holds them."""

# gen_ai.provider.name (and the older gen_ai.system) where massgen's name differs
_PROVIDER = {"google": "gcp.gemini", "gemini": "gcp.gemini", "xai": "x_ai"}
_SYSTEM = {"google": "gemini", "gemini": "gemini"}


def _ns(seconds: float) -> int:
    return int(seconds * 1e9)


def _messages(role: str, text: str, finish: str | None = None) -> str:
    """``gen_ai.input.messages`` / ``gen_ai.output.messages``, as JSON."""
    message: dict[str, Any] = {"role": role, "parts": [{"type": "text", "content": text}]}
    if finish is not None:
        message["finish_reason"] = finish
    return json.dumps([message], ensure_ascii=False)


class Tracing(Exporter):
    """The tracer of one orchestrator or worker: its spans' ids, sampler, and their export
    (``export``: where to and how, from the settings and the ``OTEL_*`` variables)."""

    def __init__(
        self, settings: ObservabilityConfig, agents: Mapping[str, Agent], export: Export
    ) -> None:
        super().__init__(export)
        self.capture = settings.capture_content
        self.agents = agents
        self._ids = random.Random()  # seeded from os.urandom
        self.heads: dict[tuple[Any, ...], tuple[str, bytes]] = {}
        """A span's name and its attributes that a key determines, encoded (:meth:`keep`)."""
        self.leads: dict[tuple[Any, ...], bytes] = {}  # a chat span's name, kind, attributes

    def run(self, fallbacks: Mapping[str, str], session: str | None = None) -> RunTracer:
        """A subscriber that traces one run (``fallbacks``: seat → the agent standing in;
        ``session``: the conversation it continues, ``gen_ai.conversation.id``)."""
        return RunTracer(self, fallbacks=fallbacks, session=session)

    def remote_turn(self, traceparent: str, worker: str, agent: str, turn: Turn) -> RunTracer:
        """A subscriber that traces ``turn``, which ``worker`` runs for ``agent``, under the
        run's span of it (``traceparent``; in a trace of its own when empty). Its span is
        open: :meth:`RunTracer.ended` closes it."""
        tracer = RunTracer(self, root=parse_traceparent(traceparent), worker=worker)
        tracer(ev.AgentStarted(agent=agent, phase=turn.phase, round=turn.round, prompt=turn.prompt))
        return tracer

    def model_of(self, agent: str) -> tuple[str, str]:
        """The provider and model ``agent`` asks for, as far as known (its backend is built)."""
        a = self.agents.get(agent)
        built = a.built_backend() if a is not None else None
        model = (a.model if a is not None else None) or (built.model if built else "")
        return (built.provider if built else ""), model or ""

    def ids(self, parent: tuple[bytes, bytes] | None) -> tuple[bytes, bytes, bytes]:
        """A new span's trace id, span id and parent id (a root's: a new trace, no parent)."""
        span = (self._ids.getrandbits(64) or 1).to_bytes(8, "big")
        if parent is not None:
            return parent[0], span, parent[1]
        return (self._ids.getrandbits(128) or 1).to_bytes(16, "big"), span, b""

    def sampled(self, trace_id: bytes, parent: bool | None) -> bool:
        """Whether a trace's root (``parent``: a remote parent's sampled flag) is recorded."""
        how = self.export.sampler
        if how.startswith("parentbased_") and parent is not None:
            return parent
        how = how.removeprefix("parentbased_")
        if how == "always_off":
            return False
        if how == "traceidratio":
            return int.from_bytes(trace_id[8:], "big") < round(self.export.ratio * 2**64)
        return True

    def keep(self, key: tuple[Any, ...], name: str, attrs: Mapping[str, Any]) -> tuple[str, bytes]:
        """Remember ``name`` and ``attrs`` (encoded) as what ``key`` determines: most spans'
        attributes repeat by agent, model and provider, and are encoded once."""
        if len(self.heads) >= 4096:
            self.heads.clear()
            self.leads.clear()
        got = self.heads[key] = name, self._encode.attributes(attrs)
        return got


@dataclass(slots=True)
class _Turn:
    span: Span
    ended: int = 0  # answered at (ns): its span ends with its round, which may still vote
    failed: str = ""  # the status of its last failed attempt: the turn's error.type
    usage: Any = None  # its last attempt's usage, and (``tokens``) its attributes encoded:
    tokens: bytes = b""  # the turn's own when it made one request


@dataclass(slots=True)
class _Stage:
    key: tuple[str, int]
    span: Span
    done: list[_Turn] = field(default_factory=list)
    last: dict[str, _Turn] = field(default_factory=dict)  # by agent: its latest turn
    end: int = 0


class RunTracer:
    """Spans of one run from its events: a subscriber of that run only (one open turn per
    agent). ``root``: the parent of its spans (a worker's: the run's turn, remote)."""

    wants_requests = True  # each provider attempt is a span
    wants_deltas = False
    holds = True  # a run's bus appends events to :attr:`held` (:class:`~massgen.events.EventBus`)
    hears: frozenset[type[ev.Event]]  # the events that make spans (:data:`_HANDLERS`'s keys)

    def __init__(
        self,
        tracing: Tracing,
        *,
        root: tuple[bytes, bytes, bool] | None = None,
        fallbacks: Mapping[str, str] | None = None,
        worker: str = "",
        session: str | None = None,
    ) -> None:
        self._t, self._capture = tracing, tracing.capture
        self._done: list[Span] = []  # ended while events were turned into spans
        self._chats: list[bytes] = []  # provider attempts' spans, written at once
        self._leads = tracing.leads
        self._heads, self._bits = tracing.heads, tracing._ids.getrandbits
        self._number, self._tokens = tracing._encode.number, tracing._encode.tokens
        self._root = root[:2] if root is not None else None  # (trace id, parent span id)
        self._fallbacks = dict(fallbacks or {})
        self._worker = worker
        self._session = session
        self._run: Span | None = None
        self._stage: _Stage | None = None
        self._turns: dict[tuple[str, str], _Turn] = {}
        self._tools: dict[tuple[str, str], tuple[Span, int]] = {}
        self._dropped = ""  # the sampler left the trace out: its traceparent, nothing more to do
        self.held: list[ev.Event] = []  # heard, not turned into spans yet (:meth:`_spans`)
        self._timer: asyncio.TimerHandle | None = None  # the next :meth:`_tick`
        if worker:  # a remote turn: its span is the root here (of a new trace without one)
            if self._root is None:
                self._root = (tracing.ids(None)[0], b"")
            trace, parent = self._root
            if not tracing.sampled(trace, root[2] if root is not None else None):
                self._dropped = f"00-{trace.hex()}-{(parent or trace[8:]).hex()}-00"

    def __call__(self, event: ev.Event) -> None:
        """Keep ``event``: a run's events become spans when it ends (a remote turn's when
        it does), and every export ``delay`` while it runs, or every :data:`HELD` events;
        in one pass, which costs less CPU than one event at a time between the run's own
        work. Only the run's start, which decides whether it is traced at all, is handled
        at once. (A run's bus appends the events between to :attr:`held` itself.)"""
        if self._dropped:
            return
        if isinstance(event, ev.RunStarted):
            self._spans()
            self._run_started(event)
            self._arm()
            return
        held = self.held
        held.append(event)
        if type(event) is ev.RunEnded:
            self._stop()
        elif len(held) >= HELD:
            self._spans()
        else:
            self._arm()

    def _arm(self) -> None:
        """Turn what is held into spans each export ``delay`` (a long run's spans still
        leave as they end, or nearly) until :meth:`_stop`."""
        if self._timer is not None or self._dropped:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        self._timer = loop.call_later(self._t.export.delay, self._tick)

    def _tick(self) -> None:
        self._timer = None
        self._spans()
        self._arm()

    def _stop(self) -> None:
        """The run (or remote turn) ended: what is held becomes spans now, and no timer."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._spans()

    def _spans(self) -> None:
        """Turn the events kept so far into spans, in order."""
        held = self.held
        if not held:
            return
        chunk = held.copy()
        held.clear()  # the same list: the run's bus appends to it
        handlers = _HANDLERS
        for event in chunk:
            handle = handlers.get(type(event))
            if handle is not None:
                handle(self, event)
                if self._dropped:  # the run's start left the trace out
                    break
        if self._done or self._chats:
            done, self._done = self._done, []
            chats, self._chats = self._chats, []
            self._t.queue(done, chats)

    def _end(self, span: Span, at: int) -> None:
        span.stop = at
        self._done.append(span)

    def traceparent(self, agent: str) -> str:
        """The W3C traceparent of ``agent``'s open turn ("" if none; a dropped trace's, so
        that its workers drop theirs too); asked for only by turns sent to a worker, so the
        events held are turned into spans first."""
        self._spans()
        if self._dropped:
            return self._dropped
        turn = self._turns.get((agent, ""))
        return turn.span.traceparent() if turn is not None else ""

    def ended(
        self,
        agent: str,
        turn: Turn,
        outcome: Completion | BaseException,
        cost_of: Callable[[Completion], float] | None = None,
    ) -> None:
        """``agent``'s ``turn`` (opened by :meth:`Tracing.remote_turn`) answered or failed."""
        if isinstance(outcome, Completion):
            cost = cost_of(outcome) if cost_of is not None else 0.0
            self(ev.AgentAnswered.of(outcome, agent, turn.phase, turn.round, cost=cost))
        else:
            self(ev.AgentFailedEvent(agent=agent, error=ev.short_error(outcome)))
        self._stop()

    # -- helpers ----------------------------------------------------------------------------

    def _outer(self) -> Span | None:
        return self._stage.span if self._stage is not None else self._run

    def _turn_of(self, agent: str) -> _Turn | None:
        """The open turn whose requests and tools ``agent``'s are (a fallback's: its seat's)."""
        turn = self._turns.get((agent, "summary")) or self._turns.get((agent, ""))
        if turn is None:
            for seat, backup in self._fallbacks.items():
                if backup == agent and (turn := self._turns.get((seat, ""))) is not None:
                    break
        return turn

    def _start(
        self, name: str, at: float, parent: Span | None, kind: int, attrs: dict[str, Any]
    ) -> Span:
        span_id = (self._bits(64) or 1).to_bytes(8, "big")
        if parent is not None:
            ids = parent.trace_id, span_id, parent.span_id
        elif (root := self._root) is not None:
            ids = root[0], span_id, root[1]
        else:
            ids = self._t.ids(None)
        return Span(self._end, ids, name, kind, int(at * 1e9), attrs)

    def _close_stage(self, at: int = 0, now: float = 0.0) -> None:
        """End the round's span (at ``at``, else its last turn's end, else ``now``: the
        time of the event that ends it) and its turns'."""
        stage, self._stage = self._stage, None
        if stage is None:
            return
        for turn in stage.done:
            turn.span.end(turn.ended)
        stage.span.end(at or stage.end or _ns(now) or None)

    # -- events -----------------------------------------------------------------------------

    def _run_started(self, e: ev.RunStarted) -> None:
        attrs: dict[str, Any] = {
            "gen_ai.operation.name": "invoke_workflow",
            "gen_ai.workflow.name": e.strategy,
            "massgen.strategy": e.strategy,
            "massgen.agents": tuple(e.agents),
        }
        if self._session is not None:
            attrs["gen_ai.conversation.id"] = self._session
        if self._capture:
            attrs["gen_ai.input.messages"] = _messages("user", e.task)
        run = self._start(f"invoke_workflow {e.strategy}", e.at, None, INTERNAL, attrs)
        run.head = self._t._encode.once("massgen.run_id", e.run_id)
        if self._t.sampled(run.trace_id, None):  # else left out (OTEL_TRACES_SAMPLER)
            self._run = run
        else:
            self._dropped = run.traceparent(sampled=False)

    def _agent_started(self, e: ev.AgentStarted) -> None:
        nested = e.phase in NESTED
        key = (e.agent, e.phase if nested else "")
        if (stale := self._turns.pop(key, None)) is not None:
            stale.span.end(_ns(e.at))
        if not nested and not self._worker:
            want = (e.phase, e.round) if e.phase in STAGED else None
            if self._stage is not None and self._stage.key != want:
                self._close_stage(now=e.at)
            if want is not None and self._stage is None:
                attrs = {"massgen.phase": e.phase, "massgen.round": e.round}
                span = self._start(f"round {e.round}", e.at, self._run, INTERNAL, attrs)
                self._stage = _Stage(want, span)
        head = self._heads.get(what := ("turn", e.agent, e.phase, e.round, self._worker))
        if head is None:
            attrs = {
                "gen_ai.operation.name": "invoke_agent",
                "gen_ai.agent.name": e.agent,
                "massgen.phase": e.phase,
                "massgen.round": e.round,
            }
            if self._worker:
                attrs["massgen.worker"] = self._worker
            head = self._t.keep(what, f"invoke_agent {e.agent}", attrs)
        kind = SERVER if self._worker else INTERNAL
        content = {"gen_ai.input.messages": _messages("user", e.prompt)} if self._capture else {}
        span = self._start(head[0], e.at, self._outer(), kind, content)
        span.head = head[1]
        self._turns[key] = _Turn(span)

    def _answered(self, e: ev.AgentAnswered) -> None:
        nested = e.phase in NESTED
        turn = self._turns.pop((e.agent, e.phase if nested else ""), None)
        if turn is None:
            return
        head = self._heads.get(key := ("answered", e.agent, e.answered_by, e.requests, e.cached))
        if head is None:
            provider, model = self._t.model_of(e.answered_by or e.agent)
            attrs: dict[str, Any] = {}
            if provider:
                attrs["gen_ai.provider.name"] = _PROVIDER.get(provider, provider)
            if model:
                attrs["gen_ai.request.model"] = model
            if e.answered_by:
                attrs["massgen.answered_by"] = e.answered_by
            attrs["massgen.requests"], attrs["massgen.cached"] = e.requests, e.cached
            head = self._t.keep(key, "", attrs)
        span, usage = turn.span, e.usage
        span.head += b"".join(
            (
                head[1],
                turn.tokens if usage is turn.usage else self._tokens(usage),
                self._number("massgen.cost", e.cost),
            )
        )
        if self._capture:
            span.attrs["gen_ai.output.messages"] = _messages("assistant", e.text, e.finish)
        turn.ended = int(e.at * 1e9)
        stage = self._stage
        if stage is not None and not nested and stage.key == (e.phase, e.round):
            stage.done.append(turn)  # ended with its round: a vote may still come
            stage.last[e.agent], stage.end = turn, max(stage.end, turn.ended)
        else:
            turn.span.end(turn.ended)

    def _failed(self, e: ev.AgentFailedEvent) -> None:
        turn = self._turns.pop((e.agent, ""), None)
        if turn is None:
            return
        self._unanswered(e.agent, turn)
        turn.span.attrs.update(
            {"error.type": turn.failed or "_OTHER", "massgen.dropped": e.dropped}
        )
        turn.span.fail(e.error)
        turn.span.end(_ns(e.at))
        if self._stage is not None:
            self._stage.end = max(self._stage.end, _ns(e.at))

    def _unanswered(self, agent: str, turn: _Turn) -> None:
        """A turn that ends without an answer: the provider and model it asked, as far as
        known (an answer's say who answered)."""
        provider, model = self._t.model_of(agent)
        if provider:
            turn.span.attrs["gen_ai.provider.name"] = _PROVIDER.get(provider, provider)
        if model:
            turn.span.attrs["gen_ai.request.model"] = model

    def _retrying(self, e: ev.AgentRetrying) -> None:
        if (turn := self._turn_of(e.agent)) is not None:
            attrs = {"massgen.attempt": e.attempt, "massgen.wait": e.wait}
            turn.span.add_event("massgen.retry", attrs, _ns(e.at))

    def _request(self, e: ev.RequestDone) -> None:
        turns = self._turns  # a nested turn's (it says which), else the agent's own
        turn = turns.get((e.agent, e.phase or "summary")) or turns.get((e.agent, ""))
        if turn is None and self._fallbacks:
            turn = self._turn_of(e.agent)
        ok = e.status == "ok"
        head = self._heads.get(
            key := ("chat", e.agent, e.provider, e.model, e.attempt, e.status, e.finish)
        )
        if head is None:
            asked = e.asked or e.model  # the model the team file names
            attrs: dict[str, Any] = {
                "gen_ai.operation.name": "chat",
                "gen_ai.provider.name": _PROVIDER.get(e.provider, e.provider),
                "gen_ai.system": _SYSTEM.get(e.provider, e.provider),
                "gen_ai.request.model": asked,
                "massgen.attempt": e.attempt,
            }
            if ok and e.model:
                attrs["gen_ai.response.model"] = e.model
            if e.finish:
                attrs["gen_ai.response.finish_reasons"] = (e.finish,)
            if not ok:
                attrs["error.type"] = e.status
            head = self._t.keep(key, f"chat {asked}".rstrip(), attrs)
        parent = turn.span if turn is not None else self._outer()
        usage = e.usage
        if ok and parent is not None and usage is not None:  # most: bytes at once
            if (lead := self._leads.get(key)) is None:
                lead = self._leads[key] = self._t._encode.lead(head[0], CLIENT) + head[1]
            start = int(e.started * 1e9)
            span_id = (self._bits(64) or 1).to_bytes(8, "big")
            tokens = self._tokens(usage)
            if turn is not None:
                turn.usage, turn.tokens = usage, tokens
            self._chats.append(
                self._t._encode.chat(
                    (parent.trace_id, span_id, parent.span_id),
                    lead,
                    start,
                    start + int(e.latency * 1e9),
                    tokens,
                )
            )
            return
        span = self._start(head[0], e.started, parent, CLIENT, {})
        if usage is None:
            span.head = head[1]
        else:
            span.head = head[1] + self._tokens(usage)
        if not ok:
            span.fail(e.error)
            if turn is not None:
                turn.failed = e.status
        span.stop = span.start + int(e.latency * 1e9)
        self._done.append(span)

    def _tool_called(self, e: ev.ToolCalled) -> None:
        if e.traced:  # the worker that ran it exported its span
            return
        turn = self._turn_of(e.agent)
        attrs: dict[str, Any] = {
            "gen_ai.operation.name": "execute_tool",
            "gen_ai.tool.name": e.tool,
            "gen_ai.tool.type": "function",
        }
        if self._capture:
            attrs["gen_ai.tool.call.arguments"] = e.args
        parent = turn.span if turn is not None else self._outer()
        span = self._start(f"execute_tool {e.tool}", e.at, parent, INTERNAL, attrs)
        span.head = self._t._encode.once("gen_ai.tool.call.id", e.call_id)
        self._tools[(e.agent, e.call_id)] = (span, span.start)

    def _tool_result(self, e: ev.ToolResult) -> None:
        span, start = self._tools.pop((e.agent, e.call_id), (None, 0))
        if span is None:
            return
        if self._capture:
            span.set_attribute("gen_ai.tool.call.result", e.output)
        if not e.ok:
            span.set_attribute("error.type", "tool_error")
            span.fail()
        span.end(start + _ns(e.duration) if e.duration else _ns(e.at))

    def _voted(self, e: ev.VoteCast) -> None:
        stage = self._stage
        if stage is not None and (turn := stage.last.get(e.agent)) is not None:
            turn.span.set_attribute("massgen.vote", e.for_agent)
            if self._capture and e.reason:
                turn.span.set_attribute("massgen.vote.reason", e.reason)

    def _revised(self, e: ev.Revised) -> None:
        stage = self._stage
        if stage is not None and (turn := stage.last.get(e.agent)) is not None:
            turn.span.set_attribute("massgen.revised", True)

    def _round_done(self, e: ev.RoundDone) -> None:
        stage = self._stage
        if stage is None or stage.key != ("review", e.round):
            return
        attrs = {"massgen.converged": e.converged, "massgen.votes": len(e.votes)}
        stage.span.attrs.update(attrs)
        stage.span.set_attribute("massgen.leader", e.leader or "")
        self._close_stage(_ns(e.at))

    def _final(self, e: ev.FinalAnswer) -> None:
        if self._run is not None:
            self._run.set_attribute("massgen.winner", e.winner or "")
            if self._capture:
                answer = _messages("assistant", e.text, "stop")  # finish_reason is required
                self._run.set_attribute("gen_ai.output.messages", answer)

    def _run_ended(self, e: ev.RunEnded) -> None:
        at, r = _ns(e.at), e.result
        for span, _ in self._tools.values():
            span.end(at)
        for (agent, _), turn in self._turns.items():  # cut short, or the run's error
            self._unanswered(agent, turn)
            why = turn.failed or ("cancelled" if r.status == "interrupted" else "_OTHER")
            turn.span.set_attribute("error.type", why)
            turn.span.fail(r.error or "the run ended first")
            turn.span.end(at)
        if self._turns and self._stage is not None:  # its round lasted as long as they did
            self._stage.end = max(self._stage.end, at)
        self._tools.clear()
        self._turns.clear()
        self._close_stage(now=e.at)
        if self._run is None:
            return
        self._run.attrs.update(
            {
                "massgen.status": r.status,
                "massgen.cost": r.cost,
                "massgen.requests": r.requests,
                "massgen.rounds": r.rounds,
                "massgen.converged": r.converged,
                "gen_ai.usage.input_tokens": r.usage.input_tokens,
                "gen_ai.usage.output_tokens": r.usage.output_tokens,
            }
        )
        if r.status in ("failed", "interrupted"):
            self._run.set_attribute("error.type", r.status)
            self._run.fail(r.error or r.status)
        self._run.end(at)
        self._run = None


_HANDLERS: dict[type[ev.Event], Callable[[RunTracer, Any], None]] = {
    ev.RunStarted: RunTracer._run_started,
    ev.AgentStarted: RunTracer._agent_started,
    ev.AgentAnswered: RunTracer._answered,
    ev.AgentFailedEvent: RunTracer._failed,
    ev.AgentRetrying: RunTracer._retrying,
    ev.RequestDone: RunTracer._request,
    ev.ToolCalled: RunTracer._tool_called,
    ev.ToolResult: RunTracer._tool_result,
    ev.VoteCast: RunTracer._voted,
    ev.Revised: RunTracer._revised,
    ev.RoundDone: RunTracer._round_done,
    ev.FinalAnswer: RunTracer._final,
    ev.RunEnded: RunTracer._run_ended,
}
RunTracer.hears = frozenset(_HANDLERS)
