"""The settings of an MCP ``tools:`` entry (massgen/tools/mcp.py): mistakes are located
configuration errors, the ``mcp`` package is optional and never imported without MCP tools;
and the blocking API's lifecycle (the async tests are in test_tools_mcp.py)."""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from massgen.config import loads
from massgen.errors import ConfigError
from massgen.orchestrator import Orchestrator
from massgen.team import build_agents
from tests.procs import run_massgen
from tests.sim.sim_types import Text, ToolCalls, ToolCallSpec
from tests.sim.simulator import ProviderSimulator

# -- configuration ----------------------------------------------------------------------------


LLM = "{type: openai, model: gpt-4o-mini, api_key: k}"


def build_error(entry: str) -> ConfigError:
    text = f"tools:\n  srv: {entry}\nagents:\n  - {{name: ada, backend: {LLM}, tools: [srv]}}\n"
    team = loads(text, file="team.yaml", env={})
    with pytest.raises(ConfigError) as e:
        build_agents(team)
    return e.value


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("{use: mcp}", "give `command` (stdio) or `url` (HTTP)"),
        ("{use: mcp, command: npx, url: 'http://x/mcp'}", "give `command` (stdio) or `url`"),
        ("{use: mcp, url: 'http://x/mcp', env: {A: b}}", "`env` is for `command` servers"),
        ("{use: mcp, command: npx, headers: {A: b}}", "`headers` is for `url` servers"),
        ("{use: mcp, url: 'ftp://x'}", "`url` must start with http:// or https://"),
        ("{use: mcp, command: npx, description: hi}", "keep their own descriptions"),
        ("{use: mcp, command: npx, start_timeout: 0}", "greater than 0"),
    ],
)
def test_settings_mistakes_are_located_config_errors(entry: str, message: str) -> None:
    error = build_error(entry)
    assert message in error.message and (error.file, error.line) == ("team.yaml", 2)
    assert error.key is not None and error.key.startswith("tools.srv")


def test_an_unknown_setting_lists_the_allowed_ones() -> None:
    error = build_error("{use: mcp, command: npx, argz: [x]}")
    assert error.key == "tools.srv.argz" and "include" in (error.hint or "")
    assert "start_timeout" in (error.hint or "")


def test_without_the_mcp_package_a_team_using_it_fails_with_a_hint(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "mcp", None)  # as if not installed
    error = build_error("{use: mcp, command: npx}")
    assert "need the `mcp` package" in error.message
    assert error.hint == "pip install 'massgen[mcp]'" and error.line == 2


def test_massgen_and_a_team_without_mcp_tools_never_import_it(tmp_path: Path) -> None:
    importtime = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "massgen", "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert not [line for line in importtime.stderr.splitlines() if "| mcp" in line]
    code = (
        "import asyncio, sys\n"
        "from massgen import Orchestrator\n"
        "o = Orchestrator.from_config('configs/offline.yaml')\n"
        "asyncio.run(o.arun('2+2?'))\n"
        "asyncio.run(o.aclose())\n"
        "assert not [m for m in sys.modules if m == 'mcp' or m.startswith('mcp.')], 'mcp'\n"
    )
    root = Path(__file__).resolve().parent.parent
    subprocess.run([sys.executable, "-c", code], cwd=root, check=True, timeout=60)


FAULTS = str(Path(__file__).resolve().parent / "mcp_faults.py")


def test_blocking_runs_each_start_and_stop_the_server(
    sim: ProviderSimulator, caplog: pytest.LogCaptureFixture
) -> None:
    """``Orchestrator.run`` outside an event loop closes the orchestrator after each run (its
    loop ends): the next run starts the server again, as a first start (no restart used)."""
    text = (
        f"tools:\n  faults: {{use: mcp, command: '{sys.executable}', args: ['{FAULTS}']}}\n"
        f"agents:\n  - {{name: ada, backend: {{type: openai, model: gpt-4o-mini, api_key: k,\n"
        f"     base_url: '{sim.openai_base_url}'}}, tools: [faults]}}\n"
        "orchestrator: {strategy: parallel}\n"
    )
    call = ToolCalls([ToolCallSpec("faults_pid", {}, id="p")])
    sim.script([call, Text("one"), call, Text("two")])
    orchestrator = Orchestrator.from_config(loads(text, file="team.yaml", env={}))
    assert orchestrator.run("pid?").final_answer == "one"
    assert orchestrator.run("pid again?").final_answer == "two"
    first, second = (int(r.tool_results[0].content.split("\n")[1]) for r in sim.requests[1::2])
    assert first != second
    (server,) = {id(t): t for t in orchestrator.agents["ada"].tools}.values()
    assert (server.starts, server.lost) == (2, 0)
    assert not [r for r in caplog.records if r.name == "massgen.tools"]


# -- mistakes found as the server starts, as `massgen run` shows them -------------------------


def _team(sim: ProviderSimulator, tools: str, listed: str) -> str:
    backend = f"{{type: openai, model: gpt-4o-mini, api_key: k, base_url: '{sim.openai_base_url}'}}"
    return (
        f"tools:\n{tools}"
        f"agents:\n  - {{name: ada, backend: {backend}, tools: [{listed}]}}\n"
        "orchestrator: {strategy: parallel}\n"
    )


