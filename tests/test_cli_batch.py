"""`massgen batch` and `massgen cache` through the CLI."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from massgen.cli import app

TEAM = """\
agents:
  - {name: a, backend: {type: replay, default: "answer: {task}"}}
  - {name: b, backend: {type: replay, default: "answer: {task}"}}
orchestrator:
  strategy: parallel
  cache: {enabled: true, path: cache.sqlite3}
"""


def setup(tmp_path: Path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MASSGEN_CONFIG", raising=False)
    (tmp_path / "massgen.yaml").write_text(TEAM)
    tasks = tmp_path / "tasks.txt"
    tasks.write_text("# three questions\nOne?\nTwo?\n\nThree?\n")
    return tasks


def rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_batch_finds_massgen_yaml_and_writes_results_beside_the_tasks(tmp_path, monkeypatch):
    tasks = setup(tmp_path, monkeypatch)
    out = CliRunner().invoke(app, ["batch", str(tasks)])
    assert out.exit_code == 0, out.output
    results = tmp_path / "tasks.results.jsonl"
    assert out.stdout.strip() == str(results)
    got = rows(results)
    assert sorted(r["task"] for r in got) == ["One?", "Three?", "Two?"]
    assert all(
        r["status"] == "done"
        and r["answers"] == {"a": f"answer: {r['task']}", "b": f"answer: {r['task']}"}
        for r in got
    )
    assert "batch summary: 3 done, 0 failed" in out.stderr


def test_a_rerun_skips_everything_and_no_resume_moves_the_old_file_aside(tmp_path, monkeypatch):
    tasks = setup(tmp_path, monkeypatch)
    runner = CliRunner()
    runner.invoke(app, ["batch", str(tasks), "-o", "r.jsonl"])
    again = runner.invoke(app, ["batch", str(tasks), "-o", "r.jsonl"])
    assert again.exit_code == 0 and "0 done, 0 failed, 3 skipped" in again.stderr
    fresh = runner.invoke(app, ["batch", str(tasks), "-o", "r.jsonl", "--no-resume"])
    assert fresh.exit_code == 0
    assert (tmp_path / "r.jsonl.1").exists() and len(rows(tmp_path / "r.jsonl")) == 3


def test_batch_without_a_config_is_a_clear_usage_error(tmp_path, monkeypatch):
    tasks = setup(tmp_path, monkeypatch)
    (tmp_path / "massgen.yaml").unlink()
    out = CliRunner().invoke(app, ["batch", str(tasks)])
    assert out.exit_code == 2
    assert "massgen.yaml" in out.stderr and "MASSGEN_CONFIG" in out.stderr


def test_massgen_config_env_var_is_used(tmp_path, monkeypatch):
    tasks = setup(tmp_path, monkeypatch)
    (tmp_path / "massgen.yaml").rename(tmp_path / "team.yaml")
    monkeypatch.setenv("MASSGEN_CONFIG", str(tmp_path / "team.yaml"))
    assert CliRunner().invoke(app, ["batch", str(tasks)]).exit_code == 0


def test_cache_stats_and_clear(tmp_path, monkeypatch):
    tasks = setup(tmp_path, monkeypatch)
    runner = CliRunner()
    assert runner.invoke(app, ["batch", str(tasks)]).exit_code == 0
    stats = runner.invoke(app, ["cache", "stats"])
    assert stats.exit_code == 0 and "3 entries" in stats.stdout  # a and b share a request
    cleared = runner.invoke(app, ["cache", "clear"])
    assert cleared.exit_code == 0 and "3 entries removed" in cleared.stdout
    assert "0 entries" in runner.invoke(app, ["cache", "stats"]).stdout


def test_no_cache_bypasses_the_cache(tmp_path, monkeypatch):
    tasks = setup(tmp_path, monkeypatch)
    runner = CliRunner()
    assert runner.invoke(app, ["batch", str(tasks), "--no-cache"]).exit_code == 0
    assert not (tmp_path / "cache.sqlite3").exists()
    assert "no file yet" in runner.invoke(app, ["cache", "stats"]).stdout
