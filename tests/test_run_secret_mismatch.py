"""A run whose secret is not its workers' is told so at once, never left waiting.

Before, a worker with ``MASSGEN_SECRET`` set dead-lettered every turn of a run without it
(or with another one), and the run waited out the turn timeout (635 s by default) in
silence. Now the run compares its secret with the proofs the workers publish in the
registry and refuses to start, in one line, exit 2; and a turn a worker set aside anyway
(its worker was restarted with another secret after the run started) fails at once naming
the secret. Real ``massgen worker`` processes on the shared Redis; the runs are processes
too where the CLI is what is tested, followed with deadlines, never by sleeping.
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import time
from pathlib import Path

import pytest

from massgen.cli.common import USAGE
from tests.mas.helpers import SHARED_REDIS
from tests.test_cli_distributed import TASK, TEAM, env, massgen, prefix, start, stop, turn_lines
from tests.test_secret_mismatch import dead_letters

__all__ = ["env", "prefix"]  # fixtures

RIGHT = "the-workers-secret"
WRONG = "the-runs-other-secret"
BOUND = 20.0  # seconds a refused run may take, process start included: not the 635 s


@pytest.fixture
def team(tmp_path: Path, prefix: str) -> Path:
    path = tmp_path / "team.yaml"  # no secret in the file: each process's environment has it
    path.write_text(TEAM + f"redis: {{url: '{SHARED_REDIS}', prefix: '{prefix}'}}\n")
    return path


def timed_run(
    args: list[str], env: dict[str, str]
) -> tuple[subprocess.CompletedProcess[str], float]:
    began = time.monotonic()
    done = subprocess.run(args, capture_output=True, text=True, env=env, timeout=BOUND * 3)
    return done, time.monotonic() - began


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    ("worker_secret", "run_secret", "how"),
    [
        (RIGHT, None, "sign with a secret and this run has none"),
        (RIGHT, WRONG, "sign with another secret than this run"),
        (None, WRONG, "have no secret and this run has one"),
    ],
    ids=["run-without-secret", "run-other-secret", "worker-without-secret"],
)
def test_a_run_whose_secret_is_not_the_workers_is_refused_before_any_turn(
    env: dict[str, str],
    team: Path,
    prefix: str,
    worker_secret: str | None,
    run_secret: str | None,
    how: str,
) -> None:
    def with_secret(secret: str | None) -> dict[str, str]:
        return env if secret is None else {**env, "MASSGEN_SECRET": secret}

    worker = start(massgen("worker", str(team)), with_secret(worker_secret), "hosting ", 3)
    try:
        done, took = timed_run(
            massgen("run", str(team), TASK, "--no-record"), with_secret(run_secret)
        )
    finally:
        code, _, err = stop(worker)
    assert done.returncode == USAGE, (done.stdout, done.stderr)
    assert took < BOUND
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr  # one clear line, no placement, no traceback
    line = lines[0]
    assert line.startswith("error: ") and "MASSGEN_SECRET" in line and "redis.secret" in line
    host = socket.gethostname()
    assert f"the workers of ada, bob, cy ({host} pid {worker.pid}) {how}: " in line
    # nothing was sent: the worker ran no turn and set nothing aside
    assert code == 0, err
    assert turn_lines(err) == []
    assert dead_letters(prefix) == {}


@pytest.mark.timeout(120)
def test_a_run_with_the_workers_secret_still_runs(
    env: dict[str, str], team: Path, prefix: str
) -> None:
    """The check refuses only a mismatch: the same secret on both sides runs as before."""
    worker = start(massgen("worker", str(team)), {**env, "MASSGEN_SECRET": RIGHT}, "hosting ", 3)
    try:
        done, _ = timed_run(
            massgen("run", str(team), TASK, "--no-record"), {**env, "MASSGEN_SECRET": RIGHT}
        )
    finally:
        code, _, err = stop(worker)
    assert done.returncode == 0, done.stderr
    assert "Paris" in done.stdout
    assert code == 0 and len(turn_lines(err)) == 6, err


@pytest.mark.timeout(120)
async def test_a_turn_a_worker_cannot_verify_fails_at_once_naming_the_secret(
    env: dict[str, str], team: Path, prefix: str
) -> None:
    """The worker is restarted with another secret after the run's check passed: it sets
    the turns aside, and the run fails them at its next look at the registry."""
    from massgen.config import load
    from massgen.distributed import SecretRefused, distributed
    from massgen.errors import RunError
    from massgen.orchestrator import Orchestrator

    first = await asyncio.to_thread(
        start, massgen("worker", str(team)), {**env, "MASSGEN_SECRET": RIGHT}, "hosting ", 3
    )
    second: subprocess.Popen[str] | None = None
    try:
        orchestrator = Orchestrator.from_config(load(team))
        async with (
            orchestrator,
            distributed(orchestrator, SHARED_REDIS, prefix=prefix, secret=RIGHT) as placement,
        ):
            assert sorted(placement.remote) == ["ada", "bob", "cy"]
            code, _, err = await asyncio.to_thread(stop, first)
            assert code == 0, err
            second = await asyncio.to_thread(
                start, massgen("worker", str(team)), {**env, "MASSGEN_SECRET": WRONG}, "hosting ", 3
            )
            began = time.monotonic()
            with pytest.raises(RunError) as info:
                await asyncio.wait_for(orchestrator.arun(TASK), BOUND)
            took = time.monotonic() - began
    finally:
        if first.poll() is None:
            stop(first)
        _, _, err2 = stop(second) if second is not None else (0, "", "")
    assert took < BOUND
    error: BaseException | None = info.value
    while error is not None and not isinstance(error, SecretRefused):
        error = error.__cause__
    assert isinstance(error, SecretRefused), repr(info.value)
    assert error.agent in ("ada", "bob", "cy")
    assert "MASSGEN_SECRET" in str(error) and f"{error.agent}'s worker" in str(error)
    assert turn_lines(err2) == []
    assert sum(dead_letters(prefix).values()) >= 1


@pytest.mark.parametrize(
    ("reason", "code"),
    [("refused: unsigned", USAGE), ("refused: stale timestamp", 1)],
    ids=["signature", "other-reason"],
)
def test_a_refused_turn_ends_the_command_in_one_line_with_its_exit_code(
    capsys: pytest.CaptureFixture[str], reason: str, code: int
) -> None:
    """A turn set aside for its signature is a usage error (exit 2); for another reason, a
    failed run (exit 1). As the run raises it: wrapped in the agent's failure."""
    import typer

    from massgen.cli.common import guarded
    from massgen.distributed.connect import refused
    from massgen.errors import AgentFailed

    def body() -> int:
        error = refused("bob", reason)
        raise AgentFailed("bob", error) from error

    with pytest.raises(typer.Exit) as info:
        guarded(body)
    assert info.value.exit_code == code
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: agent 'bob' failed: bob's worker")
    assert ("MASSGEN_SECRET" in err) == (code == USAGE)
