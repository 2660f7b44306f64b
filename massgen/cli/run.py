"""`massgen run`: load the team, run the task, show progress, print the answer."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from massgen.cli.exits import DEGRADED, FAILED, INTERRUPTED, OK
from massgen.errors import ConfigError, Interrupted
from massgen.events import Subscriber
from massgen.result import RunResult

if TYPE_CHECKING:
    from massgen.distributed.target import BusTarget


def read_task(task: str) -> str:
    if task == "-":
        task = sys.stdin.read()
    task = task.strip()
    if not task:
        raise ConfigError(
            "the task is empty", key="TASK", hint='pass it as text, or "-" to read stdin'
        )
    return task


def make_view(quiet: bool) -> tuple[Subscriber | None, bool]:
    """The progress view for stderr, and whether it shows the final answer itself."""
    if quiet:
        return None, False
    if sys.stderr.isatty():
        from massgen.display.live import LiveView

        # When stdout is the same terminal, the panel is the answer; don't print it twice.
        shows_final = sys.stdout.isatty()
        return LiveView(show_final=shows_final), shows_final
    from massgen.display.plain import PlainView

    return PlainView(), False


def run_command(
    config: Path,
    task: str,
    *,
    strategy: str | None,
    json_out: bool,
    quiet: bool,
    record: Path | None,
    no_record: bool,
    redis: str | None = None,
    no_cache: bool = False,
    max_cost: float | None = None,
    session: str | None = None,
) -> int:
    from massgen.config import load
    from massgen.distributed.target import BusTarget
    from massgen.orchestrator import Orchestrator
    from massgen.record import RunRecorder

    task = read_task(task)
    cfg = load(config)
    bus = BusTarget.resolve(redis, cfg)
    if bus is not None:
        bus.check()  # before anything is built or written
    overrides: dict[str, object] = {
        "strategy": strategy,
        "max_cost": max_cost,
        "session": session,
    }
    if no_cache:
        overrides["cache_enabled"] = False
    orchestrator = Orchestrator.from_config(cfg, **overrides)
    recorder = None if no_record else RunRecorder(path=record, config_path=config)
    if recorder is not None:
        recorder.check()  # before the run: an unwritable --record is a usage error
    view, view_shows_final = make_view(quiet or json_out and not sys.stderr.isatty())
    orchestrator.subscribers.extend(s for s in (recorder, view) if s is not None)
    try:
        result = _run(orchestrator, task, bus, quiet=quiet)
    except Interrupted:
        if recorder is not None and recorder.written:
            print(f"partial run record: {recorder.written}", file=sys.stderr)
        if getattr(view, "ended", False):
            return INTERRUPTED  # its summary line already says "interrupted: ..."
        raise
    finally:
        close = getattr(view, "close", None)
        if close:
            close()
    if json_out:
        print(json.dumps(result.to_dict(), ensure_ascii=False, default=str))
    elif not view_shows_final:
        print(result.final_answer)
    sys.stdout.flush()
    if recorder is not None and recorder.failed:
        print(f"error: the run record was not written: {recorder.failed}", file=sys.stderr)
        return FAILED
    return DEGRADED if result.degraded else OK


def _run(
    orchestrator: object, task: str, bus: BusTarget | None = None, *, quiet: bool = False
) -> RunResult:
    from massgen.orchestrator import Orchestrator

    assert isinstance(orchestrator, Orchestrator)

    async def main() -> RunResult:
        me = asyncio.current_task()
        loop = asyncio.get_running_loop()
        if me is not None:
            loop.add_signal_handler(signal.SIGTERM, me.cancel)
        async with orchestrator:
            if bus is None:
                return await orchestrator.arun(task)
            from massgen.distributed.connect import distributed

            async with distributed(
                orchestrator, bus.url, prefix=bus.prefix, secret=bus.secret
            ) as placement:
                if not quiet:
                    print(f"massgen: {placement.describe()}", file=sys.stderr, flush=True)
                return await orchestrator.arun(task)

    try:
        return asyncio.run(main())
    except (KeyboardInterrupt, asyncio.CancelledError):
        raise Interrupted("interrupted") from None


__all__ = ["INTERRUPTED", "run_command"]
