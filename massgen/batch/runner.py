"""Run many tasks with one team: bounded concurrency, a shared budget, resumable output. A task
counts as done once its line is on disk, so a re-run does exactly the work that is left."""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from massgen.batch.files import BatchTask, ResultLog
from massgen.budget import Budget
from massgen.errors import BudgetExceeded, MassGenError, ResultsFileError
from massgen.result import RunResult
from massgen.types import Turn, Usage


class Team(Protocol):
    """What a batch needs of the team it runs (an :class:`~massgen.Orchestrator`)."""

    @property
    def handles(self) -> Mapping[str, Any]: ...

    def seats(self) -> list[str]: ...

    async def arun(
        self, task: str, strategy: str | None = None, *, budget: Budget | None = None
    ) -> RunResult: ...


#: Rows with these statuses count as finished: a resume skips them. Failed tasks run again.
FINISHED = ("done", "degraded")

#: The collector's first threshold while a batch runs (Python's default is 700).
GC_THRESHOLD = 10_000
_batches = 0  # batches running in this process
_saved_threshold: tuple[int, int, int] | None = None


@contextmanager
def fewer_collections() -> Iterator[None]:
    """Let the cyclic garbage collector run less often while batches run: at the default
    threshold it took a quarter of a 1,000-task batch's CPU (reference counting still frees
    almost everything at once). The old threshold is back when the last batch ends."""
    global _batches, _saved_threshold
    if _batches == 0:
        saved = gc.get_threshold()
        if 0 < saved[0] < GC_THRESHOLD:
            _saved_threshold = saved
            gc.set_threshold(GC_THRESHOLD, saved[1], saved[2])
    _batches += 1
    try:
        yield
    finally:
        _batches -= 1
        if _batches == 0 and _saved_threshold is not None:
            if gc.get_threshold()[0] == GC_THRESHOLD:
                gc.set_threshold(*_saved_threshold)
            _saved_threshold = None


@dataclass(slots=True)
class BatchSummary:
    total: int
    done: int = 0
    failed: int = 0
    skipped: int = 0
    usage: Usage = Usage()
    cost: float = 0.0
    started: float = field(default_factory=time.perf_counter)
    duration: float = 0.0
    stopped: str | None = None  # why the batch stopped early (budget, interrupted)
    needed: float = 0.0  # USD the task the budget could not hold was expected to cost

    @property
    def remaining(self) -> int:
        return self.total - self.done - self.failed - self.skipped

    def as_dict(self) -> dict[str, Any]:
        counts = ("total", "done", "failed", "skipped", "remaining")
        return {
            **{k: getattr(self, k) for k in counts},
            **asdict(self.usage),
            "cost": round(self.cost, 6),
            "duration": round(self.duration, 3),
            "stopped": self.stopped,
        }


@dataclass(slots=True)
class BatchResult:
    """The results in task order (``None``: not run by this call), and the summary."""

    tasks: list[BatchTask]
    results: list[RunResult | None]
    summary: BatchSummary

    def __iter__(self) -> Iterator[RunResult | None]:
        return iter(self.results)

    def __len__(self) -> int:
        return len(self.results)

    def __getitem__(self, i: int) -> RunResult | None:
        return self.results[i]


def row_for(
    task: BatchTask, result: RunResult | None, status: str, error: str | None
) -> dict[str, Any]:
    """The JSONL line of one finished task."""
    row: dict[str, Any] = {"id": task.id, "task": task.task, "status": status}
    if result is not None:
        row.update(
            final_answer=result.final_answer,
            winner=result.winner,
            answers=result.latest_answers(),
            votes=[{"voter": v.voter, "round": v.round, "for": v.for_agent} for v in result.votes],
            rounds=result.rounds,
            usage=asdict(result.usage),
            cost=round(result.cost, 6),
            requests=result.requests,
            duration=round(result.duration, 3),
            failed_agents=result.failed_agents,
        )
    row["error"] = error
    if task.fields:
        row["fields"] = dict(task.fields)
    return row


OnRow = Callable[[dict[str, Any], BatchSummary], None]
Call = Callable[[BatchTask, Budget], Awaitable[RunResult]]


