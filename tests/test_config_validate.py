"""`massgen config validate` checks what `massgen run` checks before its first request, so
"ok" means the run will start: the team is built (backends, models, keys, tools) and a
configured Redis is reached. Mistakes are one located error, exit 2, no traceback."""

from __future__ import annotations

import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.procs import KEY_VARS, run_massgen

ROOT = Path(__file__).resolve().parent.parent
REDIS_URL = "redis://127.0.0.1:6379/0"


def _write(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "team.yaml"
    path.write_text(textwrap.dedent(body))
    return path


def _validate(path: Path, **kw: object) -> subprocess.CompletedProcess[str]:
    return run_massgen("config", "validate", str(path), **kw)  # type: ignore[arg-type]


def _usage_error(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert done.stdout == "" and "Traceback" not in done.stderr
    return done.stderr


def test_every_missing_key_is_named_in_one_error() -> None:
    err = _usage_error(_validate(ROOT / "configs/consensus.yaml", unset=KEY_VARS))
    assert err.count("error:") == 1
    rows = [ln for ln in err.splitlines() if "consensus.yaml:" in ln and "`backends." in ln]
    assert len(rows) == 3, err
    for var, agents in (
        ("OPENAI_API_KEY", ["architect"]),
        ("ANTHROPIC_API_KEY", ["operator", "reviewer"]),
        ("GEMINI_API_KEY", ["founder"]),
    ):
        (row,) = [r for r in rows if var in r]
        assert all(a in row for a in agents), row


def test_with_the_keys_set_the_same_config_is_ok() -> None:
    env = {"OPENAI_API_KEY": "sk-dummy", "ANTHROPIC_API_KEY": "dummy", "GEMINI_API_KEY": "dummy"}
    done = _validate(ROOT / "configs/consensus.yaml", env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"{ROOT / 'configs/consensus.yaml'}: ok — 4 agents")
    assert "  founder: gemini gemini-2.5-flash\n" in done.stdout


def test_an_agent_without_a_model_is_found(tmp_path: Path) -> None:
    team = _write(
        tmp_path,
        """\
        agents:
          - {name: ada, backend: replay}
          - name: bob
            backend: anthropic
        """,
    )
    err = _usage_error(_validate(team, env={"ANTHROPIC_API_KEY": "dummy"}))
    assert "team.yaml:3: `agents[1].model`" in err and "model: claude-" in err


def test_the_team_is_built_so_tools_a_backend_cannot_call_are_found(tmp_path: Path) -> None:
    team = _write(
        tmp_path,
        """\
        agents:
          - name: ada
            backend: {type: replay}
            tools: [calculator]
        """,
    )
    err = _usage_error(_validate(team))
    assert "team.yaml:4: `agents[0].tools`" in err and "cannot call tools" in err


def test_a_custom_backend_that_does_not_import_is_found(tmp_path: Path) -> None:
    team = _write(tmp_path, "agents:\n  - {name: ada, backend: {type: 'nosuchmodule:Thing'}}\n")
    err = _usage_error(_validate(team))
    assert "team.yaml:2: `agents[0].backend" in err


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_redis_that_does_not_answer_is_found(tmp_path: Path) -> None:
    team = _write(
        tmp_path,
        f"""\
        agents:
          - {{name: ada, backend: replay}}
        redis:
          url: redis://127.0.0.1:{_closed_port()}/0
        """,
    )
    done = _validate(team, unset=("MASSGEN_REDIS_URL",))
    assert done.returncode == 2, done.stderr  # Redis down: one line, exit 2
    assert done.stderr.startswith("error: ") and done.stdout == ""
    assert "team.yaml:4 `redis.url`" in done.stderr and "Redis" in done.stderr


def test_a_redis_that_answers_is_reported(tmp_path: Path) -> None:
    team = _write(
        tmp_path,
        f"""\
        agents:
          - {{name: ada, backend: replay}}
        redis: {{url: "{REDIS_URL}", prefix: "validate-test:"}}
        """,
    )
    done = _validate(team)
    assert done.returncode == 0, done.stderr
    assert "  redis: redis://127.0.0.1:6379/0 answers (prefix validate-test:)" in done.stdout


def test_the_redis_of_the_environment_is_reached_too(tmp_path: Path) -> None:
    team = _write(tmp_path, "agents:\n  - {name: ada, backend: replay}\n")
    url = f"redis://127.0.0.1:{_closed_port()}/0"
    done = _validate(team, env={"MASSGEN_REDIS_URL": url})
    assert done.returncode == 2, done.stderr
    assert url in done.stderr and "`MASSGEN_REDIS_URL`" in done.stderr


@pytest.mark.parametrize(
    ("config", "code"),
    [
        ("configs/offline.yaml", 0),
        ("configs/local.yaml", 0),  # OpenAI-compatible: massgen's own client, no SDK
        ("configs/quickstart.yaml", 2),  # keys missing: found before any SDK is imported
    ],
)
def test_validate_loads_no_sdk_a_backend_does_not_need(
    config: str, code: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    for var in KEY_VARS:
        monkeypatch.delenv(var, raising=False)
    script = (
        "import sys\nfrom typer.testing import CliRunner\nfrom massgen.cli import app\n"
        f"r = CliRunner().invoke(app, ['config', 'validate', {str(ROOT / config)!r}])\n"
        "heavy = ('openai', 'anthropic', 'google.genai', 'redis', 'rich', 'httpx')\n"
        "print(r.exit_code, [m for m in heavy if m in sys.modules])"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.strip() == f"{code} []", out.stdout + out.stderr


BROKEN = {
    "no keys": "agents:\n  - {name: a, backend: openai, model: m}\n"
    "  - {name: b, backend: {type: anthropic, model: m}}\n",
    "no model": "agents:\n  - {name: a, backend: {type: openai, api_key: k}}\n",
    "tools on replay": "agents:\n  - {name: a, backend: replay, tools: [calculator]}\n",
    "custom class": "agents:\n  - {name: a, backend: 'nosuchmodule:Thing'}\n",
    "missing root": "agents:\n  - {name: a, backend: {type: openai, model: m, api_key: k},"
    " tools: [file_reader]}\ntools:\n  file_reader: {root: ./nowhere}\n",
}


@pytest.mark.parametrize("body", BROKEN.values(), ids=list(BROKEN))
def test_validate_fails_exactly_as_the_run_would(tmp_path: Path, body: str) -> None:
    (tmp_path / "team.yaml").write_text(body)
    run = run_massgen("run", "team.yaml", "task", "--no-record", cwd=tmp_path, unset=KEY_VARS)
    checked = run_massgen("config", "validate", "team.yaml", cwd=tmp_path, unset=KEY_VARS)
    assert run.returncode == 2, run.stderr
    assert _usage_error(checked) == run.stderr


def test_an_unreachable_redis_fails_the_run_and_validate_alike(tmp_path: Path) -> None:
    url = f"redis://127.0.0.1:{_closed_port()}/0"
    (tmp_path / "team.yaml").write_text(
        f"agents:\n  - {{name: a, backend: replay}}\nredis: {{url: '{url}'}}\n"
    )
    run = run_massgen("run", "team.yaml", "task", "--no-record", cwd=tmp_path)
    checked = run_massgen("config", "validate", "team.yaml", cwd=tmp_path)
    assert run.returncode == checked.returncode == 2, run.stderr  # down: one line, exit 2
    assert run.stderr.startswith("error: ") and "Traceback" not in run.stderr
    assert checked.stderr == run.stderr and checked.stdout == ""


def test_validate_shows_every_mistake_of_the_file_in_file_order(tmp_path: Path) -> None:
    """A run names the first (and how many more); validate names each, so one pass fixes all."""
    (tmp_path / "team.yaml").write_text(
        "agents:\n"
        "  - {name: a, backend: {type: openai, model: m, api_key: x}, temperture: 1}\n"
        "  - {name: b, backend: {type: nosuch, model: m}}\n"
        "orchestrator: {strategy: consensus, max_retries: -1}\n"
    )
    done = run_massgen("config", "validate", "team.yaml", cwd=tmp_path)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    errors = [ln for ln in done.stderr.splitlines() if ln.startswith("error: ")]
    assert [e.split(":")[2] for e in errors] == ["2", "3", "4"]  # error: team.yaml:LINE: ...
    assert "(and 2 more errors)" in errors[0]
    ran = run_massgen("run", "team.yaml", "hi", cwd=tmp_path)
    assert ran.returncode == 2 and ran.stderr.count("error: ") == 1  # the run: the first
