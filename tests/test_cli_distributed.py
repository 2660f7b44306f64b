"""Distributed mode as a user meets it: `massgen worker`, `run --redis`, `service` and
`agents list` in separate OS processes on real Redis, and R16 through the CLI.

Processes are followed by their output lines (a worker prints "hosting ..." once it is
registered), never by sleeping.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from massgen.cli import app
from tests.mas.helpers import SHARED_REDIS, RedisServer, free_port
from tests.procs import start_ready

TASK = "What is the capital of France?"
PASSWORD = "s3cret-Pa55word"

TEAM = """\
name: offline-demo
backends:
  sim:
    type: replay
    model: replay
    rules:
      - match: '<answer label='
        reply: '{"vote": "{label_containing:Paris is the capital}", "reason": "correct"}'
      - match: 'You are Ada.*capital of France'
        reply: Paris.
      - match: 'You are Bob.*capital of France'
        reply: Paris is the capital of France, its largest city and seat of government.
      - match: 'You are Cy.*capital of France'
        reply: Lyon, I believe, though I am not certain.
agents:
  - {name: ada, backend: sim, role: "You are Ada, a geographer."}
  - {name: bob, backend: sim, role: "You are Bob, a historian."}
  - {name: cy, backend: sim, role: "You are Cy, a cautious student."}
orchestrator:
  strategy: consensus
  consensus: {mode: debate, answer: prose, threshold: 0.5, max_rounds: 1}
"""


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The environment of every command: no Redis or secret inherited from the caller."""
    for name in ("MASSGEN_REDIS_URL", "MASSGEN_SECRET"):
        monkeypatch.delenv(name, raising=False)
    return dict(os.environ)


@pytest.fixture
def prefix() -> Iterator[str]:
    p = f"test:cli:{uuid.uuid4().hex[:10]}:"
    yield p
    import redis

    client = redis.Redis.from_url(SHARED_REDIS)
    try:
        keys = list(client.scan_iter(match=f"{p}*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


@pytest.fixture
def local_team(tmp_path: Path) -> Path:
    path = tmp_path / "local.yaml"
    path.write_text(TEAM)
    return path


@pytest.fixture
def bus_team(tmp_path: Path, prefix: str) -> Path:
    path = tmp_path / "team.yaml"
    path.write_text(TEAM + f"redis: {{url: '{SHARED_REDIS}', prefix: '{prefix}'}}\n")
    return path


def massgen(*args: str) -> list[str]:
    return [sys.executable, "-m", "massgen", *args]


def start(args: list[str], env: dict[str, str], ready: str, count: int) -> subprocess.Popen[str]:
    """Start a command; return once it printed ``count`` stdout lines starting ``ready``."""
    return start_ready(args, ready=ready, count=count, env=env)


def stop(proc: subprocess.Popen[str], sig: int = signal.SIGTERM) -> tuple[int, str, str]:
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=20)
    return proc.returncode, out, err


def run(args: list[str], env: dict[str, str], cwd: Path | None = None) -> Any:
    return subprocess.run(args, capture_output=True, text=True, env=env, cwd=cwd, timeout=30)


def outcome(data: dict[str, Any]) -> dict[str, Any]:
    return {
        "final": data["final_answer"],
        "winner": data["winner"],
        "status": data["status"],
        "votes": data["votes"],
        "answers": sorted((a["agent"], a["phase"], a["round"], a["text"]) for a in data["answers"]),
    }


def turn_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if " done in " in line]


