"""Traces (docs/observability.md): what a run exports over OTLP/HTTP, decoded by a receiver
on loopback with the official ``opentelemetry-proto`` messages. Real runs: the replay backend,
and the provider simulator through massgen's own HTTP client."""

from __future__ import annotations

import base64
import contextlib
import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from massgen.config import ObservabilityConfig, loads
from massgen.errors import ConfigError
from massgen.observability import tracing_settings
from massgen.orchestrator import Orchestrator
from massgen.result import RunResult
from tests.otlp import Receiver, Span, children, named, observability_warnings, whole_run
from tests.sim.sim_types import Fault, Hang, Text, ToolCalls, ToolCallSpec
from tests.sim.simulator import ProviderSimulator
from tests.teamkit import GEO_CONSENSUS

TASK = "What is the capital of France?"
CONSENSUS = GEO_CONSENSUS
CONTENT_KEYS = {
    "gen_ai.input.messages",
    "gen_ai.output.messages",
    "gen_ai.tool.call.arguments",
    "gen_ai.tool.call.result",
    "massgen.vote.reason",
}


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as r:
        yield r


def observed(text: str, receiver: Receiver, **section: object) -> str:
    options = {"otlp": receiver.url, **section}
    return text + "\nobservability: " + json.dumps(options) + "\n"


async def run(text: str, task: str = TASK) -> RunResult:
    """Run the team on ``task``; closing the orchestrator sends the spans left."""
    async with Orchestrator.from_config(loads(text)) as orchestrator:
        return await orchestrator.arun(task)


def one_level(spans: list[Span], parent: Span, name: str) -> list[Span]:
    return [s for s in children(spans, parent) if s.name == name]


async def test_a_consensus_run_is_one_tree_of_rounds_turns_and_requests(
    receiver: Receiver,
) -> None:
    result = await run(observed(CONSENSUS, receiver))
    spans = receiver.wait(whole_run)
    assert {s.trace_id for s in spans} == {spans[0].trace_id}  # one trace
    [root] = [s for s in spans if not s.parent_id]
    assert root.name == "invoke_workflow consensus"
    assert root["gen_ai.operation.name"] == "invoke_workflow"
    assert (root["massgen.strategy"], root["massgen.run_id"]) == ("consensus", result.run_id)
    assert (root["massgen.status"], root["massgen.requests"]) == ("done", 6)
    assert root["massgen.winner"] == "bob" and root.resource["service.name"] == "massgen"
    assert "gen_ai.conversation.id" not in root.attributes  # no session
    rounds = [s for s in children(spans, root)]
    assert [(s.name, s["massgen.phase"]) for s in rounds] == [
        ("round 0", "answer"),
        ("round 1", "review"),
    ]
    assert rounds[1]["massgen.converged"] is True and rounds[1]["massgen.leader"] == "bob"
    for stage in rounds:
        turns = sorted(children(spans, stage), key=lambda s: s["gen_ai.agent.name"])
        assert [s.name for s in turns] == [
            "invoke_agent ada",
            "invoke_agent bob",
            "invoke_agent cy",
        ]
        for turn in turns:
            assert turn["gen_ai.operation.name"] == "invoke_agent"
            assert turn["massgen.round"] == stage["massgen.round"]
            assert stage.start <= turn.start <= turn.end <= stage.end
            [chat] = children(spans, turn)
            assert chat.name == "chat replay" and chat.kind == 3  # CLIENT
            assert chat["gen_ai.operation.name"] == "chat"
            assert chat["gen_ai.provider.name"] == chat["gen_ai.system"] == "replay"
            assert chat["gen_ai.usage.output_tokens"] > 0
            assert chat["gen_ai.response.finish_reasons"] == ["stop"]
            assert turn["gen_ai.usage.output_tokens"] == chat["gen_ai.usage.output_tokens"]
            assert turn.start <= chat.start <= chat.end <= turn.end
    votes = {t["gen_ai.agent.name"]: t["massgen.vote"] for t in children(spans, rounds[1])}
    assert votes == {"ada": "bob", "bob": "bob", "cy": "bob"}
    assert all(not (CONTENT_KEYS & s.attributes.keys()) for s in spans)  # capture_content off
    assert not any(TASK in str(v) for s in spans for v in s.attributes.values())
    assert receiver.posts and set(receiver.posts) == {"/v1/traces"}


