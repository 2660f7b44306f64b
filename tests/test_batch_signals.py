"""R8: `massgen batch` stopped mid-run (SIGINT, SIGTERM, SIGKILL), then resumed.

A real `python -m massgen batch` process runs 1,000 tasks with a 2-agent parallel team
against the provider simulator (in this process, so every request it received can be
counted by task). Each test stops the batch once its result file holds a random number of
lines, runs the same command again, and checks the promise of ../docs and
shared/reliability.md: 1,000 unique results, no duplicates, every line valid JSON, and no
task finished before the stop sent to the provider again.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.sim.sim_rules import Rule
from tests.sim.sim_types import Text
from tests.sim.simulator import ProviderSimulator

TASKS = 1000
AGENTS = 2
# Seconds per simulated request: small, because the 1,000 tasks pay it 125 times in a row (at
# 0.02: +2 s a test); CONCURRENCY tasks are in flight when the stop comes, as the tasks after
# them are held until it is sent (hold_from).
LATENCY = 0.005
# Tasks in flight at once. Higher would be closer to real use, but massgen's HTTP client
# (httpx 0.28) spends CPU per request that grows with the number of pooled connections,
# so a 1,000-task batch at 64 takes ~35 s here and at 8 ~8 s.
CONCURRENCY = 8
SEED = 20261122
TIMEOUT = 45.0  # seconds any one batch process may take before the test fails
TASK_NO = re.compile(r"^Question (\d{4}):")


def task_text(i: int) -> str:
    return f"Question {i:04d}: what is {i} plus {i}?"


@pytest.fixture
def batch_dir(tmp_path: Path, sim: ProviderSimulator) -> Path:
    """tasks.txt with 1,000 tasks and team.yaml: two agents on the simulator, in parallel."""
    sim.latency = LATENCY
    (tmp_path / "tasks.txt").write_text("".join(task_text(i) + "\n" for i in range(TASKS)))
    (tmp_path / "team.yaml").write_text(
        "backends:\n"
        f'  sim: {{type: openai, model: gpt-4o-mini, base_url: "{sim.openai_base_url}", '
        "api_key: x}\n"
        "agents:\n"
        "  - {name: ada, backend: sim}\n"
        "  - {name: bo, backend: sim}\n"
        "orchestrator:\n"
        "  strategy: parallel\n"
        "  max_retries: 0\n"
    )
    return tmp_path


def start(cwd: Path, name: str, *extra: str) -> subprocess.Popen[bytes]:
    """``massgen batch`` on the task file, stdout and stderr into ``name.out``/``name.err``
    (files, not pipes: nothing can block on a full pipe while the test waits)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MASSGEN_")}
    cmd = [sys.executable, "-m", "massgen", "batch", "tasks.txt", "--config", "team.yaml"]
    cmd += ["--out", "out.jsonl", "--concurrency", str(CONCURRENCY), *extra]
    with (cwd / f"{name}.out").open("wb") as out, (cwd / f"{name}.err").open("wb") as err:
        return subprocess.Popen(cmd, cwd=cwd, stdout=out, stderr=err, env=env)


