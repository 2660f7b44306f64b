"""``ask_agent`` across two OS processes over Redis: agent A in a ``massgen run`` asks agent
B, hosted by a ``massgen worker``; the question and B's answer travel over the bus.

A's model is the provider simulator (in this process, on loopback), scripted to call
``ask_agent`` and then to repeat what the tool gave back; B is a replay backend whose answer
holds a word made up per test, so it can reach A's final answer only through B's turn on
the worker. Processes are followed by their output lines, never by sleeping.
"""

from __future__ import annotations

import json
import re
import signal
import uuid
from pathlib import Path

from typer.testing import CliRunner

from massgen.cli import app
from tests.mas.helpers import SHARED_REDIS
from tests.sim.sim_types import SimRequest, Text, ToolCalls, ToolCallSpec
from tests.sim.simulator import ProviderSimulator
from tests.test_cli_distributed import env, massgen, prefix, run, start, stop, turn_lines

__all__ = ["env", "prefix"]  # fixtures, shared with the CLI distributed tests

TASK = "Find out the secret word."


def team(sim: ProviderSimulator, prefix: str, secret: str) -> str:
    return f"""\
name: ask-over-the-bus
backends:
  model_a: {{type: openai, model: sim-a, api_key: k, base_url: '{sim.openai_base_url}'}}
  replay_b:
    type: replay
    model: replay
    rules:
      - match: 'teammate a asks you:.*secret word'
        reply: 'The secret word is {secret}.'
      - match: '.*'
        reply: 'B has nothing to add.'
agents:
  - {{name: b, backend: replay_b, role: "You are B, the keeper of words."}}
  - {{name: a, backend: model_a, role: "You are A.", tools: [ask_agent]}}
orchestrator:
  strategy: sequential
redis: {{url: '{SHARED_REDIS}', prefix: '{prefix}'}}
"""


def model_a(request: SimRequest) -> Text | ToolCalls:
    """Ask B first; once the tool result is in, answer with what B said."""
    if not request.tool_results:
        question = {"agent": "b", "question": "What is the secret word?"}
        return ToolCalls([ToolCallSpec("ask_agent", question)])
    found = re.search(r"secret word is ([\w-]+)", request.tool_results[-1].content)
    return Text(f"B says the secret word is {found.group(1) if found else 'unknown'}.")


def test_a_question_to_an_agent_on_a_worker_goes_over_the_bus(
    env: dict[str, str], prefix: str, sim: ProviderSimulator, tmp_path: Path
) -> None:
    secret = f"word-{uuid.uuid4().hex[:8]}"
    config = tmp_path / "team.yaml"
    config.write_text(team(sim, prefix, secret))
    sim.responder = model_a

    worker = start(massgen("worker", str(config), "--agent", "b"), env, "hosting ", 1)
    try:
        result = run(massgen("run", str(config), TASK, "--json", "--no-record"), env)
        listed = CliRunner().invoke(app, ["agents", "list", "--config", str(config), "--json"])
    finally:
        code, _, err = stop(worker, signal.SIGTERM)

    assert result.returncode == 0, result.stderr
    assert "b on workers at" in result.stderr and "local: a" in result.stderr
    data = json.loads(result.stdout)
    assert data["final_answer"] == f"B says the secret word is {secret}."

    # B answered twice on the worker: its pipeline turn and A's question, phase "ask".
    assert code == 0 and "Traceback" not in err, err
    handled = turn_lines(err)
    assert len(handled) == 2 and all(line.startswith("b: ") for line in handled)
    assert sum(line.startswith("b: ask ") for line in handled) == 1
    assert listed.exit_code == 0, listed.output
    (row,) = [r for r in json.loads(listed.stdout) if r["name"] == "b"]
    assert (row["processed"], row["failed"], row["dead_letters"]) == (2, 0, 0)

    # A's model asked once, then saw B's answer (fenced as a tool result) and answered.
    a_requests = [r for r in sim.requests if r.model == "sim-a"]
    assert len(a_requests) == 2
    assert a_requests[0].tools and "ask_agent" in a_requests[0].tools
    (answer,) = a_requests[1].tool_results
    assert answer.name == "ask_agent" and not answer.is_error
    assert f"The secret word is {secret}." in answer.content
    assert '<tool_output tool="ask_agent">' in answer.content
