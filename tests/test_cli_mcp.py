"""`massgen mcp` (massgen/cli/mcp.py) as a real process, driven by the official `mcp` SDK's
client over stdio and streamable HTTP. The team answers with the offline `replay` backend; a
failing team's provider is a closed loopback port. No sleeps: waits have deadlines."""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client

import massgen
from tests.procs import run_massgen
from tests.sim.sim_types import Text, ToolCalls, ToolCallSpec
from tests.sim.simulator import ProviderSimulator
from tests.teamkit import CAPITALS

TEAM = CAPITALS.format(latency=0)
FAILING = """\
backends:
  down: {type: openai, model: gpt-4o-mini, api_key: sk-test-secret, base_url: "http://127.0.0.1:9/v1"}
agents:
  - {name: solo, backend: down}
orchestrator: {error_strategy: fail_fast, max_retries: 0}
"""


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONUNBUFFERED": "1"}


@asynccontextmanager
async def stdio_team(tmp_path: Path, text: str = TEAM, *more: str) -> AsyncIterator[Client]:
    team = tmp_path / "team.yaml"
    team.write_text(text)
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "massgen", "mcp", str(team), *more], env=_env()
    )
    with open(tmp_path / "stderr.txt", "w") as errlog:
        async with Client(stdio_client(params, errlog=errlog)) as client:  # type: ignore[arg-type]
            yield client


@pytest.mark.asyncio
async def test_ask_team_over_stdio_answers_with_votes_cost_and_progress(tmp_path: Path) -> None:
    async with stdio_team(tmp_path) as client:
        tools = (await client.list_tools()).tools
        assert [t.name for t in tools] == ["ask_team"]
        assert client.server_info.version == massgen.__version__ and client.instructions
        props = tools[0].input_schema["properties"]
        assert set(props) == {"task", "strategy"}
        assert {"enum": ["parallel", "sequential", "consensus"], "type": "string"} in props[
            "strategy"
        ]["anyOf"]  # the client still reads the choices
        progress: list[tuple[float, str | None]] = []

        async def on_progress(value: float, total: float | None, message: str | None) -> None:
            progress.append((value, message))

        result = await client.call_tool(
            "ask_team", {"task": "Capital of France?"}, progress_callback=on_progress
        )
        assert not result.is_error
        assert result.content[0].text == "Paris is the capital of France."  # type: ignore[union-attr]
        data = result.structured_content
        assert data is not None
        assert data["winner"] == "bob" and data["status"] == "ok"
        assert data["votes"] == {"ada": "bob", "bob": "bob", "cy": "bob"}
        assert data["agreement"] == 1.0 and data["rounds"] >= 1
        assert data["cost"] == 0.0 and data["requests"] >= 6 and data["tokens"] > 0
        assert data["strategy"] == "consensus"
        assert progress and progress[0][0] == 1
        assert "leader bob" in (progress[-1][1] or "")

        # A strategy override: parallel has no vote.
        other = await client.call_tool(
            "ask_team", {"task": "Capital of France?", "strategy": "parallel"}
        )
        assert not other.is_error and other.structured_content is not None
        assert other.structured_content["strategy"] == "parallel"
        assert other.structured_content["votes"] == {}
        bad = await client.call_tool("ask_team", {"task": "x", "strategy": "chaos"})
        assert bad.is_error
        # Ours to word: the value and the choices, not a validator's report and its link.
        told = bad.content[0].text  # type: ignore[union-attr]
        assert "'chaos'" in told and "parallel, sequential, consensus" in told
        assert "http" not in told and "\n" not in told


