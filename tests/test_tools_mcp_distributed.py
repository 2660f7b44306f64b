"""An MCP server in distributed mode: agent ``b``, hosted by a ``massgen worker``, has an MCP
server's tools; a ``massgen run`` sends it the turn over Redis, the worker starts the server
(on first use), the call's result reaches the answer, and stopping the worker stops the
server. The model is the provider simulator in this process; processes are followed by their
output lines, never by sleeping."""

from __future__ import annotations

import json
import re
import signal
import sys
from pathlib import Path

from tests.mas.helpers import SHARED_REDIS
from tests.sim.sim_types import SimRequest, Text, ToolCalls, ToolCallSpec
from tests.sim.simulator import ProviderSimulator
from tests.test_cli_distributed import env, massgen, prefix, run, start, stop
from tests.test_tools_mcp import FAULTS, descendants

__all__ = ["env", "prefix"]  # fixtures, shared with the CLI distributed tests


def model(request: SimRequest) -> Text | ToolCalls:
    """Ask the MCP server for its pid, then say it."""
    if not request.tool_results:
        return ToolCalls([ToolCallSpec("faults_pid", {})])
    found = re.search(r"\n(\d+)\n", request.tool_results[-1].content)
    return Text(f"the server's pid is {found.group(1) if found else 'unknown'}")


def team(
    folder: Path, sim: ProviderSimulator, prefix: str, tool: str, agents: str, more: str = ""
) -> Path:
    """A team file: ``tool`` the one ``tools:`` entry, ``agents`` the agents' lines, in
    parallel (``more``: orchestrator keys) on the shared Redis under ``prefix``."""
    config = folder / "team.yaml"
    config.write_text(
        f"backends:\n  llm: {{type: openai, model: sim, api_key: k, base_url: "
        f"'{sim.openai_base_url}'}}\ntools:\n  {tool}\nagents:\n{agents}"
        f"orchestrator: {{strategy: parallel{more}}}\n"
        f"redis: {{url: '{SHARED_REDIS}', prefix: '{prefix}'}}\n"
    )
    return config


def test_a_worker_starts_the_mcp_servers_its_agents_need_and_stops_them(
    env: dict[str, str], prefix: str, sim: ProviderSimulator, tmp_path: Path
) -> None:
    tool = f"faults: {{use: mcp, command: '{sys.executable}', args: ['{FAULTS}']}}"
    config = team(tmp_path, sim, prefix, tool, "  - {name: b, backend: llm, tools: [faults]}\n")
    sim.responder = model
    worker = start(massgen("worker", str(config)), env, "hosting ", 1)
    try:
        assert not descendants(worker.pid)  # nothing started before the first turn
        result = run(massgen("run", str(config), "pid?", "--json", "--no-record"), env)
        assert result.returncode == 0, result.stderr
        answer = json.loads(result.stdout)["final_answer"]
        pid = int(answer.rsplit(" ", 1)[1])
        assert pid in descendants(worker.pid)  # the worker's own server
    finally:
        code, _, err = stop(worker, signal.SIGTERM)
    assert code == 0, err
    assert not alive(pid), "the MCP server outlived its worker"


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_a_worker_gives_up_on_a_server_that_does_not_start_for_the_rest_of_a_run(
    env: dict[str, str], prefix: str, sim: ProviderSimulator, tmp_path: Path
) -> None:
    """Three hosted agents need a server that exits at once: the worker starts it twice in
    a run (one warning that it gives up), the third turn fails at once; the next run (a new
    `massgen run`) tries it again."""
    code = "import sys; print('boom', file=sys.stderr); exit(3)"
    tool = f"broken: {{use: mcp, command: '{sys.executable}', args: [-c, \"{code}\"]}}"
    agents = "".join(f"  - {{name: {n}, backend: llm, tools: [broken]}}\n" for n in "abc")
    agents += "  - {name: d, backend: llm}\n"
    config = team(tmp_path, sim, prefix, tool, agents, ", error_strategy: continue")
    sim.responder = lambda request: Text("d answered")
    hosted = [arg for name in "abc" for arg in ("-a", name)]
    worker = start(massgen("worker", str(config), *hosted), env, "hosting ", 3)
    try:
        for _ in range(2):  # each run: two starts, then a turn that fails at once
            done = run(massgen("run", str(config), "hi", "--json", "--no-record"), env)
            assert done.returncode == 3, done.stderr  # degraded: d answered alone
            data = json.loads(done.stdout)
            assert data["final_answer"] == "d answered"
            failed = sorted(data["failed_agents"].values(), key=len)
            assert len(failed) == 3 and all("MCP server 'broken'" in f for f in failed), failed
            assert "not tried" not in failed[0]
            assert failed[1].endswith("it is not tried again in this run")
            assert failed[2].endswith("it is not tried again until the next run")
    finally:
        code, _, err = stop(worker, signal.SIGTERM)
    assert code == 0, err
    warned = [line for line in err.splitlines() if line.startswith("WARNING massgen.tools: ")]
    assert len(warned) == 4, err  # a run's two starts, each with the server's stderr
    assert sum(line.endswith("not tried again in this run") for line in warned) == 2, err
