"""Batch runs: inputs, resumable output, concurrency, cancellation, budget."""

from __future__ import annotations

import asyncio
import json

import pytest

from massgen.agents.agent import Agent
from massgen.backends.function import FunctionBackend
from massgen.batch import ResultLog, read_tasks, task_id
from massgen.errors import ConfigError
from massgen.orchestrator import Orchestrator
from massgen.types import Completion, Usage


def test_txt_skips_blanks_and_comments_and_ids_are_stable(tmp_path):
    f = tmp_path / "tasks.txt"
    f.write_text("# questions\nWhat is 2+2?\n\n  What is 3+3?  \n# end\nWhat is 2+2?\n")
    tasks = read_tasks(f)
    assert [t.task for t in tasks] == ["What is 2+2?", "What is 3+3?"]
    assert tasks[0].id == task_id("What is 2+2?") == read_tasks(f)[0].id


def test_jsonl_and_csv_keep_given_ids_and_fields(tmp_path):
    j = tmp_path / "t.jsonl"
    j.write_text('{"id": "q1", "task": "A?", "topic": "x"}\n\n{"task": "B?"}\n')
    tasks = read_tasks(j)
    assert [(t.id, t.task) for t in tasks] == [("q1", "A?"), (task_id("B?"), "B?")]
    assert tasks[0].fields == {"topic": "x"}
    c = tmp_path / "t.csv"
    c.write_text("id,task,level\nc1,First?,easy\n,Second?,hard\n")
    assert [(t.id, t.task, t.fields["level"]) for t in read_tasks(c)] == [
        ("c1", "First?", "easy"),
        (task_id("Second?"), "Second?", "hard"),
    ]


@pytest.mark.parametrize(
    ("name", "body", "where"),
    [
        ("t.jsonl", '{"task": "ok"}\n{not json\n', ":2"),
        ("t.jsonl", '{"id": 1}\n', ":1"),
        ("t.csv", "question\nx\n", ":1"),
        ("t.md", "x\n", "t.md"),
    ],
)
def test_bad_task_files_are_config_errors_with_a_location(tmp_path, name, body, where):
    f = tmp_path / name
    f.write_text(body)
    with pytest.raises(ConfigError) as info:
        read_tasks(f)
    assert where in str(info.value)


def test_result_log_tolerates_a_torn_last_line(tmp_path):
    out = tmp_path / "r.jsonl"
    out.write_text('{"id": "a", "status": "done"}\n{"id": "b", "status": "done"}\n{"id": "c", "sta')
    with ResultLog(out) as log:
        assert set(log.done) == {"a", "b"}
        log.write({"id": "c", "status": "done"})
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert [r["id"] for r in lines] == ["a", "b", "c"]


async def test_result_log_groups_commits_under_one_fsync(tmp_path):
    out = tmp_path / "r.jsonl"
    with ResultLog(out) as log:
        await asyncio.gather(*(log.commit({"id": f"t{i}", "status": "done"}) for i in range(50)))
        assert set(log.done) == {f"t{i}" for i in range(50)}
        assert 1 <= log.fsyncs < 50  # lines committed together share an fsync
        # each commit returned only once its line was on disk
        assert len(out.read_bytes().splitlines()) == 50
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert sorted(r["id"] for r in rows) == sorted(f"t{i}" for i in range(50))


async def test_result_log_close_writes_lines_whose_commit_was_cancelled(tmp_path):
    out = tmp_path / "r.jsonl"
    log = ResultLog(out)
    first = asyncio.ensure_future(log.commit({"id": "a", "status": "done"}))
    second = asyncio.ensure_future(log.commit({"id": "b", "status": "done"}))
    await asyncio.sleep(0)  # both lines handed to the log
    second.cancel()
    await first
    with pytest.raises(asyncio.CancelledError):
        await second
    log.close()
    assert [json.loads(x)["id"] for x in out.read_text().splitlines()] == ["a", "b"]


def counting_team(delay: float = 0.0, fail_on: str | None = None):
    stats = {"in_flight": 0, "max": 0, "calls": 0}

    async def respond(request):
        stats["calls"] += 1
        stats["in_flight"] += 1
        stats["max"] = max(stats["max"], stats["in_flight"])
        try:
            await asyncio.sleep(delay)
            text = request.messages[-1].content
            if fail_on and fail_on in text:
                from massgen.errors import BadRequestError

                raise BadRequestError("refused", status=400)
            return Completion(
                text=f"answer to {text}", model="gpt-4o-mini", usage=Usage(1000, 1000)
            )
        finally:
            stats["in_flight"] -= 1

    agents = [Agent("a", FunctionBackend(respond))]
    return Orchestrator(agents, strategy="parallel", max_retries=0), stats


async def test_batch_runs_every_task_with_bounded_concurrency_and_writes_rows(tmp_path):
    orchestrator, stats = counting_team(delay=0.001)
    tasks = [f"task {i}" for i in range(40)]
    out = tmp_path / "r.jsonl"
    result = await orchestrator.abatch_run(tasks, concurrency=5, out=out)
    assert result.summary.done == 40 and stats["calls"] == 40
    assert stats["max"] == 5
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert sorted(r["id"] for r in rows) == sorted(task_id(t) for t in tasks)
    assert all(r["final_answer"] == f"answer to {r['task']}" for r in rows)
    assert [r.final_answer for r in result] == [f"answer to {t}" for t in tasks]  # task order


