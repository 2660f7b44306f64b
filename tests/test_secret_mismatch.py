"""Issue 11: a worker started with another ``redis.secret`` than its replicas'.

Before, it dead-lettered every turn it fetched, correctly signed by the run, because it
could not verify it (9 turns of 20 lost, each after the run waited 95 s). Now it leaves
such a turn to the replica that can verify it, takes no new work for a while, and the
mismatch is reported at its start and by ``massgen agents list``. Real worker processes on
the shared Redis; followed by their output lines, never by sleeping.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from tests.mas.helpers import SHARED_REDIS
from tests.test_cli_distributed import (
    TASK,
    TEAM,
    env,
    massgen,
    prefix,
    run,
    start,
    stop,
    turn_lines,
)

__all__ = ["env", "prefix"]  # fixtures

RIGHT = "the-team-secret"
WRONG = "a-stale-secret"
RUNS = 4  # three answers and three votes each: 24 turns
LEASE = "4"  # seconds; a handed-back turn reaches the right worker within lease / 2


def team(tmp_path: Path, prefix: str, secret: str, name: str) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(
        TEAM + f"redis: {{url: '{SHARED_REDIS}', prefix: '{prefix}', secret: '{secret}'}}\n"
    )
    return path


def dead_letters(prefix: str) -> dict[str, int]:
    import redis

    client = redis.Redis.from_url(SHARED_REDIS)
    try:
        return {k.decode(): int(client.xlen(k)) for k in client.scan_iter(match=f"{prefix}dlq:*")}
    finally:
        client.close()


@pytest.mark.timeout(180)
def test_a_worker_with_another_secret_loses_no_turn_and_is_reported(
    env: dict[str, str], prefix: str, tmp_path: Path
) -> None:
    right_cfg = team(tmp_path, prefix, RIGHT, "right")
    wrong_cfg = team(tmp_path, prefix, WRONG, "wrong")
    right = start(massgen("worker", str(right_cfg), "--lease", LEASE), env, "hosting ", 3)
    wrong: subprocess.Popen[str] | None = None
    try:
        wrong = start(massgen("worker", str(wrong_cfg), "--lease", LEASE), env, "hosting ", 3)

        # agents list, with the team's secret: every agent has one instance that does not match
        listed = run(massgen("agents", "list", "--config", str(right_cfg), "--json"), env)
        assert listed.returncode == 0, listed.stderr
        rows = {r["name"]: r for r in json.loads(listed.stdout)}
        assert sorted(rows) == ["ada", "bob", "cy"]
        for row in rows.values():
            assert row["replicas"] == 2
            assert row["secret"] == "MISMATCH 1/2"
            assert len(row["secret_mismatch"]) == 1
            assert sorted(i["secret"] for i in row["instances"]) == ["ok", "other secret"]
            assert f"agent {row['name']}: " in listed.stderr
        assert listed.stderr.count("warning: agent ") == 3
        # the table says it too
        table = run(massgen("agents", "list", "--config", str(right_cfg)), env)
        assert table.returncode == 0, table.stderr
        assert table.stdout.count("MISMATCH 1/2") == 3
        # listed with the stale secret, the team's instances are the ones that do not match
        stale = run(massgen("agents", "list", "--config", str(wrong_cfg), "--json"), env)
        assert all(r["secret"] == "MISMATCH 1/2" for r in json.loads(stale.stdout))

        for _ in range(RUNS):
            done = run(massgen("run", str(right_cfg), TASK, "--json", "--no-record"), env)
            assert done.returncode == 0, done.stderr
            data = json.loads(done.stdout)
            assert data["status"] == "done", data
            assert "Paris" in data["final_answer"]
    finally:
        code_r, _, err_r = stop(right)
        code_w, _, err_w = stop(wrong) if wrong is not None else (0, "", "")
    assert code_r == 0 and code_w == 0, (err_r, err_w)
    assert dead_letters(prefix) == {}
    # every turn was answered by the worker with the team's secret, none by the other
    assert len(turn_lines(err_r)) == RUNS * 6, err_r
    assert turn_lines(err_w) == []
    # the stale worker said at start that its secret is not its peers'
    starts = [line for line in err_w.splitlines() if re.search(r"agent \w+: 3 live agent", line)]
    assert len(starts) == 3, err_w
    assert all(s.startswith("ERROR") and "sign with another secret" in s for s in starts), err_w
    # and it did take turns, which it handed back instead of dead-lettering them
    handed = [line for line in err_w.splitlines() if "cannot verify message" in line]
    assert handed and all(line.startswith("ERROR") for line in handed), err_w
