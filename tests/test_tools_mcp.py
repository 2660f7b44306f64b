"""MCP servers' tools (massgen/tools/mcp.py), against real servers: the npm reference servers
(``server-everything``, ``server-filesystem``, installed in tests/mcp_servers by ``npm ci``)
and a Python server written with the official SDK for faults (tests/mcp_faults.py), over stdio
and streamable HTTP. No mock of the SDK; no sleeps (waits have deadlines)."""

from __future__ import annotations

import base64
import fcntl
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from massgen import events as ev
from massgen.config import loads
from massgen.errors import ConfigError, RunError, ToolError
from massgen.orchestrator import Orchestrator
from massgen.team import build_agents
from massgen.tools.mcp import McpServer
from massgen.tools.registry import build_tool
from massgen.tools.runner import UNTRUSTED_NOTE, ToolBox
from massgen.types import ToolCall
from tests.procs import read_line
from tests.sim.sim_types import Text, ToolCalls, ToolCallSpec
from tests.sim.simulator import ProviderSimulator

pytestmark = pytest.mark.asyncio(loop_scope="module")

SERVERS = Path(__file__).resolve().parent / "mcp_servers"
FAULTS = str(Path(__file__).resolve().parent / "mcp_faults.py")


def _npm_servers() -> Path:
    """tests/mcp_servers with its node_modules (``npm ci`` there if missing): never a skip."""
    for tool in ("node", "npx", "npm"):
        if shutil.which(tool) is None:
            pytest.fail(
                f"`{tool}` is not installed: the MCP tests need Node.js (.ci/run sets it up)"
            )
    ready = SERVERS / "node_modules" / ".bin" / "mcp-server-everything"
    if ready.exists():
        return SERVERS
    # One install: the suite's other processes (pytest-xdist) wait on the folder's lock,
    # then find it done (two `npm ci` at once in one folder fail).
    folder = os.open(SERVERS, os.O_RDONLY)
    try:
        fcntl.flock(folder, fcntl.LOCK_EX)
        if not ready.exists():
            argv = ["npm", "ci", "--no-audit", "--no-fund"]
            done = subprocess.run(argv, cwd=SERVERS, capture_output=True, text=True)
            if done.returncode != 0:
                pytest.fail(f"`npm ci` in tests/mcp_servers failed: {done.stderr[-2000:]}")
    finally:
        os.close(folder)  # and its lock
    return SERVERS


def npx(package: str, *args: str) -> dict[str, Any]:
    """A ``tools:`` entry starting one of the npm servers as the docs do, with ``npx``."""
    return {"use": "mcp", "command": "npx", "args": ["--no-install", package, *args]}


def installed(package: str) -> dict[str, Any]:
    """The same server started from its installed script, without npx: for tests about
    something else than how a server is found. npx adds ~0.6 s of CPU to each start; the
    fixture ``everything``, the environment test and each run through a wire use npx."""
    return {"use": "mcp", "command": str(SERVERS / "node_modules" / ".bin" / package)}


