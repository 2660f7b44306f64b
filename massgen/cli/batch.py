"""`massgen batch`: many tasks, one team, a resumable JSONL of results."""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import sys
from pathlib import Path
from typing import Any, overload

from massgen.cli.exits import DEGRADED, FAILED, OK
from massgen.errors import ConfigError, Interrupted

CONFIG_ENV = "MASSGEN_CONFIG"


@overload
def find_config(config: Path | None) -> Path: ...
@overload
def find_config(config: Path | None, *, required: bool) -> Path | None: ...
def find_config(config: Path | None, *, required: bool = True) -> Path | None:
    """The team config: given, else ``$MASSGEN_CONFIG``, else ``./massgen.yaml``; ``None``
    when there is none and it is not ``required``."""
    if config is not None:
        return config
    env = os.environ.get(CONFIG_ENV)
    if env:
        return Path(env)
    default = Path("massgen.yaml")
    if default.exists():
        return default
    if not required:
        return None
    raise ConfigError(
        "no team config given, and there is no massgen.yaml here",
        key="--config",
        hint=f"pass --config team.yaml, set {CONFIG_ENV}, or create massgen.yaml",
    )


def aside(path: Path) -> Path | None:
    """Move an existing results file out of the way (``--no-resume`` never deletes)."""
    if not path.exists():
        return None
    n = 1
    while (moved := path.with_name(f"{path.name}.{n}")).exists():
        n += 1
    path.rename(moved)
    return moved


def batch_command(
    tasks_file: Path,
    *,
    config: Path | None,
    out: Path | None,
    concurrency: int,
    strategy: str | None,
    resume: bool,
    max_cost: float | None,
    no_cache: bool,
    quiet: bool,
) -> int:
    from massgen.batch import BatchSummary, ResultLog, read_tasks, run_batch
    from massgen.config import load
    from massgen.display.batch import describe
    from massgen.orchestrator import Orchestrator

    if concurrency < 1:
        raise ConfigError("must be at least 1", key="--concurrency")
    cfg = load(find_config(config))
    tasks = read_tasks(tasks_file)
    out = out or tasks_file.with_name(tasks_file.stem + ".results.jsonl")
    if not resume and (moved := aside(out)) is not None:
        print(f"batch: previous results moved to {moved}", file=sys.stderr)
    overrides: dict[str, Any] = {"strategy": strategy, "max_cost": max_cost}
    if no_cache:
        overrides["cache_enabled"] = False
    orchestrator = Orchestrator.from_config(cfg, **overrides)
    log = ResultLog(out, resume=True)
    todo = sum(1 for t in tasks if log.done.get(t.id, {}).get("status") not in ("done", "degraded"))
    view: Any = None
    if not quiet:
        if sys.stderr.isatty():
            from massgen.display.batch import RichBatchView

            view = RichBatchView(len(tasks), len(tasks) - todo)
        else:
            from massgen.display.batch import PlainBatchView

            view = PlainBatchView(len(tasks))

    async def main() -> None:
        # Returns nothing: asyncio.run's clean-up formats the main task's repr (its result
        # included) when it restores the SIGINT handler, and a batch's results are large.
        me = asyncio.current_task()
        if me is not None:
            asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, me.cancel)
        async with orchestrator:
            await run_batch(
                orchestrator,
                tasks,
                log=log,
                concurrency=concurrency,
                strategy=strategy,
                max_cost=orchestrator.max_cost,
                on_row=view,
                summary=summary,
            )

    summary = BatchSummary(total=len(tasks))
    # Everything made so far (modules, config, the tasks) lives until exit: out of the
    # collector's way, so the collections a batch still needs do not walk it each time.
    gc.freeze()
    try:
        asyncio.run(main())
    except (KeyboardInterrupt, asyncio.CancelledError):
        summary.stopped = "interrupted"
        if view is not None:
            view.close(summary)
        print(
            f"batch interrupted: {describe(summary)}; finished tasks are kept in {out}, "
            "run the same command again to resume",
            file=sys.stderr,
        )
        raise Interrupted("interrupted") from None
    finally:
        log.close()
    if view is not None:
        view.close(summary)
    print(str(out))
    if summary.stopped == "budget":
        print(
            f"error: the cost budget of ${orchestrator.max_cost} is spent; "
            f"{summary.remaining} tasks not run",
            file=sys.stderr,
        )
        return FAILED
    return DEGRADED if summary.failed else OK