SERVER = f"{{use: mcp, command: '{sys.executable}', args: ['{FAULTS}']"


@pytest.mark.parametrize(
    ("tools", "listed", "where", "hint"),
    [
        (
            f"  faults: {SERVER}, include: [pid, pids]}}\n",
            "faults",
            ":2: `tools.faults.include`",
            "pid, slow",
        ),
        (
            f"  one: {SERVER}, prefix: ''}}\n  two: {SERVER}, prefix: ''}}\n",
            "one, two",
            ":3: `tools.two`",
            "`prefix:`",
        ),
        (
            "  srv: {use: mcp, command: no-such-mcp-server}\n",
            "srv",
            ":2: `tools.srv.command`",
            "path",
        ),
    ],
    ids=[
        "include names a tool the server lacks",
        "two servers' tools with the same names",
        "a command that is not there",
    ],
)
def test_a_mistake_found_as_the_server_starts_is_a_located_config_error(
    sim: ProviderSimulator, tmp_path: Path, tools: str, listed: str, where: str, hint: str
) -> None:
    """Found only once the server starts (or would), yet told as a config mistake is: file,
    line, key and hint, exit 2 (not one line of an agent's failure, without the hint)."""
    (tmp_path / "team.yaml").write_text(_team(sim, tools, listed))
    done = run_massgen("run", "-q", "team.yaml", "hi", cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith(f"error: team.yaml{where}: ")
    assert "  hint: " in done.stderr and hint in done.stderr.split("  hint: ")[1]
    assert "Traceback" not in done.stderr and not sim.requests


def test_why_a_server_did_not_start_reaches_the_terminal_its_secrets_masked(
    sim: ProviderSimulator, tmp_path: Path
) -> None:
    """What the server wrote on stderr before it exited is the reason: `massgen run` shows
    it (the agent's failure is one line), with the values of its `env` masked."""
    said = "import os, sys; sys.exit('no access with token ' + os.environ['TOKEN'])"
    entry = f"  srv: {{use: mcp, command: '{sys.executable}', args: ['-c', \"{said}\"]"
    text = _team(sim, entry + ", env: {TOKEN: '${MCP_TEST_TOKEN}'}}\n", "srv")
    (tmp_path / "team.yaml").write_text(text)
    done = run_massgen("run", "team.yaml", "hi", cwd=tmp_path, env={"MCP_TEST_TOKEN": "tok-s3cret"})
    assert done.returncode == 1, done.stderr
    assert "MCP server 'srv'" in done.stderr and "did not start" in done.stderr
    assert "no access with token ***" in done.stderr
    assert "tok-s3cret" not in done.stderr + done.stdout
    assert "Traceback" not in done.stderr and not sim.requests


def test_a_second_ctrl_c_while_a_server_stops_leaves_nothing_running(
    sim: ProviderSimulator, tmp_path: Path
) -> None:
    """Ctrl-C while a stdio server starts: massgen closes its stdin, waits for it, then ends
    it. A second Ctrl-C meanwhile (an impatient user) must not cut that short: the run
    ends (130) and the server with it, rather than hanging with the server left running."""
    fifo = tmp_path / "told"
    os.mkfifo(fifo)
    script = tmp_path / "stuck.py"  # tells its pid, then that its stdin closed; never answers
    script.write_text(
        f"import os, sys, time\ntold = open({str(fifo)!r}, 'w', buffering=1)\n"
        "told.write(f'{os.getpid()}\\n')\nsys.stdin.read()\ntold.write('closed\\n')\n"
        "time.sleep(300)\n"
    )
    entry = f"  stuck: {{use: mcp, command: '{sys.executable}', args: ['{script}']}}\n"
    (tmp_path / "team.yaml").write_text(_team(sim, entry, "stuck"))
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    told = b""

    def heard(what: str) -> str:
        nonlocal told
        deadline = time.monotonic() + 30
        while what not in told.decode():
            left = deadline - time.monotonic()
            assert left > 0 and select.select([reader], [], [], left)[0], f"not told {what}"
            told += os.read(reader, 100)
        return told.decode()

    argv = [sys.executable, "-m", "massgen", "run", "-q", "team.yaml", "hi"]
    proc = subprocess.Popen(argv, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    server = 0
    try:
        server = int(heard("\n").split()[0])
        proc.send_signal(signal.SIGINT)
        heard("closed")  # massgen is stopping it
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=20)
        assert proc.returncode == 130, err
        assert b"Traceback" not in err
        assert not Path(f"/proc/{server}").exists() or "Z" in _state(server)
    finally:
        os.close(reader)
        for pid in (proc.pid, server):
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(pid, signal.SIGKILL) if pid else None
        proc.wait()


def _state(pid: int) -> str:
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    return "gone"


def test_a_url_servers_name_in_messages_hides_a_key_in_its_query() -> None:
    from massgen.tools.registry import build_tool

    server = build_tool("srv", {"use": "mcp", "url": "https://h.example/mcp?api_key=k-s3cret-1"})
    assert "k-s3cret-1" not in server.label and "api_key=***" in server.label  # type: ignore[attr-defined]