def descendants(pid: int | None = None) -> set[int]:
    """Every live process below ``pid`` (this one by default), from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            state, ppid = stat.rsplit(")", 1)[1].split()[:2]
            if state != "Z":
                children.setdefault(int(ppid), []).append(int(entry.name))
    found: set[int] = set()
    todo = [pid or os.getpid()]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


async def call(box: ToolBox, name: str, **arguments: Any) -> tuple[bool, str, str]:
    outcome = await box.call(ToolCall("c1", name, arguments))
    return outcome.ok, outcome.output, outcome.content


@pytest.fixture(scope="module")
def servers() -> Path:
    return _npm_servers()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def everything(servers: Path) -> AsyncIterator[ToolBox]:
    """server-everything, started once for the module."""
    group = build_tool("everything", npx("mcp-server-everything"), servers)
    box = ToolBox([group])
    await box.ready()
    yield box
    await group.aclose()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def faults() -> AsyncIterator[ToolBox]:
    settings = {"use": "mcp", "command": sys.executable, "args": [FAULTS], "timeout": 1}
    group = build_tool("faults", {**settings, "max_output": 500})
    box = ToolBox([group])
    await box.ready()
    yield box
    await group.aclose()


# -- listing and results ----------------------------------------------------------------------


async def test_a_servers_tools_are_offered_prefixed_with_their_schemas(
    everything: ToolBox,
) -> None:
    specs = {s.name: s for s in everything.specs()}
    assert {"everything_echo", "everything_get-sum", "everything_get-tiny-image"} <= set(specs)
    echo = specs["everything_echo"]
    assert echo.description.startswith("Echoes back")
    assert echo.parameters["type"] == "object" and "message" in echo.parameters["properties"]
    assert "$schema" not in echo.parameters


async def test_text_structured_image_and_error_results(everything: ToolBox) -> None:
    ok, out, content = await call(everything, "everything_echo", message="hi")
    assert ok and out == "Echo: hi"
    assert content.startswith('<tool_output tool="everything_echo">') and content.endswith(
        UNTRUSTED_NOTE
    )
    assert (await call(everything, "everything_get-sum", a=2, b=3))[:2] == (
        True,
        "The sum of 2 and 3 is 5.",
    )
    ok, out, _ = await call(everything, "everything_get-structured-content", location="New York")
    assert ok and "temperature" in out
    ok, out, _ = await call(everything, "everything_get-tiny-image")
    assert ok and "[image image/png, " in out and "not shown to the model]" in out
    ok, out, content = await call(everything, "everything_echo", wrong="x")  # isError result
    assert (
        not ok and "message" in out and content.startswith('<tool_output tool="everything_echo">')
    )


async def test_the_server_gets_only_a_minimal_environment_and_its_env(
    servers: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-parent-secret")
    team = loads(
        "tools:\n"
        "  everything: {use: mcp, command: npx, args: [--no-install, mcp-server-everything],\n"
        "               env: {SERVICE_TOKEN: '${SERVICE_TOKEN}'}}\n"
        "agents:\n  - {name: ada, backend: {type: openai, model: m, api_key: k},\n"
        "     tools: [everything]}\n",
        file="team.yaml",
        base_dir=servers,
        env={"SERVICE_TOKEN": "tok-123", "OPENAI_API_KEY": "sk-x"},
    )
    (ada,) = build_agents(team)
    (group,) = ada.tools
    try:
        await ada.toolbox.ready()
        ok, out, _ = await call(ada.toolbox, "everything_get-env")
        assert ok and "tok-123" in out and "PATH" in out
        assert "sk-parent-secret" not in out and "OPENAI_API_KEY" not in out
        assert "tok-123" not in repr(group.settings)
    finally:
        await group.aclose()


async def test_include_exclude_and_prefix(servers: Path) -> None:
    only = build_tool(
        "ev",
        {**installed("mcp-server-everything"), "include": ["echo", "get-sum"], "prefix": ""},
        servers,
    )
    but = build_tool("ev", {**installed("mcp-server-everything"), "exclude": ["echo"]}, servers)
    try:
        assert [t.name for t in await only.expand()] == ["echo", "get-sum"]
        names = [t.name for t in await but.expand()]
        assert "ev_echo" not in names and "ev_get-sum" in names
    finally:
        await only.aclose()
        await but.aclose()
    wrong = build_tool("ev", {**installed("mcp-server-everything"), "include": ["ecko"]}, servers)
    try:
        with pytest.raises(ConfigError, match="has no tool 'ecko'") as e:
            await wrong.expand()
        assert e.value.key == "tools.ev.include" and "echo" in (e.value.hint or "")
    finally:
        await wrong.aclose()


async def test_the_filesystem_server_reads_inside_its_root_only(
    servers: Path, tmp_path: Path
) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.txt").write_text("alpha\n")
    (tmp_path / "secret.txt").write_text("TOP-SECRET\n")
    command = str(servers / "node_modules/.bin/mcp-server-filesystem")
    entry = {"use": "mcp", "command": command, "args": ["./docs"]}
    group = build_tool("files", entry, tmp_path)  # ./docs: relative to the config's folder
    box = ToolBox([group])
    try:
        await box.ready()
        assert "files_read_text_file" in box.tools
        ok, out, _ = await call(box, "files_read_text_file", path=str(tmp_path / "docs/a.txt"))
        assert ok and out.strip() == "alpha"
        ok, out, _ = await call(box, "files_read_text_file", path=str(tmp_path / "secret.txt"))
        assert not ok and "TOP-SECRET" not in out and "denied" in out.lower()
    finally:
        await group.aclose()


# -- faults (the Python server) ---------------------------------------------------------------


async def test_a_slow_call_times_out_and_the_server_stays(faults: ToolBox) -> None:
    started = time.perf_counter()
    ok, out, _ = await call(faults, "faults_slow", seconds=30)
    assert not ok and out == "timed out after 1s" and time.perf_counter() - started < 5
    assert (await call(faults, "faults_slow", seconds=0))[:2] == (True, "slept 0.0")


async def test_a_huge_result_is_cut_to_max_output(faults: ToolBox) -> None:
    ok, out, content = await call(faults, "faults_huge", chars=1_000_000)
    assert ok and len(out) == 1_000_000
    assert "x" * 500 + "\n[... cut: 999500 more characters]" in content and len(content) < 1000


async def test_structured_content_and_error_results(faults: ToolBox) -> None:
    ok, out, _ = await call(faults, "faults_weather", city="Oslo")
    assert ok and json.loads(out) == {"city": "Oslo", "celsius": 21.5}
    assert (await call(faults, "faults_pid"))[0]
    ok, out, _ = await call(faults, "faults_fail", reason="no such city")
    assert not ok and out.endswith("no such city")
    ok, out, _ = await call(faults, "faults_picture")
    assert ok and out.startswith("[image image/png, ")


async def test_a_crashed_server_is_reported_and_restarted_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    env = {"FAULTS_SECRET": "s3cret-xyz"}  # the server prints it on its stderr
    group = build_tool(
        "faults", {"use": "mcp", "command": sys.executable, "args": [FAULTS], "env": env}
    )
    box = ToolBox([group])
    try:
        await box.ready()
        first = int((await call(box, "faults_pid"))[1])
        ok, out, _ = await call(box, "faults_crash")
        assert not ok and "stopped during the call" in out and "restarted for the next call" in out
        assert "starting with token ***" in out and "s3cret-xyz" not in out  # its stderr, masked
        assert first not in descendants()
        ok, second, _ = await call(box, "faults_pid")  # the one restart
        assert ok and int(second) != first and int(second) in descendants()
        ok, out, _ = await call(box, "faults_crash")
        assert not ok and "not restarted again" in out
        ok, out, _ = await call(box, "faults_pid")
        assert not ok and "stopped again after its restart" in out
        assert isinstance(group, McpServer) and (group.starts, group.lost) == (2, 2)
        warned = [r.getMessage() for r in caplog.records if r.name == "massgen.tools"]
        assert any("stopped" in m and "restarted once" in m for m in warned)
        assert "s3cret-xyz" not in caplog.text
    finally:
        await group.aclose()


async def test_a_server_that_does_not_start_is_a_clear_error() -> None:
    before = descendants()
    silent = [sys.executable, "-c", "import sys; sys.stdin.read()"]  # never answers
    hung = build_tool(
        "hung", {"use": "mcp", "command": silent[0], "args": silent[1:], "start_timeout": 0.5}
    )
    missing = build_tool("gone", {"use": "mcp", "command": "/nonexistent/mcp-server"})
    try:
        with pytest.raises(ToolError, match=r"MCP server 'hung' \(python.*\) did not start within"):
            await hung.expand()
        with pytest.raises(ConfigError, match="MCP server 'gone' .*: no program") as e:
            await missing.expand()  # found before anything is started
        assert e.value.key == "tools.gone.command" and "full path" in (e.value.hint or "")
        assert descendants() <= before  # nothing left running
    finally:
        await hung.aclose()
        await missing.aclose()


# -- streamable HTTP --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def http_server() -> Iterator[str]:
    """The faults server over streamable HTTP on loopback; it wants a bearer token."""
    env = {**os.environ, "FAULTS_TOKEN": "tok-http-9"}
    proc = subprocess.Popen(
        [sys.executable, FAULTS, "--http"], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        line = read_line(proc, time.monotonic() + 20) or ""
        assert line.startswith("port="), line
        yield f"http://127.0.0.1:{int(line.strip()[5:])}/mcp"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        assert proc.stdout is not None
        proc.stdout.close()


async def test_a_header_http_cannot_carry_is_a_config_error_placed_and_not_shown() -> None:
    """A token read from the environment with its line break (``$(cat token)``, a file
    ending in a newline) was sent as is, and httpx refused it at the first turn."""
    text = (
        "tools:\n  remote: {use: mcp, url: 'http://127.0.0.1:9/mcp',\n"
        "           headers: {Authorization: 'Bearer ${TOKEN}'}}\n"
        "agents:\n  - {name: ada, backend: {type: openai, model: m, api_key: k}, tools: [remote]}\n"
    )
    with pytest.raises(ConfigError) as info:
        build_agents(loads(text, file="team.yaml", env={"TOKEN": "tok-line-9\n"}))
    assert (info.value.file, info.value.line) == ("team.yaml", 2) and info.value.hint  # its entry
    assert info.value.key == "tools.remote.headers.Authorization"
    assert "tok-line-9" not in str(info.value)


async def test_streamable_http_with_headers_from_the_environment(http_server: str) -> None:
    text = (
        f"tools:\n  remote: {{use: mcp, url: '{http_server}',\n"
        "           headers: {Authorization: 'Bearer ${FAULTS_TOKEN}'}}\n"
        "agents:\n  - {name: ada, backend: {type: openai, model: m, api_key: k}, tools: [remote]}\n"
    )
    team = loads(text, file="team.yaml", env={"FAULTS_TOKEN": "tok-http-9"})
    (ada,) = build_agents(team)
    try:
        await ada.toolbox.ready()
        ok, out, _ = await call(ada.toolbox, "remote_weather", city="Lima")
        assert ok and json.loads(out)["city"] == "Lima"
        assert "tok-http-9" not in repr(ada.tools[0].settings)
    finally:
        await ada.tools[0].aclose()
    wrong = {"Authorization": "Bearer wrong-secret-77"}
    refused = build_tool("remote", {"use": "mcp", "url": http_server, "headers": wrong})
    try:
        with pytest.raises(ToolError, match="MCP server 'remote' .* did not start") as e:
            await refused.expand()
        assert "wrong-secret-77" not in str(e.value)
        assert "did not start: HTTP 401 " in str(e.value)  # the SDK's error does not say it
    finally:
        await refused.aclose()


# -- a whole run ------------------------------------------------------------------------------

WIRES = {
    "openai": "{type: openai, model: gpt-4o-mini, api_key: k, base_url: '%s'}",
    "anthropic": "{type: anthropic, model: claude-x, api_key: k, base_url: '%s'}",
    "google": "{type: google, model: gemini-2.5-flash, api_key: k, base_url: '%s'}",
}


@pytest.mark.parametrize("wire", list(WIRES))
async def test_a_run_calls_an_npm_server_and_leaves_no_process(
    wire: str, servers: Path, sim: ProviderSimulator
) -> None:
    """Two agents share one server-everything (started on first use, stopped by aclose); a
    call made in each provider's wire format reaches it and its result goes back."""
    base = {"openai": sim.openai_base_url, "anthropic": sim.anthropic_base_url}
    base["google"] = sim.gemini_base_url
    text = (
        "tools:\n"
        "  everything: {use: mcp, command: npx, args: [--no-install, mcp-server-everything]}\n"
        f"backends:\n  llm: {WIRES[wire] % base[wire]}\n"
        "agents:\n"
        "  - {name: ada, backend: llm, tools: [everything]}\n"
        "  - {name: bob, backend: llm, tools: [everything]}\n"
        "orchestrator: {strategy: sequential}\n"
    )
    sim.script(
        [
            ToolCalls([ToolCallSpec("everything_echo", {"message": "ping-42"}, id="t1")]),
            Text("ada heard the echo"),
            ToolCalls([ToolCallSpec("everything_get-sum", {"a": 40, "b": 2}, id="t2")]),
            Text("bob got 42"),
        ]
    )
    before = descendants()
    events: list[ev.Event] = []
    orchestrator = Orchestrator.from_config(
        loads(text, file="team.yaml", base_dir=servers, env={}), subscribers=[events.append]
    )
    ada, bob = orchestrator.agents.values()
    assert ada.tools[0] is bob.tools[0]  # one server for both
    assert descendants() == before  # nothing started before the first turn
    try:
        result = await orchestrator.arun("Echo ping-42, then add 40 and 2.")
        running = descendants() - before
        assert running  # the server (npx and node)
    finally:
        await orchestrator.aclose()
    assert result.final_answer == "bob got 42"
    first = sim.requests[0]
    assert "everything_echo" in first.tools and "everything_get-sum" in first.tools
    echoed = sim.requests[1].tool_results[0].content
    assert "Echo: ping-42" in echoed and UNTRUSTED_NOTE in echoed  # Gemini: in JSON
    assert "The sum of 40 and 2 is 42." in sim.requests[3].tool_results[0].content
    done = [e for e in events if isinstance(e, ev.ToolResult)]
    assert [(e.agent, e.tool, e.ok) for e in done] == [
        ("ada", "everything_echo", True),
        ("bob", "everything_get-sum", True),
    ]
    assert not running & descendants(), "the MCP server outlived the orchestrator"


