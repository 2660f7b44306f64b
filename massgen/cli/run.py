"""`massgen run` (one task: load the team, run it, show progress, print the answer) and
`massgen batch` (many tasks, one team, a resumable JSONL of results)."""

from __future__ import annotations

import gc
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from massgen.cli.common import (
    DEGRADED,
    FAILED,
    INTERRUPTED,
    OK,
    Arg,
    FindConfig,
    MaxCost,
    NoCache,
    Opt,
    Quiet,
    Redis,
    Strategy,
    TeamFile,
    results_log,
    run_logged,
    run_until_done,
)
from massgen.cli.metrics import MetricsHost, MetricsPort, metrics_served

if TYPE_CHECKING:
    from massgen.events import Subscriber
    from massgen.result import RunResult


def make_view(quiet: bool) -> tuple[Subscriber | None, bool]:
    """The progress view for stderr, and whether it shows the final answer itself."""
    if quiet:
        return None, False
    if sys.stderr.isatty():
        from massgen.display.live import LiveView

        shows_final = sys.stdout.isatty()  # the panel is the answer: don't print it twice
        return LiveView(show_final=shows_final), shows_final
    from massgen.display.plain import PlainView

    return PlainView(), False


def run(
    config: TeamFile,
    task: Annotated[str, Arg(help="The task; '-' reads it from stdin.")],
    strategy: Strategy = None,
    json_out: Annotated[
        bool, Opt("--json", help="Print the whole result as JSON on stdout.")
    ] = False,
    quiet: Quiet = False,
    record: Annotated[
        Path | None, Opt("--record", help="Where to write the run record (JSON).")
    ] = None,
    no_record: Annotated[bool, Opt("--no-record", help="Do not write a run record.")] = False,
    redis: Redis = None,
    no_cache: NoCache = False,
    max_cost: MaxCost = None,
    session: Annotated[
        str | None,
        Opt(
            "--session",
            metavar="NAME",
            help="Continue session NAME: each agent remembers its earlier runs in it.",
        ),
    ] = None,
    metrics_port: MetricsPort = None,
    metrics_host: MetricsHost = "127.0.0.1",
) -> int:
    """Run TASK with the team in CONFIG; print the final answer on stdout."""
    from massgen.cli import team_and_bus
    from massgen.errors import ConfigError, Interrupted, RunError
    from massgen.orchestrator import Orchestrator

    task = (sys.stdin.read() if task == "-" else task).strip()
    if not task:
        hint = 'pass it as text, or "-" to read stdin'
        raise ConfigError("the task is empty", key="TASK", hint=hint)
    cfg, bus = team_and_bus(config, redis)
    assert cfg is not None
    if bus is not None:
        bus.check()  # before anything is built or written
    off = False if no_cache else None  # None: as the config says
    orchestrator = Orchestrator.from_config(
        cfg, strategy=strategy, max_cost=max_cost, session=session, cache_enabled=off
    )
    recorder = None
    if not no_record:
        from massgen.record import RunRecorder

        recorder = RunRecorder(path=record, config_path=config)
        recorder.check()  # before the run: an unwritable --record is a usage error
    view, view_shows_final = make_view(quiet or json_out and not sys.stderr.isatty())
    orchestrator.subscribers.extend(s for s in (recorder, view) if s is not None)

    async def main() -> RunResult:
        async with orchestrator:
            if bus is None:
                return await orchestrator.arun(task)
            from massgen.distributed.connect import distributed

            async with distributed(
                orchestrator, bus.url, prefix=bus.prefix, secret=bus.secret
            ) as on:
                if not quiet:
                    print(f"massgen: {on.describe()}", file=sys.stderr, flush=True)
                return await orchestrator.arun(task)

    try:
        with metrics_served(metrics_port, metrics_host, sys.stderr, orchestrator):
            result = run_until_done(main)
    except Interrupted:
        if recorder is not None and recorder.written:
            print(f"partial run record: {recorder.written}", file=sys.stderr)
        if getattr(view, "ended", False):
            return INTERRUPTED  # its summary line already says "interrupted: ..."
        raise
    except RunError as e:
        if json_out and (failed := getattr(e, "result", None)) is not None:
            print_json(failed)  # a script reads the failed run's result too; stderr says why
        raise
    finally:
        if (close := getattr(view, "close", None)) is not None:
            close()
    if json_out:
        print_json(result)
    elif not view_shows_final:
        print(result.final_answer)
    sys.stdout.flush()
    if recorder is not None and recorder.failed:
        print(f"error: the run record was not written: {recorder.failed}", file=sys.stderr)
        return FAILED
    return DEGRADED if result.degraded else OK


def print_json(result: RunResult) -> None:
    import json

    print(json.dumps(result.to_dict(), ensure_ascii=False, default=str), flush=True)


