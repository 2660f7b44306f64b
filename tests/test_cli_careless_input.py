"""Careless input to `massgen batch` and `massgen run --record`: one clear line, exit 2,
nothing written, no traceback. Real ``massgen`` processes on real files."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.procs import run_massgen

TEAM = """\
agents:
  - {name: a, backend: {type: replay, default: "answer: {task}"}}
orchestrator: {strategy: parallel}
"""


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "team.yaml").write_text(TEAM)
    (tmp_path / "tasks.txt").write_text("One?\nTwo?\n")
    return tmp_path


def massgen(cwd: Path, *args: str):
    return run_massgen(*args, cwd=cwd, unset=("MASSGEN_CONFIG",))


def files(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` and its bytes: what a command must leave unchanged."""
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


def refused(result, *words: str) -> None:
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("error: "), result.stderr
    for word in words:
        assert word in result.stderr, result.stderr


def test_batch_out_a_folder(folder: Path) -> None:
    (folder / "results").mkdir()
    before = files(folder)
    refused(massgen(folder, "batch", "tasks.txt", "-c", "team.yaml", "--out", "results"), "--out")
    assert files(folder) == before and list((folder / "results").iterdir()) == []


@pytest.mark.parametrize("which", ["tasks.txt", "team.yaml"])
def test_batch_out_one_of_its_inputs(folder: Path, which: str) -> None:
    before = files(folder)
    refused(massgen(folder, "batch", "tasks.txt", "-c", "team.yaml", "-o", which), "--out")
    assert files(folder) == before


@pytest.mark.parametrize("role", ["tasks", "config"])
def test_an_endless_file_as_tasks_or_config(folder: Path, role: str) -> None:
    args = ["batch", "tasks.txt", "-c", "team.yaml", "-o", "out.jsonl"]
    args[1 if role == "tasks" else 3] = "/dev/zero"
    before = files(folder)
    refused(massgen(folder, *args), "/dev/zero")
    assert files(folder) == before


def test_a_huge_config_is_refused_before_it_is_read(folder: Path) -> None:
    with (folder / "big.yaml").open("wb") as f:
        f.truncate(64 * 1024 * 1024)  # sparse: 64 MiB of nothing
    before = files(folder)
    refused(massgen(folder, "batch", "tasks.txt", "-c", "big.yaml", "-o", "out.jsonl"), "big.yaml")
    assert files(folder) == before


def test_no_resume_with_a_config_error_leaves_the_old_results_where_they_are(
    folder: Path,
) -> None:
    first = massgen(folder, "batch", "tasks.txt", "-c", "team.yaml", "-o", "out.jsonl", "-q")
    assert first.returncode == 0, first.stderr
    before = files(folder)
    bad = massgen(
        folder, "batch", "tasks.txt", "-c", "team.yaml", "-o", "out.jsonl", "--no-resume",
        "--strategy", "no-such-strategy",
    )  # fmt: skip
    assert bad.returncode == 2 and "--strategy" in bad.stderr  # the option's usage error
    assert files(folder) == before  # in particular, no out.jsonl.1


def test_lines_that_are_not_tasks_are_counted_and_reported(folder: Path) -> None:
    (folder / "tasks.txt").write_text("# a comment\nOne?\n\n   \nTwo?\nOne?\n# another\n")
    done = massgen(folder, "batch", "tasks.txt", "-c", "team.yaml", "-o", "out.jsonl", "-q")
    assert done.returncode == 0, done.stderr
    assert "2 tasks; not tasks: 2 comment lines, 2 blank lines, 1 duplicate" in done.stderr
    (folder / "tasks.csv").write_text("id,task\nq1,One?\nq2,\nq3,  \n")
    csv = massgen(folder, "batch", "tasks.csv", "-c", "team.yaml", "-o", "csv.jsonl", "-q")
    assert csv.returncode == 0, csv.stderr
    assert "1 task; not tasks: 2 rows with an empty task" in csv.stderr


def test_a_piped_batch_says_each_thing_once(folder: Path) -> None:
    """What the file held, then the summary: not the count again, nor the last progress
    line beside the summary that repeats it."""
    (folder / "tasks.txt").write_text("# a comment\nOne?\n\nTwo?\n")
    done = massgen(folder, "batch", "tasks.txt", "-c", "team.yaml", "-o", "out.jsonl")
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    assert lines[0] == "batch: tasks.txt: 2 tasks; not tasks: 1 comment line, 1 blank line"
    assert [ln for ln in lines if "2 done" in ln] == [lines[-1]]
    assert lines[-1].startswith("batch summary: 2 done, 0 failed")


def test_a_clean_task_file_reports_nothing_dropped(folder: Path) -> None:
    done = massgen(folder, "batch", "tasks.txt", "-c", "team.yaml", "-o", "out.jsonl", "-q")
    assert done.returncode == 0 and "not tasks" not in done.stderr


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("tasks.txt", ""),
        ("tasks.txt", "\n   \n# only a comment\n"),
        ("tasks.csv", "id,task\nq1,\n"),
    ],
    ids=["empty", "blank-and-comments", "csv-empty-tasks"],
)
def test_a_task_file_without_a_task_is_refused(folder: Path, name: str, text: str) -> None:
    (folder / name).write_text(text)
    before = files(folder)
    refused(massgen(folder, "batch", name, "-c", "team.yaml"), name, "no task")
    assert files(folder) == before  # no results file, no lock


