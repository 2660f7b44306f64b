"""`massgen run`: load the team, run the task, show progress, print the answer."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

from massgen.cli.exits import DEGRADED, FAILED, INTERRUPTED, OK, run_until_done
from massgen.cli.options import Arg, MaxCost, NoCache, Opt, Quiet, Redis, Strategy, TeamFile

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
) -> int:
    """Run TASK with the team in CONFIG; print the final answer on stdout."""
    from massgen.config import load
    from massgen.distributed.target import BusTarget
    from massgen.errors import ConfigError, Interrupted
    from massgen.orchestrator import Orchestrator

    task = (sys.stdin.read() if task == "-" else task).strip()
    if not task:
        raise ConfigError(
            "the task is empty", key="TASK", hint='pass it as text, or "-" to read stdin'
        )
    cfg = load(config)
    bus = BusTarget.resolve(redis, cfg)
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
        result = run_until_done(main)
    except Interrupted:
        if recorder is not None and recorder.written:
            print(f"partial run record: {recorder.written}", file=sys.stderr)
        if getattr(view, "ended", False):
            return INTERRUPTED  # its summary line already says "interrupted: ..."
        raise
    finally:
        if (close := getattr(view, "close", None)) is not None:
            close()
    if json_out:
        import json

        print(json.dumps(result.to_dict(), ensure_ascii=False, default=str))
    elif not view_shows_final:
        print(result.final_answer)
    sys.stdout.flush()
    if recorder is not None and recorder.failed:
        print(f"error: the run record was not written: {recorder.failed}", file=sys.stderr)
        return FAILED
    return DEGRADED if result.degraded else OK
