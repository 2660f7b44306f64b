"""OpenTelemetry traces of runs, built from their events: run → round → agent turn → provider
attempt → tool call, named and attributed after the GenAI semantic conventions.

Imported only when tracing is on (:func:`massgen.observability.tracing_settings`). Each
orchestrator and each worker has a :class:`Tracing` of its own (a TracerProvider and its OTLP
exporter, never the global provider); every span is given its parent and its times from the
events (no context variables, nothing attached). Spans are batched and exported from the SDK's
thread; :meth:`Tracing.aclose` sends what is left.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from massgen import __version__
from massgen import events as ev
from massgen.types import Completion, Turn

if TYPE_CHECKING:
    from massgen.agents.agent import Agent
    from massgen.config.models import ObservabilityConfig

NESTED = ("ask", "summary")
"""Phases of turns made inside another turn: kept apart from the agent's own turn."""
STAGED = ("answer", "review")
"""Phases whose turns run side by side: a ``round N`` span holds them."""

# gen_ai.provider.name (and the older gen_ai.system) where massgen's name differs
_PROVIDER = {"google": "gcp.gemini", "gemini": "gcp.gemini", "xai": "x_ai"}
_SYSTEM = {"google": "gemini", "gemini": "gemini"}
_PROPAGATOR = TraceContextTextMapPropagator()


def traces_url(base: str) -> str:
    """The OTLP/HTTP traces URL of a collector's base URL (as ``OTEL_EXPORTER_OTLP_ENDPOINT``)."""
    base = base.rstrip("/")
    return base if base.endswith("/v1/traces") else base + "/v1/traces"


def _ns(seconds: float) -> int:
    return int(seconds * 1e9)


def _messages(role: str, text: str, finish: str | None = None) -> str:
    """``gen_ai.input.messages`` / ``gen_ai.output.messages``, as JSON."""
    message: dict[str, Any] = {"role": role, "parts": [{"type": "text", "content": text}]}
    if finish is not None:
        message["finish_reason"] = finish
    return json.dumps([message], ensure_ascii=False)


class Tracing:
    """The tracer of one orchestrator or worker: its own TracerProvider and OTLP exporter
    (endpoint and headers from ``settings``, else the standard ``OTEL_*`` variables)."""

    def __init__(self, settings: ObservabilityConfig, agents: Mapping[str, Agent]) -> None:
        name = settings.service_name or os.environ.get("OTEL_SERVICE_NAME") or "massgen"
        resource = Resource.create({"service.name": name, "process.pid": os.getpid()})
        endpoint = traces_url(settings.otlp) if settings.otlp else None
        headers = {k: v.get_secret_value() for k, v in settings.headers.items()} or None
        self.provider = TracerProvider(resource=resource)
        exporter = OTLPSpanExporter(endpoint=endpoint, headers=headers)
        self.provider.add_span_processor(BatchSpanProcessor(exporter))
        self.tracer = self.provider.get_tracer("massgen", __version__)
        self.capture = settings.capture_content
        self.agents = agents

    def run(self, fallbacks: Mapping[str, str]) -> RunTracer:
        """A subscriber that traces one run (``fallbacks``: seat → the agent standing in)."""
        return RunTracer(self, fallbacks=fallbacks)

    def remote_turn(self, traceparent: str, worker: str, agent: str, turn: Turn) -> RunTracer:
        """A subscriber that traces ``turn``, which ``worker`` runs for ``agent``, under the
        run's span of it (``traceparent``; in a trace of its own when empty). Its span is
        open: :meth:`RunTracer.ended` closes it."""
        root = _PROPAGATOR.extract({"traceparent": traceparent}) if traceparent else Context()
        tracer = RunTracer(self, root=root, worker=worker)
        tracer(ev.AgentStarted(agent=agent, phase=turn.phase, round=turn.round, prompt=turn.prompt))
        return tracer

    def model_of(self, agent: str) -> tuple[str, str]:
        """The provider and model ``agent`` asks for, as far as known (its backend is built)."""
        a = self.agents.get(agent)
        built = a.built_backend() if a is not None else None
        model = (a.model if a is not None else None) or (built.model if built else "")
        return (built.provider if built else ""), model or ""

    async def flush(self) -> None:
        await asyncio.to_thread(self.provider.force_flush)

    async def aclose(self) -> None:
        """Export what is left, then stop the exporter's thread."""
        await asyncio.to_thread(self.provider.shutdown)