# -- run --record ---------------------------------------------------------------------------


def test_run_record_a_folder(folder: Path) -> None:
    (folder / "records").mkdir()
    before = files(folder)
    out = massgen(folder, "run", "team.yaml", "Hi?", "--record", "records", "-q")
    refused(out, "--record")
    assert files(folder) == before and list((folder / "records").iterdir()) == []


def test_run_record_under_a_file(folder: Path) -> None:
    before = files(folder)
    out = massgen(folder, "run", "team.yaml", "Hi?", "--record", "tasks.txt/run.json", "-q")
    refused(out, "--record")
    assert files(folder) == before


def test_run_record_in_a_read_only_folder(folder: Path) -> None:
    locked = folder / "locked"
    locked.mkdir()
    if os.geteuid() == 0:  # root writes anywhere a mode allows nothing: mount it read-only
        made = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "ro,size=16k", "tmpfs", str(locked)],
            capture_output=True,
            check=False,
        )
        if made.returncode != 0:
            pytest.skip(f"cannot mount a read-only tmpfs: {made.stderr.decode().strip()}")
    else:
        locked.chmod(0o500)
    try:
        out = massgen(folder, "run", "team.yaml", "Hi?", "--record", "locked/run.json", "-q")
        refused(out, "--record")
        assert list(locked.iterdir()) == []
    finally:
        if os.geteuid() == 0:
            subprocess.run(["umount", "-l", str(locked)], check=False)


def test_run_record_a_writable_path_is_written(folder: Path) -> None:
    out = massgen(folder, "run", "team.yaml", "Hi?", "--record", "new/run.json", "-q")
    assert out.returncode == 0, out.stderr
    record = json.loads((folder / "new" / "run.json").read_text())
    assert record["final_answer"] == "answer: Hi?"
    assert sorted(p.name for p in (folder / "new").iterdir()) == ["run.json"]


def test_a_record_that_cannot_be_written_at_the_end_is_reported_and_leaves_no_tmp(
    tmp_path: Path,
) -> None:
    from massgen import events as ev
    from massgen.record import RunRecorder
    from massgen.result import RunResult

    folder = tmp_path / "records"
    folder.mkdir()
    recorder = RunRecorder(path=folder / "run.json")
    recorder.check()
    folder.rmdir()
    folder.write_text("the folder became a file while the run ran")
    recorder(ev.RunEnded(result=RunResult(run_id="r1", task="t", strategy="parallel")))
    assert recorder.failed and recorder.written is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["records"]


def test_endless_config_is_refused_by_run_and_validate() -> None:
    # The one loader caps what it reads: `run` and `config validate` stop on /dev/zero too.
    for args in (["run", "/dev/zero", "hi"], ["config", "validate", "/dev/zero"]):
        proc = run_massgen(*args)
        assert proc.returncode == 2, proc.stderr
        assert "/dev/zero" in proc.stderr and "Traceback" not in proc.stderr


def test_unknown_session_and_memory_are_usage_errors(tmp_path: Path) -> None:
    for args, key in (
        (["session", "show", "nosuch"], "NAME"),
        (["session", "delete", "nosuch"], "NAME"),
        (["memory", "clear", "--agent", "nosuch"], "--agent"),
        (["memory", "list", "--agent", "nosuch"], "--agent"),
    ):
        proc = run_massgen(*args, cwd=tmp_path, unset=("MASSGEN_CONFIG",))
        assert proc.returncode == 2, (args, proc.stdout, proc.stderr)
        assert f"`{key}`" in proc.stderr and "nosuch" in proc.stderr and proc.stdout == ""
        assert "forgot" not in proc.stdout and "Traceback" not in proc.stderr
    assert not (tmp_path / ".massgen").exists()  # nothing written


def test_a_failed_run_with_json_prints_its_result_on_stdout_and_why_on_stderr(
    tmp_path: Path,
) -> None:
    """A script that asked for --json reads a failed run's result too (it printed nothing)."""
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    (tmp_path / "team.yaml").write_text(
        "agents:\n  - {name: a, backend: {type: openai, model: m, api_key: x, "
        f"base_url: 'http://127.0.0.1:{port}/v1'}}}}\norchestrator: {{max_retries: 0}}\n"
    )
    done = run_massgen("run", "team.yaml", "hi", "--json", "--no-record", cwd=tmp_path)
    assert done.returncode == 1
    result = json.loads(done.stdout)
    assert result["status"] == "failed" and list(result["failed_agents"]) == ["a"]
    assert result["error"] and done.stderr.startswith("error: ")


@pytest.mark.parametrize("command", ["run", "batch"])
def test_an_unknown_strategy_is_the_option_s_error(command: str, tmp_path: Path) -> None:
    """Named as typed (--strategy), with the choices, before any file is read (it was the
    config's key `strategy`, after loading)."""
    args = ("team.yaml", "hi") if command == "run" else ("tasks.txt",)
    done = run_massgen(command, *args, "-s", "debate", cwd=tmp_path)
    assert done.returncode == 2 and "--strategy" in done.stderr
    assert all(s in done.stderr for s in ("parallel", "sequential", "consensus"))