async def test_a_session_s_runs_are_one_conversation(
    receiver: Receiver, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # the sessions' store
    async with Orchestrator.from_config(loads(observed(CONSENSUS, receiver)), session="c-7") as o:
        for _ in range(2):
            await o.arun(TASK)
    roots = receiver.wait(lambda spans: sum(not s.parent_id for s in spans) == 2)
    assert [s["gen_ai.conversation.id"] for s in roots if not s.parent_id] == ["c-7", "c-7"]


def simulated(sim: ProviderSimulator, *, tools: str = "", retries: int = 0) -> str:
    return f"""
agents:
  - name: ada
    role: You are Ada.
    backend: {{type: openai, model: gpt-4o-mini, base_url: '{sim.openai_base_url}', api_key: x}}
    {tools}
orchestrator: {{strategy: parallel, max_retries: {retries}, retry_delay: 0.01}}
"""


async def test_a_retried_request_is_one_chat_span_per_attempt(
    receiver: Receiver, sim: ProviderSimulator
) -> None:
    sim.script([Fault(503), Text("Paris.")], match="You are Ada.")
    result = await run(observed(simulated(sim, retries=2), receiver))
    assert result.final_answer == "Paris."
    spans = receiver.wait(whole_run)
    [turn] = named(spans, "invoke_agent ada")
    assert "massgen.retry" in turn.events
    failed, ok = sorted(children(spans, turn), key=lambda s: s["massgen.attempt"])
    assert failed.name == ok.name == "chat gpt-4o-mini"
    assert (failed["massgen.attempt"], failed.status, failed["error.type"]) == (1, 2, "503")
    assert "gen_ai.response.model" not in failed.attributes
    assert (ok["massgen.attempt"], ok.status) == (2, 0) and "error.type" not in ok.attributes
    assert ok["gen_ai.provider.name"] == "openai" and ok["gen_ai.request.model"] == "gpt-4o-mini"
    assert ok["gen_ai.response.model"] and ok["gen_ai.usage.input_tokens"] > 0
    assert failed.end <= ok.start  # the second attempt came after the first


async def test_a_failed_turn_and_run_are_errors(receiver: Receiver, sim: ProviderSimulator) -> None:
    sim.script([Fault(503)], match="You are Ada.")
    with pytest.raises(Exception):  # noqa: B017 (the run's error is not what is tested here)
        await run(
            observed(
                simulated(sim).replace("parallel,", "parallel, error_strategy: retry,"), receiver
            )
        )
    spans = receiver.wait(whole_run)
    [root] = named(spans, "invoke_workflow parallel")
    [turn] = named(spans, "invoke_agent ada")
    [chat] = children(spans, turn)
    assert (root.status, root["error.type"]) == (2, "failed")
    assert (turn.status, turn["error.type"], chat["error.type"]) == (2, "503", "503")


async def test_a_turn_s_output_message_says_why_the_answer_ended(receiver: Receiver) -> None:
    """An answer cut at max_tokens says ``length`` (every turn said ``stop``)."""
    from massgen import Agent
    from massgen.backends.function import FunctionBackend
    from massgen.types import Completion

    cut = Completion(text="Paris is the capital of", model="m", finish_reason="length")
    agents = [Agent("ada", FunctionBackend(lambda _: cut, model="m"))]
    settings = ObservabilityConfig(otlp=receiver.url, capture_content=True)
    async with Orchestrator(agents, strategy="parallel", observability=settings) as o:
        await o.arun(TASK)
    [turn] = named(receiver.wait(whole_run), "invoke_agent ada")
    [said] = json.loads(turn["gen_ai.output.messages"])
    assert said["finish_reason"] == "length" and said["parts"][0]["content"] == cut.text


def two_in_consensus(sim: ProviderSimulator, orchestrator: str) -> str:
    rows = "".join(
        f"  - {{name: {n}, role: You are {n.title()}., backend: {{type: openai, model: "
        f"gpt-4o-mini, base_url: '{sim.openai_base_url}', api_key: x}}}}\n"
        for n in ("ada", "bob")
    )
    return f"agents:\n{rows}orchestrator: {{strategy: consensus, {orchestrator}}}\n"


def nested_in_time(spans: list[Span]) -> list[str]:
    """The spans that start before their parent or end after it (none, in a good tree)."""
    by_id = {s.span_id: s for s in spans}
    return [
        f"{s.name} outside {parent.name}"
        for s in spans
        if (parent := by_id.get(s.parent_id)) is not None
        and not parent.start <= s.start <= s.end <= parent.end
    ]


@pytest.mark.parametrize(
    ("replies", "orchestrator"),
    [
        ([Fault(503)] * 6, "max_retries: 1, retry_delay: 0.01, error_strategy: retry"),
        ([Hang()], "timeout: 0.5"),
    ],
    ids=["a turn failing ends the run", "the run times out"],
)
async def test_a_run_cut_short_keeps_every_span_within_its_parent(
    receiver: Receiver, sim: ProviderSimulator, replies: list[Any], orchestrator: str
) -> None:
    """The turns a run's end cuts short end with it, and so does their round (it ended
    at its last answer, before them)."""
    sim.script(replies, match="You are Ada.")
    with contextlib.suppress(Exception):
        await run(observed(two_in_consensus(sim, orchestrator), receiver))
    spans = receiver.wait(whole_run)
    [turn] = [s for s in named(spans, "invoke_agent ada") if s.status == 2]
    assert named(spans, "round 0") and nested_in_time(spans) == []
    assert (turn["gen_ai.request.model"], turn["gen_ai.provider.name"]) == ("gpt-4o-mini", "openai")
    assert all(s.status != 2 or (s["error.type"] and s.message) for s in spans)  # a why


async def test_a_tool_call_is_an_execute_tool_span_of_the_turn_with_content_captured(
    receiver: Receiver, sim: ProviderSimulator
) -> None:
    call = ToolCallSpec("calculator", {"expression": "6*7"}, id="call_1")
    sim.script([ToolCalls([call]), Text("It is 42.")], match="You are Ada.")
    text = observed(simulated(sim, tools="tools: [calculator]"), receiver, capture_content=True)
    result = await run(text, "What is 6 times 7?")
    assert result.final_answer == "It is 42."
    spans = receiver.wait(whole_run)
    [root] = named(spans, "invoke_workflow parallel")
    [turn] = named(spans, "invoke_agent ada")
    [tool] = named(spans, "execute_tool calculator")
    assert tool.parent_id == turn.span_id and tool.trace_id == turn.trace_id
    assert tool["gen_ai.operation.name"] == "execute_tool"
    assert (tool["gen_ai.tool.name"], tool["gen_ai.tool.call.id"]) == ("calculator", "call_1")
    assert json.loads(tool["gen_ai.tool.call.arguments"]) == {"expression": "6*7"}
    assert "42" in tool["gen_ai.tool.call.result"]
    first, second = sorted(one_level(spans, turn, "chat gpt-4o-mini"), key=lambda s: s.start)
    assert first["gen_ai.response.finish_reasons"] == ["tool_calls"]
    assert first.end <= tool.start <= tool.end <= second.start
    prompt = json.loads(turn["gen_ai.input.messages"])
    assert prompt[0]["role"] == "user" and "6 times 7" in prompt[0]["parts"][0]["content"]
    answer = json.loads(turn["gen_ai.output.messages"])
    assert answer[0]["parts"][0]["content"] == "It is 42."
    assert "6 times 7" in root["gen_ai.input.messages"]
    [final] = json.loads(root["gen_ai.output.messages"])
    assert final["parts"][0]["content"] == "It is 42." and final["finish_reason"] == "stop"


async def test_headers_are_sent_from_the_environment(
    receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRACE_TOKEN", "s3cret")
    text = observed(CONSENSUS, receiver, headers={"Authorization": "Basic ${TRACE_TOKEN}"})
    await run(text)
    spans = receiver.wait(whole_run)
    assert spans[0].headers["authorization"] == "Basic s3cret"


async def test_the_standard_variables_switch_traces_on(
    receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.url)
    monkeypatch.setenv("OTEL_SERVICE_NAME", "team-a")
    await run(CONSENSUS)  # no observability section
    spans = receiver.wait(whole_run)
    assert {s.resource["service.name"] for s in spans} == {"team-a"}


async def test_an_entry_that_is_not_key_value_is_warned_of_and_left_out(
    receiver: Receiver, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """As the SDK does with headers and resource attributes; a header's text is not shown
    (it is likely a token)."""
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "x-team=one,Authorization: Bearer tok-9")
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=prod, oops")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.url)
    await run(CONSENSUS)
    spans = receiver.wait(whole_run)
    assert (spans[0].headers["x-team"], spans[0].resource["deployment.environment"]) == (
        "one",
        "prod",
    )
    assert "authorization" not in spans[0].headers and "oops" not in spans[0].resource
    headers, attributes = observability_warnings(caplog)
    assert "OTEL_EXPORTER_OTLP_HEADERS" in headers and "entry 2" in headers
    assert "tok-9" not in headers and "Bearer" not in headers
    assert "OTEL_RESOURCE_ATTRIBUTES" in attributes and "'oops'" in attributes


async def test_a_header_massgen_sets_too_is_sent_once_the_given_one(
    receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As the SDK merges its headers with the given ones (names in any case); but the body's
    type and encoding are the exporter's to say (a JSON type on protobuf: nothing decoded)."""
    given = "user-agent=team-a/1,Content-Type=application/json,Content-Encoding=gzip"
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", given)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.url)
    await run(CONSENSUS)
    spans = receiver.wait(whole_run)
    assert spans[0].headers["user-agent"] == "team-a/1"
    assert spans[0].headers["content-type"] == "application/x-protobuf"
    assert "content-encoding" not in spans[0].headers
    assert receiver.names[0].count("user-agent") == receiver.names[0].count("content-type") == 1


async def test_a_busy_collector_is_asked_again_and_gzip_is_honoured(
    receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "x-team=a%20b")
    receiver.refuse += [503, 429]  # then it takes them
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.url)
    await run(CONSENSUS)
    spans = receiver.wait(whole_run)
    assert receiver.refuse == [] and len(receiver.posts) == 1
    assert (spans[0].headers["content-encoding"], spans[0].headers["x-team"]) == ("gzip", "a b")


async def test_a_collector_that_never_answers_holds_the_close_no_longer_than_the_timeout(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "0.3")
    with socket.create_server(("127.0.0.1", 0)) as silent:  # takes connections, never reads
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        started = time.monotonic()
        result = await run(CONSENSUS + f"observability: {{otlp: '{url}'}}\n")
        took = time.monotonic() - started
    assert result.winner == "bob" and took < 5  # not the default 10 s
    warned = [r for r in caplog.records if r.name.startswith("massgen.observability")]
    assert [r.levelname for r in warned] == ["WARNING"]


async def test_a_batch_above_the_queue_is_warned_of_and_cut_to_it_so_spans_still_go(
    receiver: Receiver, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The SDK refuses a batch larger than its queue; here every full batch was dropped as
    waiting beyond the queue, though the collector was idle."""
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.url)
    monkeypatch.setenv("OTEL_BSP_MAX_QUEUE_SIZE", "64")
    monkeypatch.setenv("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "100")
    async with Orchestrator.from_config(loads(CONSENSUS)) as orchestrator:
        for _ in range(6):  # more spans than a batch of 64
            await orchestrator.arun(TASK)
    [warned] = observability_warnings(caplog)
    assert "OTEL_BSP_MAX_EXPORT_BATCH_SIZE='100'" in warned and "64 is used" in warned
    assert len(receiver.wait(lambda spans: sum(not s.parent_id for s in spans) == 6)) > 64


async def test_spans_waiting_beyond_the_queue_are_dropped_oldest_first_with_one_warning(
    receiver: Receiver, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A collector slower than the runs: the spans of the batch it is taking are sent; of
    those waiting, what is beyond OTEL_BSP_MAX_QUEUE_SIZE goes, the oldest first."""
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.url)
    monkeypatch.setenv("OTEL_BSP_MAX_QUEUE_SIZE", "40")
    monkeypatch.setenv("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "10")
    receiver.hold = threading.Event()  # the collector takes the first post and stalls
    async with Orchestrator.from_config(loads(CONSENSUS)) as orchestrator:
        results = [await orchestrator.arun(TASK) for _ in range(12)]
        receiver.hold.set()
    roots = {s["massgen.run_id"] for s in receiver.spans if not s.parent_id}
    assert results[-1].run_id in roots and len(roots) < len(results)  # the newest kept
    assert 10 < len(receiver.spans) <= 10 + 40 + 10  # the post in flight, the queue, one batch
    [warned] = observability_warnings(caplog)
    assert "too slow, spans dropped" in warned


@pytest.mark.parametrize(
    "given", ["x-token=canary-7%0AInjected: 1", "x-token=canary-7%0D", "x%20token=canary-7"]
)
def test_a_header_that_http_cannot_carry_is_a_config_error_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, given: str
) -> None:
    """Decoded, a value with a line break or a name with a space is no header: aiohttp
    raised in the exporter's task (every span lost, a traceback), or the collector hung up."""
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", given)
    with pytest.raises(ConfigError) as info:
        assert Orchestrator.from_config(loads(CONSENSUS)).tracing  # made before the first run
    assert info.value.key == "OTEL_EXPORTER_OTLP_HEADERS" and info.value.hint
    assert "canary-7" not in str(info.value)


@pytest.mark.parametrize(
    ("header", "line"), [("'x token': canary-7", 3), ('x-token: "canary-7\\nX: 1"', 3)]
)
def test_a_header_in_the_file_that_http_cannot_carry_is_placed_and_not_shown(
    header: str, line: int
) -> None:
    text = CONSENSUS + f"observability:\n  otlp: http://127.0.0.1:4318\n  headers: {{{header}}}\n"
    with pytest.raises(ConfigError) as info:
        loads(text)
    assert "observability.headers" in str(info.value.key) and info.value.hint
    assert info.value.line == CONSENSUS.count("\n") + line and "canary-7" not in str(info.value)


@pytest.mark.parametrize(
    ("variable", "value", "used"),
    [
        ("OTEL_TRACES_SAMPLER", "always_sometimes", "parentbased_always_on"),
        ("OTEL_TRACES_SAMPLER_ARG", "half", "1.0"),  # with OTEL_TRACES_SAMPLER=traceidratio
        ("OTEL_EXPORTER_OTLP_TIMEOUT", "10s", "10.0"),
        ("OTEL_EXPORTER_OTLP_COMPRESSION", "zstd", "none"),  # spans go uncompressed
        ("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", "Brotli", "none"),
    ],
)
async def test_a_bad_otel_value_is_warned_of_once_by_name_and_the_default_used(
    receiver: Receiver,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    variable: str,
    value: str,
    used: str,
) -> None:
    """As the SDK does (and the spec asks): said, then ignored, before the first run."""
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.url)
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "traceidratio")
    monkeypatch.setenv(variable, value)
    async with Orchestrator.from_config(loads(CONSENSUS)) as orchestrator:
        assert orchestrator.tracing is not None
        [warned] = observability_warnings(caplog)
        for _ in range(2):
            await orchestrator.arun(TASK)
    assert f"{variable}={value!r}" in warned and f"{used} is used" in warned
    assert observability_warnings(caplog) == [warned]
    both = receiver.wait(lambda spans: sum(not s.parent_id for s in spans) == 2)  # all kept
    assert {s.name for s in both if not s.parent_id} == {"invoke_workflow consensus"}
    assert "content-encoding" not in both[0].headers