@pytest.mark.asyncio
async def test_a_bad_task_is_a_one_line_tool_error_naming_it(tmp_path: Path) -> None:
    """A missing, empty or non-string `task` is told in one line of ours (like an unknown
    strategy), not as a validator's report with its link; `task` stays required in the
    schema, and a task written in JSON is still a task."""
    async with stdio_team(tmp_path) as client:
        (tool,) = (await client.list_tools()).tools
        assert tool.input_schema["required"] == ["task"]
        assert tool.input_schema["properties"]["task"]["type"] == "string"
        for arguments, said in (
            ({}, "missing or empty"),
            ({"task": "  "}, "missing or empty"),
            ({"task": 42}, "must be a string (the question for the team), not a number"),
            ({"task": None}, "not null"),
            ({"task": ["x"], "strategy": "parallel"}, "not an array"),
        ):
            bad = await client.call_tool("ask_team", arguments)
            told = bad.content[0].text  # type: ignore[union-attr]
            assert bad.is_error and "`task`" in told and said in told, (arguments, told)
            assert "http" not in told and "\n" not in told, told
        json_task = await client.call_tool("ask_team", {"task": '{"q": "Capital of France?"}'})
        assert not json_task.is_error
        assert json_task.content[0].text == "Paris is the capital of France."  # type: ignore[union-attr]


@pytest.mark.asyncio
async def test_metrics_port_serves_the_calls_runs_and_requests(tmp_path: Path) -> None:
    """`--metrics-port 0`: its URL on stderr (stdout is the protocol's), and a scrape parsed
    by prometheus_client's own parser counts the call's run and its provider requests."""
    from prometheus_client.parser import text_string_to_metric_families

    async with stdio_team(tmp_path, TEAM, "--metrics-port", "0") as client:
        # Told before the server answered the client's initialize, so it is there now.
        told = (tmp_path / "stderr.txt").read_text()
        url = told.split("metrics on ", 1)[1].split()[0]
        result = await client.call_tool("ask_team", {"task": "Capital of France?"})
        assert not result.is_error and result.structured_content is not None
        requests = result.structured_content["requests"]
        with urllib.request.urlopen(url, timeout=10) as response:
            text = response.read().decode()
    samples = [s for family in text_string_to_metric_families(text) for s in family.samples]
    runs = [s.value for s in samples if s.name == "massgen_runs_total"]
    assert runs == [1.0]
    sent = sum(s.value for s in samples if s.name == "massgen_requests_total")
    assert sent == requests >= 6


@pytest.mark.asyncio
async def test_parallel_and_sequential_runs_report_each_agent_as_progress(tmp_path: Path) -> None:
    async with stdio_team(tmp_path) as client:
        heard: dict[str, list[tuple[float, float | None, str | None]]] = {}
        for strategy in ("parallel", "sequential"):
            got = heard.setdefault(strategy, [])

            async def on_progress(
                value: float, total: float | None, message: str | None, got: Any = got
            ) -> None:
                got.append((value, total, message))

            task = {"task": "Capital of France?", "strategy": strategy}
            result = await client.call_tool("ask_team", task, progress_callback=on_progress)
            assert not result.is_error
    parallel, sequential = heard["parallel"], heard["sequential"]
    assert [(value, total) for value, total, _ in parallel] == [(1, 3), (2, 3), (3, 3)]
    assert sorted(m or "" for *_, m in parallel) == ["ada answered", "bob answered", "cy answered"]
    assert sequential == [
        (1, 3, "step 1: ada done"),
        (2, 3, "step 2: bob done"),
        (3, 3, "step 3: cy done"),
    ]


def test_progress_tells_aggregation_fallbacks_and_failures() -> None:
    from massgen.cli.mcp_serve import progress_note
    from massgen.events import AgentAnswered, AgentFailedEvent
    from massgen.types import Usage

    def answered(phase: str, by: str = "") -> AgentAnswered:
        return AgentAnswered(
            agent="ada", phase=phase, round=1, text="x", usage=Usage(), cost=0.0, latency=0.0,
            answered_by=by,
        )  # fmt: skip

    assert progress_note(answered("aggregate"), "parallel") == "ada aggregated the answers"
    assert progress_note(answered("step", by="bob"), "sequential") == "step 1: ada done (by bob)"
    assert progress_note(answered("answer"), "consensus") is None  # rounds only
    dropped = AgentFailedEvent(agent="cy", error="timed out")
    assert progress_note(dropped, "parallel") == "cy failed: timed out"
    assert progress_note(AgentFailedEvent(agent="cy", error="x", dropped=False), "parallel") is None