async def test_a_rerun_skips_finished_tasks_and_retries_failed_ones(tmp_path):
    out = tmp_path / "r.jsonl"
    orchestrator, stats = counting_team(fail_on="task 3")
    first = await orchestrator.abatch_run([f"task {i}" for i in range(5)], out=out)
    assert (first.summary.done, first.summary.failed) == (4, 1)
    orchestrator2, stats2 = counting_team()
    second = await orchestrator2.abatch_run([f"task {i}" for i in range(5)], out=out)
    assert second.summary.skipped == 4 and second.summary.done == 1
    assert stats2["calls"] == 1  # only the failed task ran again
    fresh, stats3 = counting_team()
    await fresh.abatch_run([f"task {i}" for i in range(5)], out=out, resume=False)
    assert stats3["calls"] == 5 and len(out.read_text().splitlines()) == 5


async def test_cancelling_a_batch_writes_only_finished_tasks(tmp_path):
    out = tmp_path / "r.jsonl"
    three_written = asyncio.Event()

    async def respond(request):
        if request.messages[-1].content.startswith("slow"):
            await asyncio.Event().wait()  # never finishes
        return "done"

    def on_row(row, summary):
        if summary.done == 3:
            three_written.set()

    orchestrator = Orchestrator([Agent("a", FunctionBackend(respond))], strategy="parallel")
    tasks = ["fast 1", "fast 2", "fast 3", "slow 1", "slow 2"]
    job = asyncio.create_task(orchestrator.abatch_run(tasks, concurrency=5, out=out, on_row=on_row))
    await asyncio.wait_for(three_written.wait(), timeout=5)
    job.cancel()
    with pytest.raises(asyncio.CancelledError):
        await job
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert sorted(r["task"] for r in rows) == ["fast 1", "fast 2", "fast 3"]


async def test_the_budget_stops_the_batch_before_spending_more(tmp_path):
    orchestrator, stats = counting_team()
    orchestrator.max_cost = 0.0005  # gpt-4o-mini: 1000+1000 tokens cost $0.00075
    result = await orchestrator.abatch_run([f"task {i}" for i in range(10)], concurrency=1)
    assert stats["calls"] == 1
    assert result.summary.done == 1 and result.summary.stopped == "budget"
    assert result.summary.remaining == 9


def test_seed_batch_run_example():
    orchestrator, _ = counting_team()
    tasks = ["Task 1", "Task 2", "Task 3"]
    results = orchestrator.batch_run(tasks)
    assert [r.final_answer for r in results] == [
        "answer to Task 1",
        "answer to Task 2",
        "answer to Task 3",
    ]


async def test_the_budget_stops_a_run_before_its_next_round():
    from massgen.errors import BudgetExceeded

    def respond(request):
        return Completion(
            text=request.messages[-1].content[-8:], model="gpt-4o", usage=Usage(10_000, 0)
        )

    agents = [Agent(n, FunctionBackend(respond)) for n in "abc"]
    orchestrator = Orchestrator(agents, max_cost=0.01)  # gpt-4o: $0.025 per answer here
    with pytest.raises(BudgetExceeded, match="cost budget of \\$0.0100 reached") as info:
        await orchestrator.arun("different answers please")
    spent = info.value.result  # type: ignore[attr-defined]
    assert spent.status == "failed" and spent.requests >= 1
    assert all(a.phase == "answer" for a in spent.answers)  # no review turn was sent


async def test_a_cached_rerun_makes_no_provider_request(tmp_path):
    from massgen.store import open_store

    calls = []

    def respond(request):
        calls.append(request)
        return f"answer to {request.messages[-1].content}"

    store = open_store(tmp_path / "cache.sqlite3")
    seen = []
    orchestrator = Orchestrator(
        [Agent("a", FunctionBackend(respond)), Agent("b", FunctionBackend(respond))],
        strategy="parallel",
        cache_enabled=True,
        cache_store=store,
        subscribers=[seen.append],
    )
    tasks = [f"task {i}" for i in range(5)]
    first = await orchestrator.abatch_run(tasks)
    assert len(calls) == 10 and first.summary.done == 5
    again = await orchestrator.abatch_run(tasks)
    assert len(calls) == 10  # all from the cache
    assert all(r is not None and r.requests == 0 and r.cost == 0 for r in again)
    assert any(getattr(e, "cached", False) for e in seen)
    await orchestrator.aclose()
    await store.aclose()


def test_the_collector_runs_less_often_while_batches_run_and_is_restored():
    import gc

    from massgen.batch.runner import GC_THRESHOLD, fewer_collections

    before = gc.get_threshold()
    try:
        gc.set_threshold(700, 10, 10)
        with fewer_collections():
            assert gc.get_threshold() == (GC_THRESHOLD, 10, 10)
            with fewer_collections():  # a second batch at once
                pass
            assert gc.get_threshold()[0] == GC_THRESHOLD  # still raised for the first
        assert gc.get_threshold() == (700, 10, 10)
    finally:
        gc.set_threshold(*before)