async def run_batch(
    orchestrator: Team,
    tasks: Sequence[BatchTask],
    *,
    log: ResultLog | None = None,
    concurrency: int = 8,
    strategy: str | None = None,
    max_cost: float | None = None,
    on_row: OnRow | None = None,
    summary: BatchSummary | None = None,
    call: Call | None = None,
    row_of: Callable[[BatchTask, RunResult | None, str, str | None], dict[str, Any]] = row_for,
) -> BatchResult:
    """Run ``tasks``, filling ``summary`` in place (a cancelled caller still has it). Under
    ``max_cost`` a task starts once the budget can hold its expected cost, else the batch stops
    (``stopped == "budget"``); an unwritable result raises ResultsFileError. ``call`` and
    ``row_of`` replace how a task is run and how its line reads (``massgen eval``)."""
    summary = summary if summary is not None else BatchSummary(total=len(tasks))
    results: list[RunResult | None] = [None] * len(tasks)
    budget = Budget(max_cost)
    room = asyncio.Condition()
    holding = 0  # tasks in flight that hold part of the budget
    dearest = 0.0  # the most a finished task cost

    def expected(task: BatchTask) -> float:
        seats = orchestrator.seats()
        turn = Turn("answer", task.task)
        first = sum(budget.estimate_turn(orchestrator.handles[n], turn) for n in seats)
        return max(dearest, first)

    async def admit(task: BatchTask) -> Budget | None:
        """The task's allowance, once the budget can hold it; ``None``: the budget is spent."""
        nonlocal holding
        if max_cost is None:
            return budget
        async with room:
            while True:
                need = expected(task)
                if budget.can_cover(need) and not (need == 0 and budget.exhausted):
                    holding += 1
                    return budget.allowance(need)
                if holding == 0 or summary.stopped == "budget":
                    summary.stopped = "budget"
                    summary.needed = max(summary.needed, need)
                    return None
                await room.wait()

    async def done_with(allowance: Budget) -> None:
        nonlocal holding
        if allowance is budget:
            return
        allowance.close()
        async with room:
            holding -= 1
            room.notify_all()

    async def one(i: int, task: BatchTask) -> None:
        nonlocal dearest
        result: RunResult | None
        allowance = await admit(task)
        if allowance is None:
            return
        try:
            run = call or (lambda t, b: orchestrator.arun(t.task, strategy, budget=b))
            result = await run(task, allowance)
            status, error = result.status, None
            dearest = max(dearest, result.cost)
        except BudgetExceeded as e:
            summary.stopped = "budget"
            if not getattr(e, "result", None) or not e.result.answers:  # type: ignore[attr-defined]
                return  # nothing was spent on it: leave it for a later run
            result, status, error = e.result, "failed", str(e)  # type: ignore[attr-defined]
        except MassGenError as e:
            result, status, error = getattr(e, "result", None), "failed", str(e)
        finally:
            await done_with(allowance)
        results[i] = result
        row = row_of(task, result, status, error)
        if log is not None:
            try:
                await log.commit(row)  # on disk before the task counts as done
            except asyncio.CancelledError:
                count(result, status)  # its line is written all the same
                raise
        count(result, status)
        if on_row is not None:
            on_row(row, summary)

    def count(result: RunResult | None, status: str) -> None:
        if status == "failed":
            summary.failed += 1
        else:
            summary.done += 1
        if result is not None:
            summary.usage = summary.usage + result.usage
            summary.cost += result.cost

    finished = {} if log is None else log.done
    todo = [
        (i, t) for i, t in enumerate(tasks) if finished.get(t.id, {}).get("status") not in FINISHED
    ]
    summary.skipped += len(tasks) - len(todo)
    queue = iter(todo)

    async def worker() -> None:
        for i, task in queue:  # `concurrency` of these: no task or semaphore wait per task
            await one(i, task)

    try:
        with fewer_collections():
            async with asyncio.TaskGroup() as group:
                for _ in range(min(max(1, concurrency), len(todo))):
                    group.create_task(worker())
    except asyncio.CancelledError:
        summary.stopped = "interrupted"
        raise
    except BaseExceptionGroup as errors:
        # A result that cannot be written (a full disk) stops the batch: one clear error,
        # not a group of the same one from every task that finished meanwhile.
        unwritten = errors.subgroup(ResultsFileError)
        if unwritten is None:
            raise
        summary.stopped = "unwritable"
        raise _first(unwritten) from None
    finally:
        summary.duration = time.perf_counter() - summary.started
    return BatchResult(list(tasks), results, summary)


def _first(group: BaseExceptionGroup[Any]) -> BaseException:
    first = group.exceptions[0]
    return _first(first) if isinstance(first, BaseExceptionGroup) else first