def batch(
    tasks: Annotated[Path, Arg(help="Tasks: .txt (one per line), .jsonl or .csv.")],
    config: FindConfig = None,
    out: Annotated[
        Path | None,
        Opt("--out", "-o", help="Results JSONL (default: tasks.txt -> tasks.results.jsonl)."),
    ] = None,
    concurrency: Annotated[int, Opt("--concurrency", "-j", help="Tasks in flight.")] = 8,
    strategy: Strategy = None,
    no_resume: Annotated[
        bool, Opt("--no-resume", help="Start over (the old results file is moved aside).")
    ] = False,
    max_cost: MaxCost = None,
    no_cache: NoCache = False,
    quiet: Quiet = False,
    metrics_port: MetricsPort = None,
    metrics_host: MetricsHost = "127.0.0.1",
) -> int:
    """Run every task in TASKS; one JSON line per finished task; a re-run resumes."""
    # Every input is checked (flags, config, tasks, the results path) before any file is
    # touched; then the results file is locked, read (or moved aside) and appended to.
    from massgen.batch import BatchSummary, run_batch
    from massgen.batch.files import read_task_file
    from massgen.budget import check_limit
    from massgen.cli import CONFIG_ENV, find_config
    from massgen.config import load
    from massgen.display.batch import PlainBatchView, RichBatchView
    from massgen.display.batch import tasks as task_count
    from massgen.distributed.target import BusTarget
    from massgen.errors import ConfigError
    from massgen.orchestrator import Orchestrator
    from massgen.record import config_digest

    if concurrency < 1:  # our one-line error, as docs/batch.md says, not click's usage text
        raise ConfigError("must be at least 1", key="--concurrency")
    max_cost = check_limit(max_cost, "--max-cost")
    config_path = find_config(config)
    if config_path is None:
        message = "no team config given, and there is no massgen.yaml here"
        hint = f"pass --config team.yaml, set {CONFIG_ENV}, or create massgen.yaml"
        raise ConfigError(message, key="--config", hint=hint)
    cfg = load(config_path)
    # The cache and shared limits live on the team's Redis, if it has one.
    if cfg.redis is not None and (shared := BusTarget.resolve(None, cfg)) is not None:
        shared.check()
    listed = read_task_file(tasks)
    items = listed.tasks
    if not items:  # a wrong file, or its tasks commented out: say so rather than "done"
        dropped = f" (only {listed.describe_dropped()})" if listed.describe_dropped() else ""
        hint = "one task per line in .txt, a `task` key per line in .jsonl, a `task` column in .csv"
        raise ConfigError(f"holds no task{dropped}", file=str(tasks), hint=hint)
    out = out or tasks.with_name(tasks.stem + ".results.jsonl")
    if out.is_dir():
        raise ConfigError("is a folder; give a file name", file=str(out), key="--out")
    for other, what in ((tasks, "task file"), (config_path, "team config")):
        if out.resolve() == other.resolve():
            raise ConfigError(f"is the {what}; results need a file of their own", key="--out")
    off = False if no_cache else None  # None: as the config says
    orchestrator = Orchestrator.from_config(
        cfg, strategy=strategy, max_cost=max_cost, cache_enabled=off
    )
    check_limit(orchestrator.max_cost, "orchestrator.max_cost")
    fingerprint = {
        "config": config_digest(config_path),
        "strategy": strategy or orchestrator.strategy,
    }
    log = results_log(out, "batch", resume=not no_resume, fingerprint=fingerprint)
    what = ""
    if dropped := listed.describe_dropped():
        what = f"{tasks}: {task_count(len(items))}; not tasks: {dropped}"
    view: Any = None
    if not quiet:
        done = sum(log.done.get(t.id, {}).get("status") in ("done", "degraded") for t in items)
        if sys.stderr.isatty():
            view = RichBatchView(len(items), done, what=what)
        else:
            view = PlainBatchView(len(items), what=what)
    elif what:
        print(f"batch: {what}", file=sys.stderr)

    async def main() -> None:
        # Returns nothing: asyncio.run's clean-up formats the main task's repr (its result
        # included) when it restores the SIGINT handler, and a batch's results are large.
        async with orchestrator:
            await run_batch(
                orchestrator,
                items,
                log=log,
                concurrency=concurrency,
                strategy=strategy,
                max_cost=orchestrator.max_cost,
                on_row=view,
                summary=summary,
            )

    summary = BatchSummary(total=len(items))
    # Everything made so far (modules, config, the tasks) lives until exit: out of the
    # collector's way, so the collections a batch still needs do not walk it each time.
    gc.freeze()
    with metrics_served(metrics_port, metrics_host, sys.stderr, orchestrator):
        run_logged(main, log, view, summary, "batch", "run the same command again")
    print(str(out))
    if summary.stopped != "budget":
        return DEGRADED if summary.failed else OK
    what = f"is spent; {summary.remaining} tasks not run"
    if summary.done + summary.failed == 0 and summary.cost == 0 and summary.needed:
        what = f"cannot cover one task (estimated ${summary.needed:.6f}); {summary.remaining} "
        what += "tasks not run\n  hint: raise --max-cost, or set max_tokens on the agents (a "
        what += "request without it is assumed to answer at length)"
    print(f"error: the cost budget of ${orchestrator.max_cost} {what}", file=sys.stderr)
    return FAILED
