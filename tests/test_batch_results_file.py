"""The batch results file as a user's disk holds it: damaged lines, two writers, a resume
under another config, a retried task, a full disk. Real files and real ``massgen``
processes throughout (R21, R22 of shared/reliability.md)."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from massgen.batch import ResultLog, task_id
from massgen.errors import ConfigError, ResultsLocked
from tests.procs import run_massgen
from tests.sim.sim_types import Hang
from tests.sim.simulator import ProviderSimulator

TEAM = """\
agents:
  - {name: a, backend: {type: replay, default: "answer: {task}"}}
  - {name: b, backend: {type: replay, default: "answer: {task}"}}
orchestrator:
  strategy: parallel
"""

TASKS = [f"Question {i}?" for i in range(6)]


def batch(cwd: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return run_massgen(
        "batch", "tasks.txt", "--config", "team.yaml", "--out", "out.jsonl", "-q", *extra,
        cwd=cwd, unset=("MASSGEN_CONFIG",),
    )  # fmt: skip


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "team.yaml").write_text(TEAM)
    (tmp_path / "tasks.txt").write_text("".join(t + "\n" for t in TASKS))
    return tmp_path


def lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


def rows(path: Path) -> list[dict]:
    data = path.read_bytes()
    assert not data or data.endswith(b"\n"), data[-80:]
    return [json.loads(line) for line in data.splitlines()]


# -- damaged lines -------------------------------------------------------------------------


def flip_a_bit(line: bytes) -> bytes:
    """The line with one bit of its opening brace flipped (``{`` becomes ``z``)."""
    return bytes([line[0] ^ 0x01]) + line[1:]


DAMAGE = {
    "blank": lambda good: b"\n",
    "garbage": lambda good: b"\xff\xfe not json at all }{\n",
    "bit-flipped": flip_a_bit,
    "truncated": lambda good: good[: len(good) // 2] + b"\n",
    "NUL": lambda good: b"\x00" * 64 + b"\n",
}


@pytest.mark.parametrize("kind", list(DAMAGE))
def test_a_damaged_line_in_the_middle_loses_no_row_after_it(folder: Path, kind: str) -> None:
    first = batch(folder)
    assert first.returncode == 0, first.stderr
    out = folder / "out.jsonl"
    good = lines(out)
    assert len(good) == 6
    # The damage replaces the third line (a bit-flipped or truncated copy of it stands in
    # its place, as a bad sector or a lost write would leave it).
    bad = DAMAGE[kind](good[2])
    kept = good[:2] + good[3:]
    out.write_bytes(b"".join(good[:2]) + bad + b"".join(good[3:]))

    second = batch(folder)
    assert second.returncode == 0, second.stderr
    assert "Traceback" not in second.stderr
    final = lines(out)
    assert all(line in final for line in kept), "a finished row was lost"
    assert sorted(json.loads(x)["id"] for x in final) == sorted(task_id(t) for t in TASKS)
    side = list(folder.glob("out.jsonl.bad-*"))
    assert len(side) == 1 and side[0].read_bytes() == bad
    assert str(side[0].name) in second.stderr and "set aside" in second.stderr
    if kind in ("bit-flipped", "truncated"):  # the damaged row's task ran again, once
        rerun = [json.loads(x) for x in final if x not in kept]
        assert [r["task"] for r in rerun] == [json.loads(good[2])["task"]]


def test_a_parseable_last_line_without_its_newline_is_kept(tmp_path: Path) -> None:
    out = tmp_path / "r.jsonl"
    out.write_bytes(b'{"id": "a", "status": "done"}\n{"id": "b", "status": "done"}')
    with ResultLog(out) as log:
        assert set(log.done) == {"a", "b"} and log.set_aside == 0
        log.write({"id": "c", "status": "done"})
    assert [r["id"] for r in rows(out)] == ["a", "b", "c"]


# -- one row per task ----------------------------------------------------------------------


def test_superseded_rows_left_by_a_crash_are_compacted_to_the_last_one(tmp_path: Path) -> None:
    out = tmp_path / "r.jsonl"
    out.write_text(
        '{"id": "a", "status": "failed", "error": "x"}\n'
        '{"id": "b", "status": "done"}\n'
        '{"id": "a", "status": "done"}\n'
    )
    with ResultLog(out) as log:
        assert log.done["a"]["status"] == "done"
    assert rows(out) == [{"id": "a", "status": "done"}, {"id": "b", "status": "done"}]


def test_a_failed_task_that_succeeds_on_resume_leaves_one_row(folder: Path) -> None:
    # A first run's failed row, as a batch writes it when a task fails.
    out = folder / "out.jsonl"
    failed = {"id": task_id(TASKS[0]), "task": TASKS[0], "status": "failed", "error": "boom"}
    out.write_text(json.dumps(failed) + "\n")
    done = batch(folder)
    assert done.returncode == 0, done.stderr
    final = rows(out)
    assert Counter(r["id"] for r in final) == Counter(task_id(t) for t in TASKS)
    assert {r["status"] for r in final} == {"done"}


# -- two writers ---------------------------------------------------------------------------


def test_a_second_log_on_the_same_file_is_refused_until_the_first_closes(tmp_path: Path) -> None:
    out = tmp_path / "r.jsonl"
    first = ResultLog(out)
    try:
        # the lock is taken by another process: flock locks are per open file, so this
        # is what a second `massgen batch` meets
        code = (
            "import sys\nfrom massgen.batch import ResultLog\n"
            "from massgen.errors import ResultsLocked\n"
            "try:\n    ResultLog(sys.argv[1])\nexcept ResultsLocked:\n    sys.exit(7)\n"
        )
        other = subprocess.run([sys.executable, "-c", code, str(out)], timeout=30, check=False)
        assert other.returncode == 7
        with pytest.raises(ResultsLocked):
            ResultLog(out)  # another open file description in this process too
    finally:
        first.close()
    ResultLog(out).close()  # free again once the first is closed


def test_two_batches_on_one_results_file_the_second_refuses(
    tmp_path: Path, sim: ProviderSimulator
) -> None:
    """R22: while one batch runs (one of its tasks held by the provider), a second on the
    same file exits 2 with one clear line and sends nothing; after the first is stopped, a
    resume finishes: 0 duplicate lines, each finished task sent once per agent."""
    sim.script(Hang(), match="HOLD")
    tasks = ["HOLD: a question the provider sits on"]
    tasks += [f"Question {i}: what is {i} plus {i}?" for i in range(20)]
    (tmp_path / "tasks.txt").write_text("".join(t + "\n" for t in tasks))
    (tmp_path / "team.yaml").write_text(
        "backends:\n"
        f'  sim: {{type: openai, model: gpt-4o-mini, base_url: "{sim.openai_base_url}", '
        "api_key: x}\n"
        "agents:\n  - {name: ada, backend: sim}\n  - {name: bo, backend: sim}\n"
        "orchestrator:\n  strategy: parallel\n  max_retries: 0\n"
    )
    argv = [sys.executable, "-m", "massgen", "batch", "tasks.txt", "-c", "team.yaml"]
    argv += ["-o", "out.jsonl", "-j", "2", "-q"]
    first = subprocess.Popen(argv, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        sim.wait_for_requests(1, timeout=30)  # it holds the lock before its first request
        second = batch(tmp_path)
        assert first.poll() is None, "the first batch ended: the test proves nothing"
        first.send_signal(signal.SIGTERM)
        _, err = first.communicate(timeout=60)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    assert second.returncode == 2, second.stderr
    assert "Traceback" not in second.stderr
    assert second.stderr.startswith("error: ") and "another massgen batch" in second.stderr
    assert first.returncode == 130, err.decode()
    sim.clear_rules()
    resumed = batch(tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    final = rows(tmp_path / "out.jsonl")
    assert len(final) == 21 and len({r["id"] for r in final}) == 21
    sent_for = Counter(r.last_user_text for r in sim.requests)
    assert all(sent_for[t] == 2 for t in tasks[1:]), sent_for  # no task ran twice
    assert 2 <= sent_for[tasks[0]] <= 4  # held, then resumed


# -- a resume under another run's settings ---------------------------------------------------


def test_a_resume_with_another_strategy_or_config_is_refused(folder: Path) -> None:
    assert batch(folder).returncode == 0
    out = folder / "out.jsonl"
    before = out.read_bytes()
    other = batch(folder, "--strategy", "sequential")
    assert other.returncode == 2, other.stderr
    assert "strategy" in other.stderr and "--no-resume" in other.stderr
    assert "Traceback" not in other.stderr
    assert out.read_bytes() == before
    (folder / "team.yaml").write_text(TEAM.replace("answer:", "reply:"))
    changed = batch(folder)
    assert changed.returncode == 2 and "config" in changed.stderr
    assert out.read_bytes() == before
    fresh = batch(folder, "--no-resume")
    assert fresh.returncode == 0, fresh.stderr
    assert (folder / "out.jsonl.1").read_bytes() == before
    assert all(r["answers"]["a"].startswith("reply:") for r in rows(out))
    assert batch(folder).returncode == 0  # and the new settings resume


def test_an_api_log_without_a_fingerprint_resumes_any_file(tmp_path: Path) -> None:
    out = tmp_path / "r.jsonl"
    with ResultLog(out, fingerprint={"config": "sha256:1", "strategy": "parallel"}) as log:
        log.write({"id": "a", "status": "done"})
    with ResultLog(out) as log:
        assert set(log.done) == {"a"}
    with pytest.raises(ConfigError, match="different run"):
        ResultLog(out, fingerprint={"config": "sha256:2", "strategy": "parallel"})


# -- a full disk ---------------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path: Path):
    """A 96 KiB tmpfs (needs the right to mount; skipped without it), unmounted after."""
    if shutil.which("mount") is None:
        pytest.skip("no mount command")
    disk = tmp_path / "disk"
    disk.mkdir()
    made = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=96k", "tmpfs", str(disk)],
        capture_output=True,
        check=False,
    )
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {made.stderr.decode().strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def test_a_full_disk_ends_the_batch_with_one_line_and_exit_1_and_loses_nothing(
    folder: Path, small_disk: Path
) -> None:
    # Rows of about 4 KiB each: the disk holds a couple of dozen of the 80.
    tasks = [(f"Question {i}: " + "why? " * 200).strip() for i in range(80)]
    (folder / "tasks.txt").write_text("".join(t + "\n" for t in tasks))
    out = small_disk / "out.jsonl"
    argv = ("batch", "tasks.txt", "-c", "team.yaml", "-o", str(out), "-q", "-j", "4")
    full = run_massgen(*argv, cwd=folder)
    assert full.returncode == 1, full.stderr
    assert "Traceback" not in full.stderr and "ExceptionGroup" not in full.stderr
    errors = [line for line in full.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and str(out) in errors[0], full.stderr
    written = rows(out)  # every line whole; none torn
    assert 0 < len(written) < 80
    assert {r["status"] for r in written} == {"done"}

    subprocess.run(["mount", "-o", "remount,size=2m", str(small_disk)], check=True)
    resumed = run_massgen(*argv, cwd=folder)
    assert resumed.returncode == 0, resumed.stderr
    final = rows(out)
    assert Counter(r["id"] for r in final) == Counter(task_id(t) for t in tasks)
    assert all(r in final for r in written)  # the rows written before were kept as they were