IMAGE_WIRES = {  # the backend, and where its second request carries the tool's image
    "chat": "{type: openai, model: gpt-4o-mini, api_key: k, base_url: '%s'}",
    "responses": "{type: openai, model: gpt-4o, api_key: k, base_url: '%s'}",  # with a search
    "anthropic": "{type: anthropic, model: claude-x, api_key: k, base_url: '%s'}",
    "gemini-3": "{type: google, model: gemini-3-flash-preview, api_key: k, base_url: '%s'}",
    "gemini-2": "{type: google, model: gemini-2.5-flash, api_key: k, base_url: '%s'}",
    "text-only": "{type: lmstudio, model: local, base_url: '%s'}",
}


def _tiny_image() -> str:
    """server-everything's image, read from its source: what must reach the provider."""
    source = SERVERS / "node_modules/@modelcontextprotocol/server-everything/dist/tools"
    found = re.search(r'MCP_TINY_IMAGE = "([^"]+)"', (source / "get-tiny-image.js").read_text())
    assert found, "server-everything's get-tiny-image tool changed"
    return found.group(1)


def _sent_image(wire: str, body: dict[str, Any]) -> Any:
    """Where ``wire`` puts a tool result's image in a request body (KeyError if not there)."""
    if wire in ("chat", "text-only"):
        *_, result, shown = body["messages"]
        assert result["role"] == "tool" and isinstance(result["content"], str)
        assert shown["role"] == "user" and shown["content"][0]["type"] == "text"
        return shown["content"][1]["image_url"]["url"]  # a data URL
    if wire == "responses":
        output = body["input"][-1]["output"]
        assert output[0]["type"] == "input_text" and output[1]["type"] == "input_image"
        return output[1]["image_url"]
    if wire == "anthropic":
        (result,) = body["messages"][-1]["content"]
        text, image = result["content"]
        assert result["type"] == "tool_result" and text["type"] == "text"
        return image["type"], image["source"]
    response, *beside = body["contents"][-1]["parts"]
    if wire == "gemini-3":
        (image,) = response["functionResponse"]["parts"]
    else:  # Gemini 2.x: beside the function response, not in it
        (image,) = beside
        assert "parts" not in response["functionResponse"]
    # The SDK writes some fields in snake case and bytes as URL-safe base64; the API takes both.
    blob = image.get("inlineData") or image["inline_data"]
    mime, data = blob.get("mimeType") or blob["mime_type"], blob["data"]
    return mime, base64.b64encode(base64.urlsafe_b64decode(data)).decode()