def test_a_run_through_a_worker_process_equals_a_local_run(
    env: dict[str, str], local_team: Path, bus_team: Path, prefix: str
) -> None:
    local = CliRunner().invoke(app, ["run", str(local_team), TASK, "--json", "--no-record"])
    assert local.exit_code == 0, local.output

    worker = start(massgen("worker", str(bus_team)), env, "hosting ", 3)
    service = start(
        massgen("service", "--redis", SHARED_REDIS, "--prefix", prefix),
        env,
        "service watching",
        1,
    )
    try:
        remote = run(massgen("run", str(bus_team), TASK, "--json", "--no-record"), env)
        assert remote.returncode == 0, remote.stderr
        assert "ada, bob, cy on workers at" in remote.stderr
        data = json.loads(remote.stdout)
        assert outcome(data) == outcome(json.loads(local.stdout))
        assert data["winner"] == "bob" and data["final_answer"].startswith("Paris is")

        listed = CliRunner().invoke(app, ["agents", "list", "--config", str(bus_team), "--json"])
        assert listed.exit_code == 0, listed.output
        rows = {r["name"]: r for r in json.loads(listed.stdout)}
        assert set(rows) >= {"ada", "bob", "cy"}
        for name in ("ada", "bob", "cy"):
            row = rows[name]
            assert row["status"] == "running" and row["replicas"] == 1
            assert (row["in_flight"], row["processed"], row["failed"]) == (0, 2, 0)
            assert "llm" in row["capabilities"] and row["backend"] == "replay"
            assert row["hosts"] == [f"{os.uname().nodename}/{worker.pid}"]
            assert 0 <= row["heartbeat_age"] < 15 and row["dead_letters"] == 0

        table = CliRunner().invoke(app, ["agents", "list", "--config", str(bus_team)])
        assert table.exit_code == 0 and "ada" in table.stdout and "processed" in table.stdout
    finally:
        code, out, err = stop(worker)
        s_code, _, s_err = stop(service)
    assert code == 0, err
    assert "Traceback" not in err and "worker stopped (SIGTERM)" in err
    assert len(turn_lines(err)) == 6  # one log line per handled turn
    assert s_code == 0 and "Traceback" not in s_err
    assert "agent ada joined" in s_err and "service stopped (SIGTERM)" in s_err

    # stopped workers leave the registry at once
    after = CliRunner().invoke(
        app, ["agents", "list", "--redis", SHARED_REDIS, "--prefix", prefix, "--json"]
    )
    assert after.exit_code == 0 and json.loads(after.stdout) == []


def test_only_the_hosted_agent_runs_on_the_worker(
    env: dict[str, str], local_team: Path, bus_team: Path
) -> None:
    worker = start(massgen("worker", str(bus_team), "--agent", "ada"), env, "hosting ", 1)
    try:
        remote = run(massgen("run", str(bus_team), TASK, "--json", "--no-record"), env)
    finally:
        code, _, err = stop(worker, signal.SIGINT)
    assert remote.returncode == 0, remote.stderr
    assert "ada on workers at" in remote.stderr and "local: bob, cy" in remote.stderr
    data = json.loads(remote.stdout)
    handled = turn_lines(err)
    assert len(handled) == sum(a["agent"] == "ada" for a in data["answers"]) == 2
    assert all(line.startswith("ada: ") for line in handled)
    assert code == 130 and "Traceback" not in err and "worker stopped (SIGINT)" in err


def test_a_local_run_never_imports_redis(env: dict[str, str], local_team: Path) -> None:
    probe = (
        "import sys\nfrom massgen.cli import app\n"
        f"try:\n    app(['run', {str(local_team)!r}, {TASK!r}, '-q', '--no-record'])\n"
        "except SystemExit as e:\n    code = e.code\n"
        "print(code, 'redis' in sys.modules, 'massgen.mas' in sys.modules)\n"
    )
    out = run([sys.executable, "-c", probe], env)
    assert out.stdout.splitlines()[-1] == "0 False False", out.stderr


# -- mistakes: exit 2, one clear line ---------------------------------------------------


def test_a_worker_without_redis_is_a_usage_error(env: dict[str, str], local_team: Path) -> None:
    out = CliRunner().invoke(app, ["worker", str(local_team)])
    assert out.exit_code == 2
    assert "a worker needs Redis" in out.stderr and "MASSGEN_REDIS_URL" in out.stderr


def test_hosting_an_unknown_agent_suggests_one(env: dict[str, str], bus_team: Path) -> None:
    out = CliRunner().invoke(app, ["worker", str(bus_team), "--agent", "bobb"])
    assert out.exit_code == 2
    assert "no agent named 'bobb'" in out.stderr and "did you mean `bob`?" in out.stderr