@dataclass(slots=True)
class _Turn:
    span: Span
    ended: int = 0  # answered at (ns): its span ends with its round, which may still vote
    failed: str = ""  # the status of its last failed attempt: the turn's error.type


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

    def __init__(
        self,
        tracing: Tracing,
        *,
        root: Context | None = None,
        fallbacks: Mapping[str, str] | None = None,
        worker: str = "",
    ) -> None:
        self._t, self._tracer, self._capture = tracing, tracing.tracer, tracing.capture
        self._root = root if root is not None else Context()
        self._fallbacks = dict(fallbacks or {})
        self._worker = worker
        self._run: Span | None = None
        self._stage: _Stage | None = None
        self._turns: dict[tuple[str, str], _Turn] = {}
        self._tools: dict[tuple[str, str], tuple[Span, int]] = {}
        self._dropped = False  # the sampler left the run out: nothing more to do

    def __call__(self, event: ev.Event) -> None:
        handle = _HANDLERS.get(type(event))
        if handle is not None and not self._dropped:
            handle(self, event)

    def traceparent(self, agent: str) -> str:
        """The W3C traceparent of ``agent``'s open turn ("" if none)."""
        turn = self._turns.get((agent, ""))
        span = self._run if self._dropped else turn.span if turn is not None else None
        if span is None:
            return ""
        carrier: dict[str, str] = {}  # a dropped run's: its workers' samplers drop theirs too
        _PROPAGATOR.inject(carrier, context=trace.set_span_in_context(span))
        return carrier.get("traceparent", "")

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

    # -- helpers ----------------------------------------------------------------------------

    def _context(self, span: Span | None) -> Context:
        return trace.set_span_in_context(span, self._root) if span is not None else self._root

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
        self, name: str, at: float, parent: Span | None, kind: SpanKind, **attrs: Any
    ) -> Span:
        return self._tracer.start_span(
            name, self._context(parent), kind, attributes=attrs, start_time=_ns(at)
        )

    def _close_stage(self, at: int = 0) -> None:
        stage, self._stage = self._stage, None
        if stage is None:
            return
        for turn in stage.done:
            turn.span.end(end_time=turn.ended)
        stage.span.end(end_time=at or stage.end or None)

    # -- events -----------------------------------------------------------------------------

    def _run_started(self, e: ev.RunStarted) -> None:
        attrs: dict[str, Any] = {
            "gen_ai.operation.name": "invoke_workflow",
            "gen_ai.workflow.name": e.strategy,
            "massgen.strategy": e.strategy,
            "massgen.run_id": e.run_id,
            "massgen.agents": list(e.agents),
        }
        if self._capture:
            attrs["gen_ai.input.messages"] = _messages("user", e.task)
        self._run = self._start(
            f"invoke_workflow {e.strategy}", e.at, None, SpanKind.INTERNAL, **attrs
        )
        self._dropped = not self._run.is_recording()  # sampled out (OTEL_TRACES_SAMPLER)

    def _agent_started(self, e: ev.AgentStarted) -> None:
        nested = e.phase in NESTED
        key = (e.agent, e.phase if nested else "")
        if (stale := self._turns.pop(key, None)) is not None:
            stale.span.end(end_time=_ns(e.at))
        if not nested and not self._worker:
            want = (e.phase, e.round) if e.phase in STAGED else None
            if self._stage is not None and self._stage.key != want:
                self._close_stage()
            if want is not None and self._stage is None:
                span = self._start(
                    f"round {e.round}", e.at, self._run, SpanKind.INTERNAL,
                    **{"massgen.phase": e.phase, "massgen.round": e.round},
                )  # fmt: skip
                self._stage = _Stage(want, span)
        attrs: dict[str, Any] = {
            "gen_ai.operation.name": "invoke_agent",
            "gen_ai.agent.name": e.agent,
            "massgen.phase": e.phase,
            "massgen.round": e.round,
        }
        if self._worker:
            attrs["massgen.worker"] = self._worker
        if self._capture:
            attrs["gen_ai.input.messages"] = _messages("user", e.prompt)
        kind = SpanKind.SERVER if self._worker else SpanKind.INTERNAL
        span = self._start(f"invoke_agent {e.agent}", e.at, self._outer(), kind, **attrs)
        self._turns[key] = _Turn(span)

    def _answered(self, e: ev.AgentAnswered) -> None:
        nested = e.phase in NESTED
        turn = self._turns.pop((e.agent, e.phase if nested else ""), None)
        if turn is None:
            return
        provider, model = self._t.model_of(e.answered_by or e.agent)
        attrs: dict[str, Any] = {
            "gen_ai.usage.input_tokens": e.usage.input_tokens,
            "gen_ai.usage.output_tokens": e.usage.output_tokens,
            "massgen.cost": e.cost,
            "massgen.requests": e.requests,
            "massgen.cached": e.cached,
        }
        if provider:
            attrs["gen_ai.provider.name"] = _PROVIDER.get(provider, provider)
        if model:
            attrs["gen_ai.request.model"] = model
        if e.answered_by:
            attrs["massgen.answered_by"] = e.answered_by
        if self._capture:
            attrs["gen_ai.output.messages"] = _messages("assistant", e.text, "stop")
        turn.span.set_attributes(attrs)
        turn.ended = _ns(e.at)
        stage = self._stage
        if stage is not None and not nested and stage.key == (e.phase, e.round):
            stage.done.append(turn)  # ended with its round: a vote may still come
            stage.last[e.agent], stage.end = turn, max(stage.end, turn.ended)
        else:
            turn.span.end(end_time=turn.ended)

    def _failed(self, e: ev.AgentFailedEvent) -> None:
        turn = self._turns.pop((e.agent, ""), None)
        if turn is None:
            return
        turn.span.set_attribute("error.type", turn.failed or "_OTHER")
        turn.span.set_attribute("massgen.dropped", e.dropped)
        turn.span.set_status(Status(StatusCode.ERROR, e.error))
        turn.span.end(end_time=_ns(e.at))
        if self._stage is not None:
            self._stage.end = max(self._stage.end, _ns(e.at))

    def _retrying(self, e: ev.AgentRetrying) -> None:
        if (turn := self._turn_of(e.agent)) is not None:
            attrs = {"massgen.attempt": e.attempt, "massgen.wait": e.wait}
            turn.span.add_event("massgen.retry", attrs, timestamp=_ns(e.at))

    def _request(self, e: ev.RequestDone) -> None:
        turn = self._turn_of(e.agent)
        _, asked = self._t.model_of(e.agent)
        asked = asked or e.model
        ok = e.status == "ok"
        attrs: dict[str, Any] = {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": _PROVIDER.get(e.provider, e.provider),
            "gen_ai.system": _SYSTEM.get(e.provider, e.provider),
            "gen_ai.request.model": asked,
            "massgen.attempt": e.attempt,
        }
        if ok and e.model:
            attrs["gen_ai.response.model"] = e.model
        if e.usage is not None:
            attrs["gen_ai.usage.input_tokens"] = e.usage.input_tokens
            attrs["gen_ai.usage.output_tokens"] = e.usage.output_tokens
        if e.finish:
            attrs["gen_ai.response.finish_reasons"] = [e.finish]
        if not ok:
            attrs["error.type"] = e.status
        parent = turn.span if turn is not None else self._outer()
        span = self._start(f"chat {asked}".rstrip(), e.started, parent, SpanKind.CLIENT, **attrs)
        if not ok:
            span.set_status(Status(StatusCode.ERROR, e.error))
            if turn is not None:
                turn.failed = e.status
        span.end(end_time=_ns(e.started) + _ns(e.latency))

    def _tool_called(self, e: ev.ToolCalled) -> None:
        if e.traced:  # the worker that ran it exported its span
            return
        turn = self._turn_of(e.agent)
        attrs: dict[str, Any] = {
            "gen_ai.operation.name": "execute_tool",
            "gen_ai.tool.name": e.tool,
            "gen_ai.tool.call.id": e.call_id,
            "gen_ai.tool.type": "function",
        }
        if self._capture:
            attrs["gen_ai.tool.call.arguments"] = e.args
        parent = turn.span if turn is not None else self._outer()
        span = self._start(f"execute_tool {e.tool}", e.at, parent, SpanKind.INTERNAL, **attrs)
        self._tools[(e.agent, e.call_id)] = (span, _ns(e.at))

    def _tool_result(self, e: ev.ToolResult) -> None:
        span, start = self._tools.pop((e.agent, e.call_id), (None, 0))
        if span is None:
            return
        if self._capture:
            span.set_attribute("gen_ai.tool.call.result", e.output)
        if not e.ok:
            span.set_attribute("error.type", "tool_error")
            span.set_status(Status(StatusCode.ERROR))
        span.end(end_time=start + _ns(e.duration) if e.duration else _ns(e.at))

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
        stage.span.set_attributes({**attrs, "massgen.leader": e.leader or ""})
        self._close_stage(_ns(e.at))

    def _final(self, e: ev.FinalAnswer) -> None:
        if self._run is not None:
            self._run.set_attribute("massgen.winner", e.winner or "")
            if self._capture:
                self._run.set_attribute("gen_ai.output.messages", _messages("assistant", e.text))

    def _run_ended(self, e: ev.RunEnded) -> None:
        at, r = _ns(e.at), e.result
        for span, _ in self._tools.values():
            span.end(end_time=at)
        for turn in self._turns.values():  # cut short, or the error that ended the run
            why = turn.failed or ("cancelled" if r.status == "interrupted" else "_OTHER")
            turn.span.set_attribute("error.type", why)
            turn.span.set_status(Status(StatusCode.ERROR, r.error or "the run ended first"))
            turn.span.end(end_time=at)
        self._tools.clear()
        self._turns.clear()
        self._close_stage()
        if self._run is None:
            return
        self._run.set_attributes(
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
            self._run.set_status(Status(StatusCode.ERROR, r.error or r.status))
        self._run.end(end_time=at)
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