@pytest.mark.parametrize("wire", list(IMAGE_WIRES))
async def test_an_image_a_server_returns_reaches_each_wire_format(
    wire: str, servers: Path, sim: ProviderSimulator
) -> None:
    """server-everything's image goes to the model as each provider takes images in tool
    results; a text-only local server gets the note in its place."""
    base = sim.anthropic_base_url if wire == "anthropic" else sim.openai_base_url
    base = sim.gemini_base_url if wire.startswith("gemini") else base
    search = ", web_search" if wire == "responses" else ""  # a search sends it to Responses
    command = installed("mcp-server-everything")["command"]
    text = (
        "tools:\n"
        f"  everything: {{use: mcp, command: '{command}', include: [get-tiny-image]}}\n"
        "  web_search: {mode: native}\n"
        f"agents:\n  - {{name: ada, backend: {IMAGE_WIRES[wire] % base}, "
        f"tools: [everything{search}]}}\n"
        "orchestrator: {strategy: parallel}\n"
    )
    call = ToolCallSpec("everything_get-tiny-image", {}, id="call_img")
    sim.script([ToolCalls([call]), Text("a small logo")])
    async with Orchestrator.from_config(
        loads(text, file="team.yaml", base_dir=servers, env={})
    ) as o:
        result = await o.arun("What does the tiny image show?")
    assert result.final_answer == "a small logo"
    sent = sim.requests[1]
    (told,) = sent.tool_results
    said = json.loads(told.content)["result"] if wire.startswith("gemini") else told.content
    assert "Here's the image you requested:\n[image image/png, " in said
    image = _tiny_image()
    if wire == "text-only":
        assert "not shown to the model]\nThe image above is the MCP logo." in said
        assert image not in json.dumps(sent.body)
        return
    assert "attached as image 1]\nThe image above is the MCP logo." in said
    expected = {
        "chat": f"data:image/png;base64,{image}",
        "responses": f"data:image/png;base64,{image}",
        "anthropic": ("image", {"type": "base64", "media_type": "image/png", "data": image}),
    }.get(wire, ("image/png", image))
    assert _sent_image(wire, dict(sent.body)) == expected


