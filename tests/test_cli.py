"""The CLI as a user meets it: stdout holds only the answer, errors are one clear line,
exit codes 0/1/2/3/130."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from massgen.cli import app

ROOT = Path(__file__).resolve().parents[1]
OFFLINE = ROOT / "configs" / "offline.yaml"
TASK = "What is the capital of France?"

FAILING_BACKEND = """
from massgen.backends.base import Backend
from massgen.errors import ProviderError

class Broken(Backend):
    async def complete(self, request):
        raise ProviderError("server exploded", provider="broken", status=500)
"""


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def write_team(tmp_path: Path, body: str, backend_module: bool = False) -> Path:
    if backend_module:
        (tmp_path / "brokenbackend.py").write_text(FAILING_BACKEND)
    path = tmp_path / "team.yaml"
    path.write_text(textwrap.dedent(body))
    return path


def fast_replay(answer: str) -> str:
    return f'{{type: replay, default: "{answer}"}}'


def test_run_prints_only_the_final_answer(runner, tmp_path, offline):
    out = runner.invoke(app, ["run", str(offline), TASK, "--record", str(tmp_path / "r.json")])
    assert out.exit_code == 0, out.output
    assert "Paris" in out.stdout
    assert "round" not in out.stdout and "run " not in out.stdout  # progress is on stderr
    record = json.loads((tmp_path / "r.json").read_text())
    assert record["final_answer"].strip() == out.stdout.strip()
    assert record["config"]["digest"].startswith("sha256:")
    assert record["requests_sent"] and record["votes"]


def test_json_output_parses_and_has_the_whole_result(runner, tmp_path, offline):
    out = runner.invoke(app, ["run", str(offline), TASK, "--json", "--no-record"])
    assert out.exit_code == 0, out.output
    data = json.loads(out.stdout)
    assert data["strategy"] == "consensus"
    assert data["rounds"] >= 1 and data["votes"]
    assert set(data["usage_by_agent"]) and data["usage"]["input_tokens"] > 0
    assert data["agreement"] == 1.0  # all three voted for Bob's answer
    assert sum(data["distribution"].values()) == 3 and "support" not in data


def test_task_from_stdin(runner, tmp_path, offline):
    out = runner.invoke(app, ["run", str(offline), "-", "--no-record"], input=TASK + "\n")
    assert out.exit_code == 0 and "Paris" in out.stdout


def test_strategy_flag_overrides_the_config(runner, offline):
    out = runner.invoke(app, ["run", str(offline), TASK, "-s", "parallel", "--json", "--no-record"])
    assert out.exit_code == 0
    assert json.loads(out.stdout)["strategy"] == "parallel"


def test_config_mistake_is_one_line_with_location_and_exit_2(runner, tmp_path):
    team = write_team(
        tmp_path,
        f"""\
        agents:
          - name: a
            backend: {fast_replay("x")}
        orchestrator:
          consensus:
            max_round: 3
        """,
    )
    out = runner.invoke(app, ["run", str(team), TASK, "--no-record"])
    assert out.exit_code == 2
    assert "team.yaml:6" in out.stderr and "max_rounds" in out.stderr
    assert "Traceback" not in out.output and out.stdout == ""


def test_missing_api_key_is_a_usage_error(runner, tmp_path, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    team = write_team(
        tmp_path, "agents:\n  - {name: a, backend: {type: openai, model: gpt-4o-mini}}\n"
    )
    out = runner.invoke(app, ["run", str(team), TASK, "--no-record"])
    assert out.exit_code == 2
    assert "OPENAI_API_KEY" in out.stderr and "Traceback" not in out.output


def test_degraded_run_exits_3(runner, tmp_path):
    team = write_team(
        tmp_path,
        f"""\
        agents:
          - {{name: a, backend: {fast_replay("Paris")}}}
          - {{name: b, backend: {fast_replay("Paris")}}}
          - {{name: c, backend: {{type: "brokenbackend:Broken"}}}}
        orchestrator: {{error_strategy: continue, max_retries: 0}}
        """,
        backend_module=True,
    )
    out = runner.invoke(app, ["run", str(team), TASK, "--no-record"])
    assert out.exit_code == 3, out.output
    assert out.stdout.strip() == "Paris"


def test_failed_run_exits_1_with_the_error(runner, tmp_path):
    team = write_team(
        tmp_path,
        f"""\
        agents:
          - {{name: a, backend: {fast_replay("Paris")}}}
          - {{name: c, backend: {{type: "brokenbackend:Broken"}}}}
        orchestrator: {{error_strategy: fail_fast, max_retries: 0}}
        """,
        backend_module=True,
    )
    out = runner.invoke(app, ["run", str(team), TASK, "--no-record"])
    assert out.exit_code == 1
    assert "server exploded" in out.stderr and "Traceback" not in out.output


def test_config_validate_and_schema(runner):
    ok = runner.invoke(app, ["config", "validate", str(OFFLINE)])
    assert ok.exit_code == 0 and "ok" in ok.stdout
    schema = runner.invoke(app, ["config", "schema"])
    assert schema.exit_code == 0
    assert "agents" in json.loads(schema.stdout)["properties"]


def test_version(runner):
    out = runner.invoke(app, ["--version"])
    assert out.exit_code == 0 and out.stdout.startswith("massgen ")


def _massgen(*args: str, **kw) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "massgen", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        **kw,
    )


def test_subprocess_stdout_is_only_the_answer(offline):
    proc = _massgen("run", str(offline), TASK, "--no-record")
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert out.strip().startswith("Paris") and "\n" not in out.strip()
    assert "round 1" in err  # plain progress lines, since stderr is not a terminal


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupt_exits_130_and_keeps_a_partial_record(tmp_path, sig):
    team = write_team(
        tmp_path,
        """\
        agents:
          - {name: a, backend: {type: replay, default: "slow", latency: 60}}
          - {name: b, backend: {type: replay, default: "slow", latency: 60}}
        """,
    )
    record = tmp_path / "run.json"
    proc = _massgen("run", str(team), TASK, "--record", str(record))
    assert proc.stderr is not None
    first = proc.stderr.readline()  # "run <id>: consensus with a, b" once the run started
    assert first.startswith("run "), first
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and out == ""
    data = json.loads(record.read_text())
    assert data["status"] == "interrupted"


def test_missing_key_names_the_file_and_line_and_loads_no_sdk(tmp_path, monkeypatch):
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    team = write_team(
        tmp_path,
        "backends:\n  claude: {type: anthropic, model: claude-haiku-4-5}\n"
        "agents:\n  - {name: a, backend: claude}\n",
    )
    code = (
        "import sys\nfrom typer.testing import CliRunner\nfrom massgen.cli import app\n"
        f"r = CliRunner().invoke(app, ['run', {str(team)!r}, 'hi'])\n"
        "print(r.exit_code, 'anthropic' in sys.modules)\nprint(r.stderr)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    first, _, rest = out.stdout.partition("\n")
    assert first == "2 False"  # a usage error, found before importing the SDK
    assert "team.yaml:2: `backends.claude.api_key`" in rest and "ANTHROPIC_API_KEY" in rest


async def test_turns_stream_only_when_someone_shows_the_tokens(sim):
    from massgen.config import loads
    from massgen.display.plain import PlainView
    from massgen.orchestrator import Orchestrator

    team = loads(
        "agents:\n"
        "  - name: a\n"
        f"    backend: {{type: openai, model: m, api_key: k, base_url: '{sim.openai_base_url}'}}\n"
        "orchestrator: {strategy: parallel}\n"
    )
    deltas: list[object] = []
    async with Orchestrator.from_config(team) as quiet:
        quiet.subscribers.append(PlainView(stream=io.StringIO()))
        await quiet.arun("one")
    async with Orchestrator.from_config(team) as live:
        live.subscribers.append(deltas.append)  # a plain callable: it may want deltas
        await live.arun("two")
    assert [r.stream for r in sim.requests] == [False, True]
    assert any(type(e).__name__ == "TokenDelta" for e in deltas)


def test_a_key_every_agent_had_refused_is_a_usage_error(runner, tmp_path, sim):
    from tests.sim.sim_types import Fault

    sim.script([Fault(401, message="Incorrect API key provided.")])
    team = write_team(
        tmp_path,
        f"""\
        backends:
          sim: {{type: openai, model: gpt-4o-mini, base_url: "{sim.openai_base_url}",
                 api_key: sk-wrong}}
        agents:
          - {{name: a, backend: sim}}
          - {{name: b, backend: sim}}
        orchestrator: {{strategy: parallel, error_strategy: continue}}
        """,
    )
    out = runner.invoke(app, ["run", str(team), TASK, "--no-record"])
    assert out.exit_code == 2
    assert "every agent failed (a: [openai 401]" in out.stderr and "b: [openai 401]" in out.stderr
    assert "check the API key" in out.stderr
    assert len(sim.requests) == 2  # a refused key is not retried


def test_loading_the_commands_imports_no_view_event_or_team_module() -> None:
    """`massgen --help` (and every command's start) loads the command modules and the plain
    types only: a view, the events, results or a team's modules wait until a command runs."""
    code = (
        "import sys; from massgen.cli import app; "
        "print(' '.join(m for m in sys.modules if m.startswith('massgen')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = set(out.stdout.split())
    assert "massgen.cli" in loaded
    commands = {m for m in loaded if m.startswith("massgen.cli")}
    assert loaded - commands == {"massgen", "massgen.types"}
