"""The hand-written OTLP encoder (massgen/observability/otlp.py) against the official
``opentelemetry-proto`` decoder: every attribute type, events, status, kinds, parents; and
the OTEL_* variables as :func:`massgen.observability.export_settings` reads them."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from massgen import events as ev
from massgen.config import ObservabilityConfig
from massgen.observability import export_settings
from massgen.observability.otlp import (
    CLIENT,
    SERVER,
    Encoder,
    Span,
    parse_traceparent,
    request,
    resource,
)
from massgen.observability.tracing import Tracing
from massgen.types import Completion, Usage
from tests.otlp import value

ATTRS = {
    "s": "é text",
    "empty": "",
    "i": 42,
    "neg": -7,
    "big": 2**62,
    "f": 0.25,
    "t": True,
    "no": False,
    "arr": ["a", "b"],
    "mixed": [1, 2.5, True, "x"],
}


class Collect(Tracing):
    """A tracing that keeps the encoded spans instead of sending them."""

    def __init__(self) -> None:
        settings = ObservabilityConfig(otlp="http://127.0.0.1:9")
        super().__init__(settings, {}, export_settings(settings, {}))
        self.encoded: list[bytes] = []
        self.encoder = Encoder()
        self.came = asyncio.Event()

    def ended(self, span: Span, at: int) -> None:
        self.encoded.append(self.encoder.span(span, at))

    def queue(self, spans: list[Span], encoded: list[bytes] | None = None) -> None:
        self.encoded += self.encoder.spans(spans) + (encoded or [])
        self.came.set()


def decoded(t: Collect) -> ExportTraceServiceRequest:
    head = resource({"service.name": "svc", "process.pid": 12})
    return ExportTraceServiceRequest.FromString(request(head, t.encoded))


def test_spans_round_trip_through_the_official_decoder() -> None:
    t = Collect()
    root = Span(t.ended, t.ids(None), "invoke_workflow x", 1, 1_000, dict(ATTRS))
    child = Span(t.ended, t.ids((root.trace_id, root.span_id)), "chat m", CLIENT, 2_000, {"k": "v"})
    child.add_event("massgen.retry", {"massgen.attempt": 1, "massgen.wait": 0.5}, 2_500)
    child.fail("boom")
    child.end(3_000)
    root.set_attribute("late", "yes")
    root.head = t.encoder.attributes({"head": "encoded before", "n": 3})
    root.fail()
    root.end(2**63 + 5)  # fixed64: the whole range
    for _ in range(2):  # cached names and pairs encode the same
        Span(t.ended, t.ids(None), "chat m", SERVER, 1, {"k": "v"}).end(2)
    [rs] = decoded(t).resource_spans
    assert {a.key: value(a.value) for a in rs.resource.attributes} == {
        "service.name": "svc",
        "process.pid": 12,
    }
    [ss] = rs.scope_spans
    assert ss.scope.name == "massgen" and ss.scope.version
    c, r, again, twice = ss.spans
    assert (r.name, r.kind, r.start_time_unix_nano, r.end_time_unix_nano) == (
        "invoke_workflow x", 1, 1_000, 2**63 + 5,
    )  # fmt: skip
    assert {a.key: value(a.value) for a in r.attributes} == {
        **ATTRS,
        "late": "yes",
        "head": "encoded before",
        "n": 3,
    }
    assert [a.value.WhichOneof("value") for a in r.attributes][8:10] == ["bool_value"] * 2
    assert r.parent_span_id == b"" and len(r.trace_id) == 16 and len(r.span_id) == 8
    assert (r.status.code, r.status.message, list(r.events)) == (2, "", [])
    assert (c.trace_id, c.parent_span_id) == (r.trace_id, r.span_id) and c.span_id != r.span_id
    assert (c.kind, c.status.code, c.status.message) == (3, 2, "boom")
    [event] = c.events
    assert (event.name, event.time_unix_nano) == ("massgen.retry", 2_500)
    assert {a.key: value(a.value) for a in event.attributes} == {
        "massgen.attempt": 1,
        "massgen.wait": 0.5,
    }
    assert again.SerializeToString()[28:] == twice.SerializeToString()[28:]  # past the ids
    assert (again.kind, again.status.code, again.trace_id != twice.trace_id) == (2, 0, True)


def test_traceparents_are_w3c() -> None:
    t = Collect()
    span = Span(t.ended, t.ids(None), "x", 1, 1, {})
    got = parse_traceparent(span.traceparent())
    assert got == (span.trace_id, span.span_id, True)
    assert parse_traceparent(span.traceparent(sampled=False)) == (*got[:2], False)
    bad = ["", "00-zz-11-01", f"00-{'0' * 32}-{'1' * 16}-01", f"ff-{'1' * 32}-{'1' * 16}-01"]
    assert [parse_traceparent(b) for b in bad] == [None] * 4


def test_the_otel_variables_are_read_as_the_sdk_reads_them() -> None:
    environ = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318/",
        "OTEL_EXPORTER_OTLP_HEADERS": "api-key=a%20b%3D,x-team=one",
        "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT": "2.5",
        "OTEL_EXPORTER_OTLP_COMPRESSION": "gzip",
        "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment=prod,service.name=from-attrs",
        "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
        "OTEL_TRACES_SAMPLER_ARG": "0.25",
        "OTEL_BSP_SCHEDULE_DELAY": "50",
    }
    x = export_settings(ObservabilityConfig(), environ)
    assert x.url == "http://c:4318/v1/traces"
    assert x.headers == {"api-key": "a b=", "x-team": "one"}
    assert (x.timeout, x.compression, x.delay) == (2.5, "gzip", 0.05)
    assert x.resource["deployment.environment"] == "prod"
    assert x.resource["service.name"] == "from-attrs"
    assert (x.sampler, x.ratio) == ("parentbased_traceidratio", 0.25)
    traces = {**environ, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://t:1/custom"}
    named = {**traces, "OTEL_SERVICE_NAME": "team-a"}
    x = export_settings(ObservabilityConfig(), named)
    assert (x.url, x.resource["service.name"]) == ("http://t:1/custom", "team-a")
    assert x.compression == "gzip"  # each TRACES_ variable before its generic one:
    x = export_settings(
        ObservabilityConfig(), {**named, "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION": "none"}
    )
    assert x.compression == ""
    section = ObservabilityConfig(otlp="http://s:4318", service_name="svc")
    x = export_settings(section, {**named, "OTEL_TRACES_SAMPLER": "nonsense"})
    assert (x.url, x.resource["service.name"]) == ("http://s:4318/v1/traces", "svc")
    assert x.sampler == "parentbased_always_on"


def test_the_timeout_is_in_seconds_as_the_sdk_reads_it_and_one_like_milliseconds_is_warned_of(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """opentelemetry-exporter-otlp-proto-http 1.45 reads it in seconds (float), where the spec
    says milliseconds: massgen reads it as the SDK does, and says so of a value so long it was
    likely meant in milliseconds (10000: 10 s in the spec, 2 h 46 here)."""
    generic = {"OTEL_EXPORTER_OTLP_TIMEOUT": "10000"}
    traces = {**generic, "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT": "30"}  # read first
    assert export_settings(ObservabilityConfig(), traces).timeout == 30
    assert caplog.records == []
    assert export_settings(ObservabilityConfig(), generic).timeout == 10000
    [warned] = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert "OTEL_EXPORTER_OTLP_TIMEOUT='10000'" in warned and "10000 s is used" in warned


def test_the_sampler_keeps_a_share_of_traces_and_follows_a_parent() -> None:
    def tracing(sampler: str, arg: str = "") -> Tracing:
        s = ObservabilityConfig(otlp="http://127.0.0.1:9")
        env = {"OTEL_TRACES_SAMPLER": sampler, "OTEL_TRACES_SAMPLER_ARG": arg}
        return Tracing(s, {}, export_settings(s, env))

    ids = [Collect().ids(None)[0] for _ in range(2000)]
    kept = sum(tracing("traceidratio", "0.25").sampled(i, None) for i in ids)
    assert 350 < kept < 650
    assert not any(tracing("always_off").sampled(i, None) for i in ids[:10])
    assert tracing("parentbased_always_off").sampled(ids[0], True)
    assert not tracing("parentbased_always_on").sampled(ids[0], False)
    assert tracing("always_on").sampled(ids[0], False)  # not parent-based


async def test_a_long_runs_spans_leave_before_it_ends() -> None:
    """A run's events become spans in one pass when it ends, and every export delay while
    it runs: a turn answered leaves then, a turn still open does not. (Through a run's bus,
    which appends the events to the tracer's list.)"""
    t = Collect()
    t.export = dataclasses.replace(t.export, delay=0.01)
    tracer = t.run({})
    emit = ev.EventBus([tracer]).emit
    said = Completion(text="hi", usage=Usage(3, 4), model="m")
    emit(ev.RunStarted(run_id="r", task="x", strategy="consensus", agents=("a", "b")))
    emit(ev.AgentStarted(agent="a", phase="step", round=0))
    emit(ev.AgentStarted(agent="b", phase="step", round=0))
    parent = tracer.traceparent("b")  # asked for while the turn is open
    emit(
        ev.RequestDone(
            agent="a", provider="openai", model="m", attempt=1, status="ok",
            started=time.time(), latency=0.01, usage=Usage(3, 4), finish="stop",
        )
    )  # fmt: skip
    emit(ev.AgentAnswered.of(said, "a", "step", 0, 0.5))
    assert not t.encoded  # kept, not a span yet
    await asyncio.wait_for(t.came.wait(), 5)
    spans = {s.name: s for s in decoded(t).resource_spans[0].scope_spans[0].spans}
    assert sorted(spans) == ["chat m", "invoke_agent a"]
    turn = spans["invoke_agent a"]
    assert spans["chat m"].parent_span_id == turn.span_id
    assert {a.key: value(a.value) for a in turn.attributes}["gen_ai.usage.output_tokens"] == 4
    assert {a.key: value(a.value) for a in turn.attributes}["massgen.cost"] == 0.5
    t.came.clear()
    emit(ev.AgentAnswered.of(said, "b", "step", 0, 0.0))
    await asyncio.wait_for(t.came.wait(), 5)
    b = [s for s in decoded(t).resource_spans[0].scope_spans[0].spans if s.name == "invoke_agent b"]
    assert parse_traceparent(parent) == (b[0].trace_id, b[0].span_id, True)