async def test_a_server_that_does_not_start_fails_the_agent_with_the_reason(
    sim: ProviderSimulator,
) -> None:
    text = (
        f"tools:\n  broken: {{use: mcp, command: '{sys.executable}', args: [-c, 'exit(3)']}}\n"
        f"agents:\n  - {{name: ada, backend: {{type: openai, model: gpt-4o-mini, api_key: k,\n"
        f"     base_url: '{sim.openai_base_url}'}}, tools: [broken]}}\n"
        "orchestrator: {strategy: parallel}\n"
    )
    async with Orchestrator.from_config(loads(text, file="team.yaml", env={})) as orchestrator:
        with pytest.raises(RunError, match=r"ada: MCP server 'broken' .* did not start"):
            await orchestrator.arun("hi")
    assert not sim.requests  # no request without the tools the agent was promised


@pytest.mark.parametrize("how", ["exits at once", "never answers"])
async def test_a_server_that_does_not_start_is_tried_twice_a_run(
    how: str, sim: ProviderSimulator, caplog: pytest.LogCaptureFixture
) -> None:
    """Three agents need a server that cannot start: it is started twice in the run (the
    one restart), then their turns fail at once without a start or a warning; the next run
    tries it again, and no process is left."""
    code = "import sys; print('boom', file=sys.stderr); exit(3)"
    if how == "never answers":
        code = "import sys; sys.stdin.read()"
    backend = f"{{type: openai, model: gpt-4o-mini, api_key: k, base_url: '{sim.openai_base_url}'}}"
    text = (
        "tools:\n"
        f"  broken: {{use: mcp, command: '{sys.executable}', args: [-c, \"{code}\"],\n"
        "           start_timeout: 0.5}\n"
        f"backends:\n  llm: {backend}\n"
        "agents:\n"
        + "".join(
            f"  - {{name: {n}, backend: llm, tools: [broken]}}\n" for n in ("ada", "bob", "cy")
        )
        + "  - {name: dee, backend: llm}\n"
        "orchestrator: {strategy: parallel, error_strategy: continue}\n"
    )
    sim.script([Text("dee answered"), Text("dee again")])
    before = descendants()
    caplog.set_level("WARNING", logger="massgen.tools")
    async with Orchestrator.from_config(loads(text, file="team.yaml", env={})) as orchestrator:
        group = orchestrator.agents["ada"].tools[0]
        assert isinstance(group, McpServer)
        result = await orchestrator.arun("hi")
        assert result.final_answer == "dee answered" and group.starts == 2
        failures = sorted(result.failed_agents.values(), key=len)
        assert len(failures) == 3 and all("MCP server 'broken'" in f for f in failures)
        first, again, given_up = failures
        assert "did not start" in first and "not tried" not in first
        assert again.endswith("; it is not tried again in this run")
        assert given_up.endswith("(twice in this run); it is not tried again until the next run")
        warned = [r.getMessage() for r in caplog.records if "MCP server 'broken'" in r.getMessage()]
        assert sum("not tried again in this run" in m for m in warned) == 1
        assert len(warned) == (2 if how == "exits at once" else 1), warned  # with its stderr
        assert not sim.requests[0].tools  # dee's: the only request
        again_run = await orchestrator.arun("hi")  # the next run tries it again, twice
        assert again_run.final_answer == "dee again" and group.starts == 4
        assert len(again_run.failed_agents) == 3
    assert descendants() <= before


async def test_the_orchestrator_closes_each_tool_its_agents_hold_once() -> None:
    from massgen.agents.agent import Agent
    from massgen.backends.function import FunctionBackend
    from massgen.tools import Tool

    closed: list[Tool] = []

    class Held(Tool):
        """Holds a resource."""

        def execute(self) -> str:
            return "x"

        async def aclose(self) -> None:
            closed.append(self)

    held = Held()
    agents = [Agent(n, FunctionBackend(lambda _: "hi", tools=True), tools=[held]) for n in "ab"]
    async with Orchestrator(agents, strategy="parallel") as orchestrator:
        await orchestrator.arun("hi")
    assert closed == [held]