@pytest.mark.parametrize(
    "variable", ["OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"]
)
def test_an_otlp_endpoint_without_a_scheme_is_a_config_error_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str
) -> None:
    monkeypatch.setenv(variable, "ada:pw-canary-9@localhost:4318")
    with pytest.raises(ConfigError) as info:
        Orchestrator.from_config(loads(CONSENSUS))
    assert info.value.key == variable and info.value.hint
    assert "pw-canary-9" not in str(info.value)


async def test_a_collector_url_with_a_password_gets_basic_auth_and_never_shows_it(
    receiver: Receiver, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """As the SDK's HTTP client does: the URL's ``user:password@`` is sent as Basic auth, in
    place of an Authorization header given too (aiohttp refused the two together)."""
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "authorization=Bearer%20other")
    with_password = receiver.url.replace("://", "://ada:pw-canary-9@")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", with_password)
    await run(CONSENSUS)
    spans = receiver.wait(whole_run)
    token = base64.b64encode(b"ada:pw-canary-9").decode()
    assert {s.headers["authorization"] for s in spans} == {f"Basic {token}"}
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://ada:pw-canary-9@127.0.0.1:{port}")
    await run(CONSENSUS)  # refused
    [warned] = observability_warnings(caplog)
    assert f"127.0.0.1:{port}" in warned and "pw-canary-9" not in warned


