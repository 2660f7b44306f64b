"""R21: a results file with damaged lines anywhere, left by a batch interrupted anywhere.

Hypothesis builds the file a crashed or damaged batch could leave: finished and failed
rows in any order, a failed row already superseded by a later success, rows damaged in
place (a flipped bit, a cut), junk lines anywhere (blank, garbage, NUL runs) and a torn
last line. A real resume (``run_batch`` on the real file) must keep every good row as it
was, run each task without a finished row exactly once, set every damaged line aside,
and leave one parseable line per task.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
from collections import Counter
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from massgen.agents.agent import Agent
from massgen.backends.function import FunctionBackend
from massgen.batch import ResultLog, from_strings, run_batch
from massgen.batch.files import encode_row, parse_row
from massgen.orchestrator import Orchestrator

JUNK = st.one_of(
    st.just(b""),
    st.just(b"   \t"),
    st.binary(min_size=1, max_size=12).map(lambda b: b"\x00" * len(b)),
    st.binary(min_size=1, max_size=40).filter(lambda b: b"\n" not in b and b"\r" not in b),
).filter(lambda b: parse_row(b) is None)


@st.composite
def damaged_files(draw: st.DrawFn) -> tuple[list[str], bytes, dict[str, dict], int]:
    """(tasks, the file's bytes, the good finished rows by id, damaged lines in it)."""
    n = draw(st.integers(1, 8))
    tasks = [f"task {i}" for i in range(n)]
    ids = [t.id for t in from_strings(tasks)]
    lines: list[bytes] = []
    finished: dict[str, dict] = {}
    damaged = 0
    for tid, task in zip(ids, tasks, strict=True):
        state = draw(st.sampled_from(["missing", "done", "failed", "retried", "hurt"]))
        done = {"id": tid, "task": task, "status": "done", "final_answer": f"old {task}"}
        failed = {"id": tid, "task": task, "status": "failed", "error": "boom"}
        if state == "done":
            lines.append(encode_row(done))
            finished[tid] = done
        elif state == "failed":
            lines.append(encode_row(failed))
        elif state == "retried":  # failed, then done on a resume that crashed before compacting
            lines += [encode_row(failed), encode_row(done)]
            finished[tid] = done
        elif state == "hurt":  # its only row damaged in place: the task must run again
            good = encode_row(done)
            if draw(st.booleans()):
                lines.append(bytes([good[0] ^ 0x01]) + good[1:])  # a flipped bit: `{` -> `z`
            else:
                lines.append(good[: draw(st.integers(1, len(good) - 3))] + b"\n")  # cut short
            damaged += 1
    lines = list(draw(st.permutations(lines)))
    # a retried task's failed row comes before its done row (the order a retry writes)
    for tid in ids:
        at = [i for i, line in enumerate(lines) if (parse_row(line) or {}).get("id") == tid]
        if len(at) == 2 and parse_row(lines[at[0]])["status"] == "done":  # type: ignore[index]
            lines[at[0]], lines[at[1]] = lines[at[1]], lines[at[0]]
    for junk in draw(st.lists(JUNK, max_size=4)):
        lines.insert(draw(st.integers(0, len(lines))), junk + b"\n")
        damaged += 1
    data = b"".join(lines)
    if draw(st.booleans()):  # interrupted mid-write: a torn last line
        torn = encode_row({"id": "t-torn", "task": "torn", "status": "done"})
        data += torn[: draw(st.integers(1, len(torn) - 3))]
        damaged += 1
    return tasks, data, finished, damaged


def resume(path: Path, tasks: list[str], concurrency: int) -> Counter[str]:
    """Run the batch again on ``path``; how often each task was sent to the agent."""
    calls: Counter[str] = Counter()

    def respond(request):
        calls[request.messages[-1].content] += 1
        return f"new {request.messages[-1].content}"

    orchestrator = Orchestrator([Agent("a", FunctionBackend(respond))], strategy="parallel")

    async def main() -> None:
        with ResultLog(path) as log:
            await run_batch(orchestrator, from_strings(tasks), log=log, concurrency=concurrency)

    asyncio.run(main())
    return calls


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=damaged_files(), concurrency=st.integers(1, 4))
def test_a_resume_keeps_every_good_row_and_runs_each_missing_task_once(
    case: tuple[list[str], bytes, dict[str, dict], int], concurrency: int
) -> None:
    tasks, data, finished, damaged = case
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "out.jsonl"
        path.write_bytes(data)
        calls = resume(path, tasks, concurrency)

        final = [json.loads(line) for line in path.read_bytes().splitlines()]
        assert path.read_bytes().endswith(b"\n") or not final
        by_id = {row["id"]: row for row in final}
        assert len(by_id) == len(final) == len(tasks), "one line per task"
        for tid, row in finished.items():
            assert by_id[tid] == row, "a good finished row changed or was lost"
        ran = {t for t in tasks if from_strings([t])[0].id not in finished}
        assert calls == Counter(dict.fromkeys(ran, 1)), "each missing task runs exactly once"
        assert all(row["status"] == "done" for row in final)

        side = list(Path(tmp).glob("out.jsonl.bad-*"))
        if damaged:
            assert len(side) == 1
            assert len(side[0].read_bytes().splitlines()) == damaged
        else:
            assert side == []
