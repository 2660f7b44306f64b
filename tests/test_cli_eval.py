"""`massgen eval` as a user runs it: a real process against replay and simulated teams;
exit codes, the table, the files, bad data, a missing key, a resume after SIGINT or SIGKILL
that gives the same report, --max-cost and -j."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.procs import run_massgen
from tests.sim.sim_types import Text
from tests.sim.simulator import ProviderSimulator

TEAM = """\
backends:
  sim:
    type: replay
    latency: {latency}
    rules:
      - {{match: 'You are Ada', reply: 'Answer: 4'}}
      - {{match: 'You are Bob.*(2\\+2|3\\+1)', reply: 'Answer: 5'}}
      - {{match: 'You are Bob', reply: 'Answer: 4'}}
    default: 'I think 4'
agents:
  - {{name: ada, backend: sim, role: You are Ada.}}
  - {{name: bob, backend: sim, role: You are Bob.}}
  - {{name: cy, backend: sim, role: You are Cy.}}
orchestrator:
  strategy: parallel
"""
SUMS = ["2+2", "3+1", "1+3", "0+4", "4+0", "5-1"]


def setup(tmp_path: Path, latency: float = 0.0) -> Path:
    (tmp_path / "team.yaml").write_text(TEAM.format(latency=latency))
    rows = [{"id": f"q{i}", "question": f"What is {s}?", "answer": 4} for i, s in enumerate(SUMS)]
    (tmp_path / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return tmp_path


def figures(folder: Path) -> list[tuple]:
    """What a report says, less timings."""
    report = json.loads((folder / "report.json").read_text())
    keys = ("method", "n", "correct", "interval", "requests", "cost", "p_value", "agreement")
    return [tuple(json.dumps(m[k]) for k in keys) for m in report["methods"]]


def test_an_eval_prints_the_table_and_writes_results_report_and_chart(tmp_path):
    setup(tmp_path)
    done = run_massgen("eval", "team.yaml", "data.jsonl", "-m", "single,vote", "-q", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "| vote | 6 | 100.0% |" in done.stdout
    assert "| single:bob | 6 | 66.7% | 30.0%–90.3% | 0.5 (+0/−2) |" in done.stdout
    folder = tmp_path / "data.eval"
    assert {p.name for p in folder.iterdir()} >= {
        "results.jsonl",
        "report.json",
        "report.md",
        "chart.html",
    }
    rows = [json.loads(line) for line in (folder / "results.jsonl").read_text().splitlines()]
    assert len(rows) == 6 * 4 and {r["status"] for r in rows} == {"done"}
    assert (folder / "report.md").read_text() in done.stdout
    as_json = run_massgen(
        "eval",
        "team.yaml",
        "data.jsonl",
        "-m",
        "vote",
        "--json",
        "-q",
        "--limit",
        "2",
        "-o",
        "small",
        cwd=tmp_path,
    )
    assert as_json.returncode == 0, as_json.stderr
    assert json.loads(as_json.stdout)["methods"][0]["n"] == 2


def test_concurrency_does_not_change_the_report(tmp_path):
    setup(tmp_path)
    for j in ("1", "8"):
        done = run_massgen(
            "eval", "team.yaml", "data.jsonl", "-j", j, "-o", f"j{j}", "-q", cwd=tmp_path
        )
        assert done.returncode == 0, done.stderr
    assert figures(tmp_path / "j1") == figures(tmp_path / "j8")


def test_a_bad_data_file_is_a_usage_error_naming_file_line_and_key(tmp_path):
    setup(tmp_path)
    (tmp_path / "bad.jsonl").write_text(
        '{"question": "ok?", "answer": 1}\n{"question": "no answer"}\n'
    )
    done = run_massgen("eval", "team.yaml", "bad.jsonl", cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.startswith("error: bad.jsonl:2: `answer`:")
    assert "hint:" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "bad.eval").exists()  # nothing written before the data is read
    unknown = run_massgen("eval", "team.yaml", "data.jsonl", "-m", "vote,debate", cwd=tmp_path)
    assert unknown.returncode == 2 and "`--methods`: unknown method 'debate'" in unknown.stderr


def test_a_missing_api_key_is_named_before_anything_runs(tmp_path):
    setup(tmp_path)
    (tmp_path / "keyed.yaml").write_text(
        "agents:\n  - {name: gpt, backend: {type: openai, model: gpt-4o-mini}}\n"
    )
    done = run_massgen("eval", "keyed.yaml", "data.jsonl", cwd=tmp_path, unset=("OPENAI_API_KEY",))
    assert done.returncode == 2, done.stderr
    assert "no API key" in done.stderr and "OPENAI_API_KEY" in done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "data.eval").exists()


def start(cwd: Path, out: str, *extra: str) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MASSGEN_")}
    cmd = [sys.executable, "-m", "massgen", "eval", "team.yaml", "data.jsonl", "-o", out]
    cmd += ["-m", "single,vote", "-j", "1", *extra]
    with (cwd / f"{out}.stdout").open("ab") as so, (cwd / f"{out}.stderr").open("ab") as se:
        return subprocess.Popen(cmd, cwd=cwd, stdout=so, stderr=se, env=env)


def wait_for_lines(path: Path, k: int, proc: subprocess.Popen[bytes]) -> None:
    """Bounded poll (no event exists for another process's file growing)."""
    deadline = time.monotonic() + 30
    while not path.exists() or path.read_bytes().count(b"\n") < k:
        assert proc.poll() is None, f"eval exited ({proc.returncode}) before {k} lines"
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"fewer than {k} lines after 30 s")
        time.sleep(0.005)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGKILL], ids=["SIGINT", "SIGKILL"])
