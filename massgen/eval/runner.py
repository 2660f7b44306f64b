"""Run every method on every question through the batch runner: one task, and one results
line, per (question, method), so an eval is resumable, crash-safe, bounded in concurrency
and cost exactly as ``massgen batch`` is. Questions go in order, each one's methods side by
side, so a stop (budget, Ctrl-C) leaves whole questions, which is what paired tests need."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from massgen.batch import BatchSummary, BatchTask, ResultLog
from massgen.batch.runner import OnRow, run_batch
from massgen.budget import Budget
from massgen.errors import BudgetExceeded, ConfigError, MassGenError
from massgen.eval.grading import check, judge_prompt, read_answer, read_verdict
from massgen.eval.methods import DEFAULT_METHODS, Method, Methods, Team, parse_methods, with_options
from massgen.eval.report import EvalReport, build_report
from massgen.questions import JUDGE, EvalItem, load_items, parse_row
from massgen.result import RunResult


def row_id(item: EvalItem, method: Method) -> str:
    return f"{item.id}|{method.name}"


@dataclass(slots=True)
class EvalRun:
    """What one eval runs: the team, the questions, the methods and how."""

    team: Team
    items: Sequence[EvalItem]
    methods: Sequence[Method]
    judge: str | None = None
    samples: int | None = None
    equal_compute: bool = False
    runner: Methods = field(init=False)
    _items: dict[str, EvalItem] = field(init=False)
    _methods: dict[str, Method] = field(init=False)
    _graded: dict[str, dict[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.judge is not None and self.judge not in self.team.agents:
            hint = "agents: " + ", ".join(self.team.agents)
            raise ConfigError(f"no agent {self.judge!r} in the team", key="--judge", hint=hint)
        judged = next((i for i in self.items if i.grader == JUDGE), None)
        if judged is not None and self.judge is None:
            message = f"question {judged.id!r} is graded by a judge, and no --judge is given"
            raise ConfigError(
                message, key="--judge", hint="name the agent that judges: --judge AGENT"
            )
        self.runner = Methods(self.team, samples=self.samples, equal_compute=self.equal_compute)
        self._items = {i.id: i for i in self.items}
        self._methods = {m.name: m for m in self.methods}

    def tasks(self) -> list[BatchTask]:
        return [
            BatchTask(row_id(i, m), i.prompt, {"question": i.id, "method": m.name})
            for i in self.items
            for m in self.methods
        ]

    def _find(self, task: BatchTask) -> tuple[EvalItem, Method]:
        return self._items[task.fields["question"]], self._methods[task.fields["method"]]

    async def call(self, task: BatchTask, budget: Budget) -> RunResult:
        """Run one method on one question and grade it (the judge, if any, is asked now,
        under the same allowance; its cost is the row's ``judge_cost``)."""
        item, method = self._find(task)
        try:
            result = await self.runner.run(method, item, budget)
        except BudgetExceeded:
            self._graded[task.id] = {"stopped": "budget"}  # not counted: --resume redoes it
            raise
        graded: dict[str, Any] = {}
        if (agreement := result.agreement(len(self.runner.seats))) is not None:
            graded["agreement"] = agreement
        if result.distribution:
            graded["distribution"] = result.distribution
        if item.grader == JUDGE and self.judge is not None:
            graded.update(await self._judged(item, result.final_answer, budget))
        else:
            verdict = check(item, result.final_answer)
            graded.update(correct=verdict.correct, extracted=verdict.extracted)
        self._graded[task.id] = graded
        return result

    async def _judged(self, item: EvalItem, reply: str, budget: Budget) -> dict[str, Any]:
        assert self.judge is not None
        out: dict[str, Any] = {"extracted": read_answer(item, reply)}
        if not reply.strip():
            return {**out, "correct": False}
        try:
            run = await self.runner.judge(self.judge, judge_prompt(item, reply), budget)
        except MassGenError as e:
            spent = getattr(e, "result", None)
            cost = spent.cost if isinstance(spent, RunResult) else 0.0
            return {**out, "correct": False, "judge_cost": cost, "judge_error": str(e)}
        verdict = read_verdict(run.final_answer)
        out.update(
            correct=verdict is True, judge_cost=round(run.cost, 8), judge_requests=run.requests
        )
        if verdict is None:
            out["judge_error"] = 'the judge\'s reply is not {"correct": true|false}'
        return out

    def row(
        self, task: BatchTask, result: RunResult | None, status: str, error: str | None
    ) -> dict[str, Any]:
        item, method = self._find(task)
        graded = self._graded.pop(task.id, {})
        row: dict[str, Any] = {
            "id": task.id,
            "question": item.id,
            "method": method.name,
            "status": status,
            "correct": bool(graded.get("correct", False)) and status != "failed",
            "extracted": graded.get("extracted"),
            "gold": item.gold,
        }
        if result is not None:
            row.update(
                final_answer=result.final_answer,
                answers=result.latest_answers(),
                requests=result.requests,
                prompt_tokens=result.usage.input_tokens,
                completion_tokens=result.usage.output_tokens,
                cost=round(result.cost, 8),
                latency=round(result.duration, 4),
                rounds=result.rounds,
                failed_agents=result.failed_agents,
            )
        row.update({k: v for k, v in graded.items() if k not in ("correct", "extracted")})
        row["error"] = error
        return row

    async def run(
        self,
        *,
        log: ResultLog | None = None,
        concurrency: int = 8,
        max_cost: float | None = None,
        on_row: OnRow | None = None,
        summary: BatchSummary | None = None,
    ) -> list[dict[str, Any]]:
        """Every (question, method) not finished in ``log``; all rows known, in task order."""
        tasks = self.tasks()
        seen: dict[str, dict[str, Any]] = {}

        def keep(row: dict[str, Any], s: BatchSummary) -> None:
            seen[row["id"]] = row
            if on_row is not None:
                on_row(row, s)

        await run_batch(
            self.team,
            tasks,
            log=log,
            concurrency=concurrency,
            max_cost=max_cost,
            on_row=keep,
            summary=summary,
            call=self.call,
            row_of=self.row,
        )
        known = {**(log.done if log is not None else {}), **seen}
        return [known[t.id] for t in tasks if t.id in known]


async def evaluate(
    team: Team,
    items: Sequence[EvalItem],
    methods: Sequence[Method],
    *,
    out: str | Path | None = None,
    resume: bool = True,
    concurrency: int = 8,
    max_cost: float | None = None,
    judge: str | None = None,
    samples: int | None = None,
    equal_compute: bool = False,
    on_row: OnRow | None = None,
    summary: BatchSummary | None = None,
    fingerprint: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Run the eval, its rows written to ``out`` (JSONL) if given; the rows."""
    plan = EvalRun(team, items, methods, judge=judge, samples=samples, equal_compute=equal_compute)
    opened = ResultLog(out, resume=resume, fingerprint=fingerprint) if out is not None else None
    with opened if opened is not None else nullcontext():
        return await plan.run(
            log=opened, concurrency=concurrency, max_cost=max_cost, on_row=on_row, summary=summary
        )


def eval_team(orchestrator: Team) -> Team:
    """``orchestrator``'s agents with the response cache off (every request is a fresh draw,
    priced as sent), sharing its agents, guards and seed."""
    if not orchestrator.config.cache.enabled:
        return orchestrator
    config = with_options(orchestrator.config, cache_enabled=False)
    cls: Any = type(orchestrator)
    team = cls(list(orchestrator.agents.values()), config, seed=orchestrator.seed)
    team.guards = getattr(orchestrator, "guards", {})
    team.observability = None  # never closed: its own tracer would not be flushed
    return team


async def assess(
    orchestrator: Team,
    data: str | Path | Sequence[EvalItem | Mapping[str, Any]],
    methods: str | Sequence[str] = DEFAULT_METHODS,
    *,
    limit: int | None = None,
    interval: str = "wilson",
    confidence: float = 0.95,
    **options: Any,
) -> EvalReport:
    """Load ``data``, run ``methods`` on it with ``orchestrator``'s team, report (intervals of
    ``confidence``)."""
    if not 0 < confidence < 1:
        raise ConfigError("must be between 0 and 1", key="confidence", hint="e.g. 0.99")
    if isinstance(data, str | Path):
        items = load_items(data, limit=limit)
    else:
        given = [
            d if isinstance(d, EvalItem) else parse_row(d, line=n) for n, d in enumerate(data, 1)
        ]
        items = given[:limit] if limit is not None else given
    team = eval_team(orchestrator)
    chosen = parse_methods(methods, team.seats(), team.config.aggregator)
    rows = await evaluate(team, items, chosen, **options)
    names = [m.name for m in chosen]
    seed = orchestrator.seed
    return build_report(rows, names, interval=interval, seed=seed, confidence=confidence)