@pytest.mark.asyncio
async def test_concurrent_calls_each_get_their_own_answer(tmp_path: Path) -> None:
    import anyio

    async with stdio_team(tmp_path) as client:
        results: list[Any] = []

        async def ask() -> None:
            results.append(await client.call_tool("ask_team", {"task": "Capital of France?"}))

        async with anyio.create_task_group() as tg:
            for _ in range(3):
                tg.start_soon(ask)
        assert [r.structured_content["winner"] for r in results] == ["bob"] * 3


@pytest.mark.asyncio
async def test_a_failing_team_is_a_tool_error_without_secrets(tmp_path: Path) -> None:
    async with stdio_team(tmp_path, FAILING) as client:
        result = await client.call_tool("ask_team", {"task": "hello"})
        assert result.is_error
        text = result.content[0].text  # type: ignore[union-attr]
        assert "the team failed: agent 'solo' failed: [openai] connection failed" in text
        assert "Traceback" not in text and "sk-test-secret" not in text
    assert "sk-test-secret" not in (tmp_path / "stderr.txt").read_text()


def test_a_bad_config_exits_2_before_serving(tmp_path: Path) -> None:
    team = tmp_path / "team.yaml"
    team.write_text("agents:\n  - {name: a, backend: nowhere}\n")
    done = run_massgen("mcp", str(team), timeout=30)
    assert done.returncode == 2, done.stderr
    assert done.stdout == ""
    assert f"{team}:2" in done.stderr and done.stderr.startswith("error: ")


def test_massgen_help_does_not_import_mcp() -> None:
    code = "import sys; from massgen.cli import app; print('mcp' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def _start_http(team: Path) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "massgen", "mcp", str(team), "--http", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
    )
    assert proc.stderr is not None
    deadline = time.monotonic() + 30
    line = ""
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line or "serving on " in line:
            break
    if "serving on " not in line:
        proc.kill()
        proc.wait()
        pytest.fail(f"massgen mcp --http did not start: {line}{proc.stderr.read()}")
    return proc, line.split("serving on ", 1)[1].strip()


@pytest.mark.asyncio
async def test_ask_team_over_streamable_http_then_sigterm_stops_it(tmp_path: Path) -> None:
    team = tmp_path / "team.yaml"
    team.write_text(TEAM)
    proc, url = _start_http(team)
    try:
        assert url.startswith("http://127.0.0.1:") and url.endswith("/mcp")
        async with Client(streamable_http_client(url)) as client:
            result = await client.call_tool("ask_team", {"task": "Capital of France?"})
        assert not result.is_error and result.structured_content is not None
        assert result.structured_content["winner"] == "bob"
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
        assert out == "" and "stopped (SIGTERM)" in err
        port = int(url.rsplit(":", 1)[1].split("/")[0])
        with socket.socket() as s:  # the port is free again
            s.bind(("127.0.0.1", port))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _massgen_mcp(team: Path) -> subprocess.Popen[str]:
    """``massgen mcp team`` over stdio, its three pipes the test's."""
    pipe = subprocess.PIPE
    argv = [sys.executable, "-m", "massgen", "mcp", str(team)]
    return subprocess.Popen(argv, stdin=pipe, stdout=pipe, stderr=pipe, text=True, env=_env())


def test_sigint_stops_the_stdio_server(tmp_path: Path) -> None:
    team = tmp_path / "team.yaml"
    team.write_text(TEAM)
    proc = _massgen_mcp(team)
    try:
        assert proc.stdin is not None and proc.stdout is not None
        # One request answered: the server is up (and its signal handlers too).
        proc.stdin.write(
            '{"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion":'
            ' "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}\n'
        )
        proc.stdin.flush()
        assert '"id":1' in proc.stdout.readline().replace(" ", "")
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 130, err
        assert "Traceback" not in err and "stopped (SIGINT)" in err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