def test_an_eval_stopped_mid_run_resumes_to_the_same_report(tmp_path, signum):
    setup(tmp_path, latency=0.05)
    whole = run_massgen(
        "eval", "team.yaml", "data.jsonl", "-o", "whole", "-m", "single,vote", "-q", cwd=tmp_path
    )
    assert whole.returncode == 0, whole.stderr
    first = start(tmp_path, "cut")
    wait_for_lines(tmp_path / "cut" / "results.jsonl", 7, first)
    first.send_signal(signum)
    code = first.wait(30)
    kept = (tmp_path / "cut" / "results.jsonl").read_text().splitlines()
    assert 7 <= len(kept) < 24
    if signum == signal.SIGINT:
        err = (tmp_path / "cut.stderr").read_text()
        assert code == 130 and "add --resume" in err and "Traceback" not in err
    else:
        assert code == -signal.SIGKILL
    second = start(tmp_path, "cut", "--resume", "-q")
    assert second.wait(60) == 0, (tmp_path / "cut.stderr").read_text()
    rows = [
        json.loads(line) for line in (tmp_path / "cut" / "results.jsonl").read_text().splitlines()
    ]
    assert len(rows) == 24 and len({r["id"] for r in rows}) == 24
    assert set(kept) <= {json.dumps(r, ensure_ascii=False) for r in rows}  # finished: not redone
    assert figures(tmp_path / "cut") == figures(tmp_path / "whole")


def test_without_resume_the_old_results_are_moved_aside(tmp_path):
    setup(tmp_path)
    for _ in range(2):
        done = run_massgen("eval", "team.yaml", "data.jsonl", "-m", "vote", cwd=tmp_path)
        assert done.returncode == 0, done.stderr
    assert "previous results moved to" in done.stderr
    assert (tmp_path / "data.eval" / "results.jsonl.1").exists()


def test_max_cost_stops_the_eval_and_reports_the_finished_questions(
    tmp_path, sim: ProviderSimulator
):
    sim.responder = lambda request: Text("Answer: 4")
    setup(tmp_path)
    (tmp_path / "priced.yaml").write_text(
        "backends:\n"
        f'  sim: {{type: openai, model: gpt-4o-mini, base_url: "{sim.openai_base_url}", '
        "api_key: x, max_tokens: 20}\n"
        "agents:\n  - {name: ada, backend: sim}\n  - {name: bob, backend: sim}\n"
        "orchestrator: {strategy: parallel, max_retries: 0}\n"
        "prices: {gpt-4o-mini: {input: 1000, output: 1000}}\n"
    )
    done = run_massgen(
        "eval",
        "priced.yaml",
        "data.jsonl",
        "-m",
        "single,vote",
        "-j",
        "1",
        "--max-cost",
        "0.5",
        cwd=tmp_path,
    )
    assert done.returncode == 1, done.stderr
    assert "error: the cost budget of $0.5 is spent" in done.stderr
    report = json.loads((tmp_path / "data.eval" / "report.json").read_text())
    assert 0 < report["questions"] < 6
    spent = sum(m["cost"] for m in report["methods"])
    assert 0 < spent <= 0.5
    assert len(sim.requests) < 6 * 4


def test_a_resume_with_one_more_method_runs_only_that_method(tmp_path):
    setup(tmp_path)
    first = run_massgen("eval", "team.yaml", "data.jsonl", "-m", "vote", "-q", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    results = tmp_path / "data.eval" / "results.jsonl"
    before = results.read_text().splitlines()
    more = run_massgen(
        "eval", "team.yaml", "data.jsonl", "-m", "vote,single:bob", "--resume", "-q", cwd=tmp_path
    )
    assert more.returncode == 0, more.stderr
    after = results.read_text().splitlines()
    assert after[: len(before)] == before and len(after) == 12
    assert {json.loads(line)["method"] for line in after[len(before) :]} == {"single:bob"}
    other = run_massgen(
        "eval", "team.yaml", "data.jsonl", "--resume", "--seed", "7", "-m", "vote", cwd=tmp_path
    )
    assert other.returncode == 2 and "holds results of a different run" in other.stderr


def test_the_progress_says_what_an_eval_runs_and_the_output_goes_where_you_are(tmp_path):
    setup(tmp_path)
    (tmp_path / "data").mkdir()
    (tmp_path / "data.jsonl").rename(tmp_path / "data" / "sums.jsonl")
    done = run_massgen(
        "eval", "team.yaml", "data/sums.jsonl", "-m", "single:ada,vote", cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    assert "eval: 6 questions x 2 methods = 12 runs (single:ada, vote)" in done.stderr
    assert re.search(r"^eval summary: 12 done, 0 failed", done.stderr, re.M)
    assert "batch" not in done.stderr  # one view, named for what runs
    assert (tmp_path / "sums.eval" / "report.json").exists()  # not among the data
    assert not (tmp_path / "data" / "sums.eval").exists()


def test_confidence_widens_every_interval_and_must_be_a_probability(tmp_path):
    setup(tmp_path)
    widths = {}
    for c in ("0.95", "0.99"):
        done = run_massgen(
            "eval", "team.yaml", "data.jsonl", "-m", "single:bob", "--confidence", c,
            "--json", "-q", "-o", c, cwd=tmp_path,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        report = json.loads(done.stdout)
        assert report["confidence"] == float(c)
        low, high = report["methods"][0]["interval"]
        widths[c] = high - low
    assert widths["0.99"] > widths["0.95"]
    assert "99% interval" in (tmp_path / "0.99" / "chart.html").read_text()
    bad = run_massgen("eval", "team.yaml", "data.jsonl", "--confidence", "95", cwd=tmp_path)
    assert bad.returncode == 2 and "--confidence" in bad.stderr