def finish(proc: subprocess.Popen[bytes]) -> int:
    try:
        return proc.wait(TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        pytest.fail(f"the batch process did not finish within {TIMEOUT} s")


def line_count(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def wait_for_lines(path: Path, k: int, proc: subprocess.Popen[bytes]) -> None:
    """Bounded poll (no event exists for another process's file growing): return once
    ``path`` holds at least ``k`` lines; fail if the process ends first or time runs out."""
    deadline = time.monotonic() + TIMEOUT
    while line_count(path) < k:
        if proc.poll() is not None:
            pytest.fail(f"the batch exited ({proc.returncode}) before writing {k} lines")
        if time.monotonic() > deadline:
            proc.kill()
            proc.wait()
            pytest.fail(f"{line_count(path)} of {k} lines after {TIMEOUT} s")
        time.sleep(0.002)


def hold_from(sim: ProviderSimulator, k: int) -> Rule:
    """Hold the requests of the tasks after the ``k``-th (and a margin) until the stop has
    been sent: the batch cannot finish first, however long this test waits to send it on a
    busy machine. Set the rule's ``latency`` to 0 to let them through again."""
    gate = k + 4 * CONCURRENCY
    held = "|".join(f"{i:04d}" for i in range(gate, TASKS))
    return sim.script(
        Text("Held, then answered."), match=re.compile(rf"Question (?:{held}):"), latency=TIMEOUT
    )


def rows(path: Path) -> list[dict]:
    """Every line of the result file, each of which must be a JSON object."""
    text = path.read_text(encoding="utf-8")
    assert text.endswith("\n"), f"the last line is torn: {text[-80:]!r}"
    return [json.loads(line) for line in text.splitlines()]


def requests_by_task(sim: ProviderSimulator) -> Counter[int]:
    """How many provider requests the simulator received for each task number."""
    counts: Counter[int] = Counter()
    for request in sim.requests:
        match = TASK_NO.match(request.last_user_text)
        assert match, f"a request for no known task: {request.last_user_text!r}"
        counts[int(match.group(1))] += 1
    return counts


def task_numbers(found: list[dict]) -> set[int]:
    numbers = set()
    for row in found:
        match = TASK_NO.match(row["task"])
        assert match, row
        numbers.add(int(match.group(1)))
    return numbers


def check_resumed(sim: ProviderSimulator, out: Path, finished: set[int], why: str) -> None:
    """After the resume: 1,000 unique done results, and no repeat request for a task
    finished before the stop. Only tasks in flight at the stop (at most CONCURRENCY) may
    have been sent again, each at most once more per agent."""
    final = rows(out)
    ids = Counter(row["id"] for row in final)
    assert len(final) == TASKS, why
    assert [i for i, n in ids.items() if n > 1] == [], why
    assert task_numbers(final) == set(range(TASKS)), why
    assert {row["status"] for row in final} == {"done"}, why
    counts = requests_by_task(sim)
    repeated = {i: counts[i] for i in finished if counts[i] != AGENTS}
    sample = dict(list(repeated.items())[:5])
    assert not repeated, f"{len(repeated)} finished tasks sent again, e.g. {sample}; {why}"
    assert all(AGENTS <= counts[i] <= 2 * AGENTS for i in range(TASKS)), why
    again = {i: n for i, n in counts.items() if n > AGENTS}
    assert len(again) <= CONCURRENCY, f"more tasks sent again than were in flight: {again}"


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_an_interrupted_batch_exits_130_with_a_summary_and_resumes_without_repeats(
    batch_dir: Path, sim: ProviderSimulator, signum: signal.Signals
) -> None:
    k = random.Random(f"{SEED}-{signum.name}").randint(50, 900)
    why = f"{signum.name} after {k} lines (seed {SEED})"
    out = batch_dir / "out.jsonl"

    held = hold_from(sim, k)
    first = start(batch_dir, "first")  # plain progress lines: stderr is not a terminal
    wait_for_lines(out, k, first)
    first.send_signal(signum)
    code = finish(first)
    held.latency = 0.0
    err = (batch_dir / "first.err").read_text()
    assert code == 130, f"{why}: exit {code}\n{err}"
    assert "Traceback" not in err, err
    assert re.search(r"^batch summary: \d+ done, 0 failed, 0 skipped, \d+ remaining", err, re.M)
    assert re.search(r"^batch interrupted: \d+ done, .* run the same command again", err, re.M)
    assert (batch_dir / "first.out").read_text() == ""  # the results path is printed on success

    stopped = rows(out)
    finished = task_numbers(stopped)
    assert len(stopped) == len(finished) >= k, why
    said = re.search(r"^batch interrupted: (\d+) done", err, re.M)
    assert said and int(said.group(1)) == len(stopped), err

    second = start(batch_dir, "second", "--quiet")
    code = finish(second)
    assert code == 0, f"{why}: resume exit {code}\n{(batch_dir / 'second.err').read_text()}"
    assert (batch_dir / "second.out").read_text().strip() == "out.jsonl"
    check_resumed(sim, out, finished, why)


def test_a_killed_batch_with_a_torn_last_line_resumes_to_exactly_1000_results(
    batch_dir: Path, sim: ProviderSimulator
) -> None:
    k = random.Random(f"{SEED}-SIGKILL").randint(50, 900)
    why = f"SIGKILL after {k} lines (seed {SEED})"
    out = batch_dir / "out.jsonl"

    held = hold_from(sim, k)
    first = start(batch_dir, "first", "--quiet")
    wait_for_lines(out, k, first)
    first.kill()
    assert finish(first) == -signal.SIGKILL
    held.latency = 0.0
    stopped = rows(out)  # each line is written whole by one write(): SIGKILL cannot tear it
    finished = task_numbers(stopped)
    assert len(stopped) == len(finished) >= k, why
    torn = '{"id": "t-torn", "task": "Question 0000: what is 0 plus 0?", "status": "do'
    with out.open("a", encoding="utf-8") as f:
        f.write(torn)

    second = start(batch_dir, "second", "--quiet")
    code = finish(second)
    assert code == 0, f"{why}: resume exit {code}\n{(batch_dir / 'second.err').read_text()}"
    assert "t-torn" not in out.read_text(), "the torn line is still there"
    check_resumed(sim, out, finished, why)