def test_which_settings_switch_traces_on() -> None:
    section = ObservabilityConfig(otlp="http://127.0.0.1:4318")
    assert tracing_settings(section, {}) is section
    assert tracing_settings(None, {}) is None
    assert tracing_settings(ObservabilityConfig(capture_content=True), {}) is None
    on = tracing_settings(None, {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://h:4318/v1/traces"})
    assert on is not None and on.otlp is None  # the exporter reads the variable itself
    assert tracing_settings(section, {"OTEL_SDK_DISABLED": "true"}) is None
    off = {"OTEL_EXPORTER_OTLP_ENDPOINT": "localhost:4318", "OTEL_TRACES_EXPORTER": "none"}
    assert tracing_settings(None, off) is None  # not read, so not an error either
    assert tracing_settings(section, off) is section  # as an exporter a program adds itself


@pytest.mark.parametrize(
    ("exporters", "on", "warned"),
    [
        ("none", False, False),
        (" None ", False, False),
        ("console", False, True),
        ("otlp,console", True, True),
        ("otlp_proto_http", True, False),
        ("otlp_proto_grpc", True, True),  # as OTEL_EXPORTER_OTLP_PROTOCOL=grpc: http/protobuf
    ],
)
async def test_otel_traces_exporter_says_whether_the_variables_switch_traces_on(
    receiver: Receiver,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    exporters: str,
    on: bool,
    warned: bool,
) -> None:
    """As the SDK's auto-configuration reads it: ``none``, or only exporters massgen does not
    have (warned of), exports nothing; with ``otlp`` among them spans go."""
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.url)
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", exporters)
    async with Orchestrator.from_config(loads(CONSENSUS)) as orchestrator:
        assert (orchestrator.tracing is not None) == on
        result = await orchestrator.arun(TASK)
    assert result.winner == "bob"
    if on:
        receiver.wait(whole_run)
    else:
        assert receiver.posts == []  # closed: whatever there was to send is sent
    warnings = observability_warnings(caplog)
    assert len(warnings) == warned and all(repr(exporters) in w for w in warnings)


def test_nothing_of_opentelemetry_is_imported_when_traces_are_off() -> None:
    script = f"""
import asyncio, sys
from massgen.config import loads
from massgen.orchestrator import Orchestrator
team = loads({CONSENSUS + "observability: {capture_content: true}"!r})
async def main():
    async with Orchestrator.from_config(team) as o:
        print((await o.arun({TASK!r})).winner)
asyncio.run(main())
print(sorted(m for m in sys.modules if m.startswith("opentelemetry")))
"""
    env = {"PATH": "/usr/bin:/bin", "HOME": "/tmp"}  # no OTEL_* variable
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["bob", "[]"]


def test_traces_need_no_opentelemetry_and_an_unreachable_collector_is_one_warning() -> None:
    script = f"""
import asyncio, logging, sys
sys.modules["opentelemetry"] = None  # as if no OpenTelemetry package were installed
from massgen.config import loads
from massgen.orchestrator import Orchestrator
warned = []
class Keep(logging.Handler):
    def emit(self, record):
        warned.append(record)
logging.getLogger("massgen.observability").addHandler(Keep())
team = loads({CONSENSUS + "observability: {otlp: 'http://127.0.0.1:9'}"!r})
async def main():
    async with Orchestrator.from_config(team) as o:
        for _ in range(2):
            print((await o.arun({TASK!r})).winner)
            await o.tracing.flush()
asyncio.run(main())
print(len(warned), warned[0].levelname)
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["bob", "bob", "1 WARNING"]


async def test_a_run_the_sampler_leaves_out_exports_nothing(
    receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "always_off")  # the SDK's own variable
    async with Orchestrator.from_config(loads(observed(CONSENSUS, receiver))) as orchestrator:
        await orchestrator.arun(TASK)
        tracing = orchestrator.tracing
        assert tracing is not None
        await tracing.flush()  # anything recorded is at the receiver once this returns
    assert receiver.spans == [] and receiver.posts == []


def asking(sim: ProviderSimulator) -> str:
    """A team where Ada asks Bea (``ask_agent``) while Bea answers the task too."""
    call = ToolCallSpec("ask_agent", {"agent": "bea", "question": "Which city?"}, id="call_1")
    sim.script([ToolCalls([call]), Text("Paris, says Bea.")], match="You are Ada.")
    sim.script(Text("Paris."), match="asks you")
    sim.script(Text("It is Paris."), match="You are Bea.")
    backend = f"{{type: openai, model: gpt-4o-mini, base_url: '{sim.openai_base_url}', api_key: x}}"
    return f"""
agents:
  - {{name: ada, role: You are Ada., tools: [ask_agent], backend: {backend}}}
  - {{name: bea, role: You are Bea., backend: {backend}}}
orchestrator: {{strategy: parallel, max_retries: 0}}
"""


async def test_a_teammates_answer_to_ask_agent_is_a_turn_with_its_own_requests(
    receiver: Receiver, sim: ProviderSimulator
) -> None:
    """Bea answers the task and, at the same time, Ada's question: her ``ask`` turn has her
    request as its child (not her own turn's), and metrics count that request's tokens."""
    from massgen.observability.metrics import Metrics

    metrics = Metrics(process=False)
    async with Orchestrator.from_config(
        loads(observed(asking(sim), receiver)), subscribers=[metrics]
    ) as orchestrator:
        await orchestrator.arun(TASK)
    spans = receiver.wait(whole_run)
    [tool] = named(spans, "execute_tool ask_agent")
    own, asked = sorted(named(spans, "invoke_agent bea"), key=lambda s: s["massgen.phase"])
    assert (asked["massgen.phase"], own["massgen.phase"]) == ("ask", "answer")
    [chat] = list(children(spans, asked))
    assert chat.name == "chat gpt-4o-mini" and chat["gen_ai.usage.output_tokens"] > 0
    assert len(list(children(spans, own))) == 1  # her own turn's request only
    labels = {"provider": "openai", "model": "gpt-4o-mini", "agent": "bea"}
    requests = metrics.registry.get_sample_value(
        "massgen_requests_total", {**labels, "status": "ok"}
    )
    assert requests == 2  # her own turn's and the one answering Ada


async def test_a_fallbacks_requests_are_under_the_turn_it_takes_over(
    receiver: Receiver, sim: ProviderSimulator
) -> None:
    sim.script([Fault(503)], match="You are Ada.")
    backend = f"{{type: openai, model: gpt-4o-mini, base_url: '{sim.openai_base_url}', api_key: x}}"
    text = f"""
agents:
  - {{name: ada, role: You are Ada., fallback: bea, backend: {backend}}}
  - {{name: bea, role: You are Bea., standby: true, backend: {backend}}}
orchestrator: {{strategy: parallel, max_retries: 0}}
"""
    result = await run(observed(text, receiver))
    assert result.answers[0].answered_by == "bea"
    spans = receiver.wait(whole_run)
    failed, taken = sorted(named(spans, "invoke_agent ada"), key=lambda s: s.start)
    assert (failed.status, failed["error.type"], failed["massgen.dropped"]) == (2, "503", False)
    assert (taken.status, taken["massgen.answered_by"]) == (0, "bea")
    [asked] = children(spans, taken)  # bea's request, in the seat it took
    assert asked.name == "chat gpt-4o-mini" and asked.status == 0
    assert not named(spans, "invoke_agent bea")


async def test_a_memory_summary_is_a_turn_with_its_own_request(
    receiver: Receiver, sim: ProviderSimulator
) -> None:
    """A summary written before the turn (memory ``summary``) is an ``invoke_agent`` span of
    phase ``summary`` holding the request that wrote it; the turn holds its own."""
    from massgen.store import MemoryStore
    from tests.test_memory import _seed, _team

    store = MemoryStore()
    await _seed(store, 6)  # over the budget: folded into a summary first
    sim.script(Text("SUMMARY-OF-EARLIER-RUNS"), match="Write the updated summary")
    text = observed(_team(sim, "{strategy: summary, size: 250}"), receiver)
    async with Orchestrator.from_config(loads(text), session="s1", memory_store=store) as orch:
        await orch.arun("What now?")
    spans = receiver.wait(whole_run)
    turns = {s["massgen.phase"]: s for s in named(spans, "invoke_agent solo")}
    assert set(turns) == {"summary", "answer"}
    for turn in turns.values():
        [chat] = list(children(spans, turn))
        assert chat.name == "chat gpt-4o-mini"
    assert turns["summary"].end <= turns["answer"].end