@pytest.mark.parametrize("lease", ["0", "-5", "nan", "inf"])
def test_a_lease_that_is_not_a_positive_number_of_seconds_is_a_usage_error(
    env: dict[str, str], bus_team: Path, lease: str
) -> None:
    out = CliRunner().invoke(app, ["worker", str(bus_team), "--lease", lease])
    assert out.exit_code == 2
    assert "--lease" in out.stderr and "positive number of seconds" in out.stderr
    assert "Traceback" not in out.output


def test_a_worker_s_default_lease_is_the_bus_s() -> None:
    import inspect

    from massgen.cli.bus import worker
    from massgen.mas.transport import BusSettings

    assert inspect.signature(worker).parameters["lease"].default == BusSettings().lease


def test_agents_list_without_redis_shows_the_configured_team(
    env: dict[str, str], local_team: Path
) -> None:
    out = CliRunner().invoke(app, ["agents", "list", "--config", str(local_team), "--json"])
    assert out.exit_code == 0, out.output
    rows = json.loads(out.stdout)
    assert [r["name"] for r in rows] == ["ada", "bob", "cy"]
    assert rows[0] == {
        "name": "ada",
        "backend": "replay",
        "model": "replay",
        "role": "You are Ada, a geographer.",
        "fallback": None,
    }
    table = CliRunner().invoke(app, ["agents", "list", "--config", str(local_team)])
    assert table.exit_code == 0 and "not distributed" in table.stdout and "cy" in table.stdout


def test_agents_list_with_nothing_configured_is_a_usage_error(env: dict[str, str]) -> None:
    out = CliRunner().invoke(app, ["agents", "list"])
    assert out.exit_code == 2
    assert "nothing to list" in out.stderr and "--config" in out.stderr


# -- R16: a Redis that wants a password ---------------------------------------------------


@pytest.fixture(scope="module")
def locked_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis"), password=PASSWORD)
    server.start()
    yield server
    server.stop()


def _commands(config: Path) -> dict[str, Callable[[str], list[str]]]:
    return {
        "run": lambda url: ["run", str(config), TASK, "--redis", url],
        "worker": lambda url: ["worker", str(config), "--redis", url],
        "agents list": lambda url: ["agents", "list", "--redis", url],
        "service": lambda url: ["service", "--redis", url],
    }


@pytest.mark.parametrize("password", [None, "wrong-password"], ids=["no-password", "wrong"])
@pytest.mark.parametrize("command", ["run", "worker", "agents list", "service"])
def test_r16_bad_redis_credentials_exit_2_and_write_nothing(
    env: dict[str, str],
    locked_redis: RedisServer,
    local_team: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    command: str,
    password: str | None,
) -> None:
    monkeypatch.chdir(tmp_path)  # a run record would land in ./.massgen/runs
    auth = f":{password}@" if password else ""
    url = f"redis://{auth}127.0.0.1:{locked_redis.port}/0"
    out = CliRunner().invoke(app, _commands(local_team)[command](url))
    assert out.exit_code == 2, out.output
    lines = out.stderr.splitlines()
    assert lines[0].startswith("error: ") and "Redis" in lines[0]
    assert ("requires a password" if password is None else "refused the credentials") in lines[0]
    assert all(line.startswith("  hint:") for line in lines[1:])
    assert out.stdout == "" and "Traceback" not in out.output
    assert PASSWORD not in out.output and (password is None or password not in out.output)
    assert not (tmp_path / ".massgen").exists()

    import redis

    client = redis.Redis(port=locked_redis.port, password=PASSWORD)
    try:
        assert client.dbsize() == 0  # nothing written
    finally:
        client.close()


def test_an_unreachable_redis_is_one_line_and_exit_2(env: dict[str, str], local_team: Path) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    out = CliRunner().invoke(app, ["run", str(local_team), TASK, "--redis", url, "--no-record"])
    assert out.exit_code == 2
    assert out.stderr.startswith("error: cannot reach Redis at redis://127.0.0.1:")