FAULTS = Path(__file__).resolve().parent / "mcp_faults.py"


def _gone(pid: int, within: float) -> bool:
    """Whether process ``pid`` has ended (or ends within ``within`` seconds): its pidfd
    becomes readable when it exits, so this waits on the event itself, not a poll."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        return bool(select.select([fd], [], [], within)[0])
    finally:
        os.close(fd)


@pytest.mark.asyncio
@pytest.mark.parametrize("how", ["client disconnects", "server gets SIGTERM"])
async def test_a_teams_mcp_server_does_not_outlive_massgen_mcp(
    how: str, tmp_path: Path, sim: ProviderSimulator
) -> None:
    """The team's own MCP server (tests/mcp_faults.py, started by the agent's first tool
    call) stops with `massgen mcp`, whether its client leaves or it is told to stop."""
    backend = f"{{type: openai, model: gpt-4o-mini, api_key: k, base_url: '{sim.openai_base_url}'}}"
    text = (
        f"tools:\n  faults: {{use: mcp, command: '{sys.executable}', args: ['{FAULTS}']}}\n"
        f"agents:\n  - {{name: ada, backend: {backend}, tools: [faults]}}\n"
        "orchestrator: {strategy: parallel}\n"
    )
    sim.script([ToolCalls([ToolCallSpec("faults_pid", {}, id="t1")]), Text("pid told")])
    async with stdio_team(tmp_path, text) as client:
        result = await client.call_tool("ask_team", {"task": "Which pid?"})
        assert not result.is_error and result.content[0].text == "pid told"  # type: ignore[union-attr]
        said = sim.requests[1].tool_results[0].content
        tool_pid = int(said.split("\n")[1])  # the first line inside the fence
        served_by = int(Path(f"/proc/{tool_pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        assert "massgen" in Path(f"/proc/{served_by}/cmdline").read_text()  # its parent
        assert not _gone(tool_pid, 0)
        if how == "server gets SIGTERM":
            os.kill(served_by, signal.SIGTERM)
            assert _gone(served_by, 30), "massgen mcp did not stop on SIGTERM"
            assert _gone(tool_pid, 0), "the team's MCP server outlived massgen mcp"
    assert _gone(served_by, 30), "massgen mcp did not stop when its client left"
    assert _gone(tool_pid, 0), "the team's MCP server outlived massgen mcp"


def test_a_client_that_dies_mid_call_ends_the_server_quietly(tmp_path: Path) -> None:
    """A killed client closes both pipes while a call runs: the server's last words (the
    call's end) meet a broken pipe. It ends (0: its client is gone) without a traceback."""
    team = tmp_path / "team.yaml"
    team.write_text(
        "backends:\n  slow: {type: replay, default: slow, latency: 60}\n"
        "agents:\n  - {name: a, backend: slow}\norchestrator: {strategy: parallel}\n"
    )
    proc = _massgen_mcp(team)
    try:
        assert proc.stdin is not None and proc.stdout is not None
        hello = {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t"}}
        for message in (
            {"id": 1, "method": "initialize", "params": {**hello}},
            {"method": "notifications/initialized"},
            {
                "id": 2,
                "method": "tools/call",
                "params": {
                    "name": "ask_team",
                    "arguments": {"task": "x"},
                    "_meta": {"progressToken": 1},
                },
            },
            {"id": 3, "method": "ping"},  # answered once the call is under way
        ):
            proc.stdin.write(json.dumps({"jsonrpc": "2.0", **message}) + "\n")
        proc.stdin.flush()
        answered = [json.loads(proc.stdout.readline()).get("id") for _ in range(2)]
        assert answered == [1, 3]
        proc.stdout.close()  # the client is gone
        proc.stdin.close()
        err = proc.stderr.read() if proc.stderr else ""
        assert proc.wait(timeout=30) == 0, err
        assert "Traceback" not in err and "BrokenPipeError" not in err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()


SLOW_SECOND = (
    "backends:\n  fast: {type: replay, default: fast}\n"
    "  slow: {type: replay, default: slow, latency: 60}\n"
    "agents:\n  - {name: a, backend: fast}\n  - {name: b, backend: slow}\n"
    "orchestrator: {strategy: parallel}\n"
)
"""One agent answers at once, the other's provider takes a minute: a call stays in flight."""


def _child_running(*words: str) -> int:
    """The pid of this process's child whose command line has ``words``."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except (OSError, IndexError, ValueError):
            continue
        if ppid == os.getpid() and all(w.encode() in argv for w in words):
            return int(entry.name)
    raise AssertionError(f"no child process running {words}")


@pytest.mark.asyncio
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
async def test_a_stop_over_stdio_answers_the_call_in_flight(
    sig: signal.Signals, tmp_path: Path
) -> None:
    """SIGTERM or Ctrl-C while a call runs: its run is cancelled and the client is told so
    in the call's answer before the server closes, not left with a closed connection."""
    import anyio

    told: list[tuple[bool, str]] = []
    heard = anyio.Event()

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        heard.set()

    async with stdio_team(tmp_path, SLOW_SECOND) as client:
        served_by = _child_running("massgen", "mcp")

        async def ask() -> None:
            got = await client.call_tool("ask_team", {"task": "x"}, progress_callback=on_progress)
            told.append((got.is_error, got.content[0].text))  # type: ignore[union-attr]

        async with anyio.create_task_group() as tg:
            tg.start_soon(ask)
            with anyio.fail_after(30):
                await heard.wait()  # `a answered`: the call is under way
            os.kill(served_by, sig)
        assert _gone(served_by, 30), "massgen mcp did not stop"
    assert len(told) == 1 and told[0][0], told  # an error result, not "Connection closed"
    assert told[0][1].endswith("the team failed: the server is stopping"), told
    err = (tmp_path / "stderr.txt").read_text()
    assert f"stopped ({sig.name})" in err and "Traceback" not in err


@pytest.mark.asyncio
async def test_sigterm_over_http_stops_the_server_while_a_call_runs(tmp_path: Path) -> None:
    """A call in flight (one agent answered, the other's provider takes a minute) does not
    hold the stop: the call is cancelled and the server ends at once, as on stdio."""
    import anyio

    team = tmp_path / "team.yaml"
    team.write_text(SLOW_SECOND)
    proc, url = _start_http(team)
    heard: list[str | None] = []
    told: list[str] = []  # the call's error
    ended: tuple[int, str] | None = None
    try:
        with contextlib.suppress(Exception):  # the client's own complaints at the server's end
            async with Client(streamable_http_client(url)) as client:
                answered = anyio.Event()

                async def on_progress(
                    value: float, total: float | None, message: str | None
                ) -> None:
                    heard.append(message)
                    answered.set()

                async def ask() -> None:
                    with contextlib.suppress(Exception):
                        got = await client.call_tool(
                            "ask_team", {"task": "x"}, progress_callback=on_progress
                        )
                        told.append(got.content[0].text if got.is_error else "")  # type: ignore[union-attr]

                async with anyio.create_task_group() as tg:
                    tg.start_soon(ask)
                    with anyio.fail_after(30):
                        await answered.wait()  # the call is under way
                    proc.send_signal(signal.SIGTERM)
                    _, err = await anyio.to_thread.run_sync(lambda: proc.communicate(timeout=20))
                    ended = proc.returncode, err
                    tg.cancel_scope.cancel()
        assert heard == ["a answered"]
        assert len(told) == 1 and told[0].endswith("the team failed: the server is stopping")
        assert ended is not None, "massgen mcp did not stop within 20 s of SIGTERM"
        assert ended[0] == 0 and "stopped (SIGTERM)" in ended[1], ended[1]
        assert "Traceback" not in ended[1]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
