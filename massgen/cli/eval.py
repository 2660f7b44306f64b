"""`massgen eval`: run each method (single agents, self-consistency, vote, consensus, MoA)
on questions with known answers; print the table, write the results, the report and its
chart. Resumable like `massgen batch` (one results line per question and method)."""

from __future__ import annotations

import gc
import json
import sys
from pathlib import Path
from typing import Annotated, Any

from massgen.cli.common import (
    DEGRADED,
    FAILED,
    OK,
    Arg,
    MaxCost,
    Opt,
    Quiet,
    TeamFile,
    results_log,
    run_logged,
)

DataFile = Annotated[
    Path, Arg(help="Questions: .jsonl, .json or .csv with question and answer (docs/eval.md).")
]


def eval_(
    config: TeamFile,
    data: DataFile,
    methods: Annotated[
        str,
        Opt(
            "--methods",
            "-m",
            help="Comma-separated: single, single:AGENT, vote, consensus, moa, "
            "self-consistency[:AGENT].",
        ),
    ] = "single,vote,consensus,moa,self-consistency",
    limit: Annotated[int | None, Opt("--limit", "-n", help="Only the first N questions.")] = None,
    seed: Annotated[int, Opt("--seed", help="The team's seed (every method gets the same).")] = 0,
    concurrency: Annotated[int, Opt("--concurrency", "-j", help="Runs in flight.")] = 8,
    max_cost: MaxCost = None,
    out: Annotated[
        Path | None,
        Opt(
            "--out",
            "-o",
            help="Folder for results, report and chart (default: ./NAME.eval/ for DATA "
            "named NAME.jsonl, in the current folder).",
        ),
    ] = None,
    resume: Annotated[
        bool, Opt("--resume", help="Keep the finished runs of --out and do only the rest.")
    ] = False,
    equal_compute: Annotated[
        bool,
        Opt(
            "--equal-compute",
            help="Sampling methods draw as many answers as consensus may ask for.",
        ),
    ] = False,
    judge: Annotated[
        str | None, Opt("--judge", metavar="AGENT", help="The agent that grades `judge` questions.")
    ] = None,
    samples: Annotated[
        int | None,
        Opt("--samples", "-k", help="Self-consistency samples (default: the team's size)."),
    ] = None,
    bootstrap: Annotated[
        bool, Opt("--bootstrap", help="Percentile bootstrap intervals instead of Wilson's.")
    ] = False,
    confidence: Annotated[
        float, Opt("--confidence", help="Of every interval (default 0.95).")
    ] = 0.95,
    json_out: Annotated[bool, Opt("--json", help="Print the report as JSON, not a table.")] = False,
    quiet: Quiet = False,
) -> int:
    """Does the team beat one model? Compare methods on DATA with the team in CONFIG."""
    from massgen.batch import BatchSummary
    from massgen.budget import check_limit
    from massgen.config import load
    from massgen.display.batch import PlainBatchView, RichBatchView
    from massgen.errors import ConfigError
    from massgen.eval import build_report, load_items, parse_methods
    from massgen.eval.chart import page, write_png
    from massgen.eval.runner import EvalRun
    from massgen.orchestrator import Orchestrator
    from massgen.record import config_digest

    for value, key in ((concurrency, "--concurrency"), (limit, "--limit"), (samples, "--samples")):
        if value is not None and value < 1:
            raise ConfigError("must be at least 1", key=key)
    if not 0 < confidence < 1:
        raise ConfigError("must be between 0 and 1", key="--confidence", hint="e.g. 0.99")
    max_cost = check_limit(max_cost, "--max-cost")
    cfg = load(config)
    items = load_items(data, limit=limit)
    folder = out or Path(data.stem + ".eval")  # where you are, not among the data
    if folder.exists() and not folder.is_dir():
        raise ConfigError("is a file; give a folder", file=str(folder), key="--out")
    # Every request is sent: a cached reply costs nothing and would be the same draw again.
    team = Orchestrator.from_config(cfg, max_cost=max_cost, seed=seed, cache_enabled=False)
    check_limit(team.max_cost, "orchestrator.max_cost")
    chosen = parse_methods(methods, team.seats(), team.config.aggregator)
    plan = EvalRun(team, items, chosen, judge=judge, samples=samples, equal_compute=equal_compute)
    fingerprint = {
        "config": config_digest(config),
        "data": config_digest(data),
        "seed": seed,
        "samples": samples,
        "equal_compute": equal_compute,
        "judge": judge,
    }
    results = folder / "results.jsonl"
    log = results_log(results, "eval", resume=resume, fingerprint=fingerprint)
    tasks = len(items) * len(chosen)
    view: Any = None
    if not quiet:
        names = ", ".join(m.name for m in chosen)
        what = f"{len(items)} questions x {len(chosen)} methods = {tasks} runs ({names})"
        done = sum(r.get("status") in ("done", "degraded") for r in log.done.values())
        tty = sys.stderr.isatty()
        view = (
            RichBatchView(tasks, done, "eval", what) if tty else PlainBatchView(tasks, "eval", what)
        )
    summary = BatchSummary(total=tasks)
    rows: list[dict[str, Any]] = []

    async def main() -> None:
        async with team:
            rows.extend(
                await plan.run(
                    log=log,
                    concurrency=concurrency,
                    max_cost=team.max_cost,
                    on_row=view,
                    summary=summary,
                )
            )

    gc.freeze()
    run_logged(main, log, view, summary, "eval", "add --resume to the same command")
    meta = {"config": str(config), "data": str(data), "seed": seed, "equal_compute": equal_compute}
    if equal_compute:
        meta["requests_per_question"] = plan.runner.budget
    report = build_report(
        rows,
        [m.name for m in chosen],
        interval="bootstrap" if bootstrap else "wilson",
        seed=seed,
        meta=meta,
        confidence=confidence,
    )
    (folder / "report.json").write_text(json.dumps(report.to_dict(), indent=2) + "\n")
    (folder / "report.md").write_text(report.markdown())
    (folder / "chart.html").write_text(page(report, f"massgen eval: {data.name}"))
    png = write_png(report, folder / "chart.png")
    if json_out:
        print(json.dumps(report.to_dict()))
    else:
        print(report.markdown(), end="")
    wrote = "report.json, report.md, chart.html" + (", chart.png" if png else "")
    print(f"eval: {results}; {wrote} in {folder}", file=sys.stderr)
    if summary.stopped == "budget":
        left = summary.remaining
        print(
            f"error: the cost budget of ${team.max_cost} is spent; {left} runs not done "
            "(the report counts the questions every method finished)",
            file=sys.stderr,
        )
        return FAILED
    return DEGRADED if summary.failed else OK
