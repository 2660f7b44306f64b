"""`massgen worker`: host a team's agents on Redis until SIGINT or SIGTERM."""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from massgen.cli.exits import stop_signal, stopped
from massgen.cli.logs import log_to_stderr

if TYPE_CHECKING:
    from massgen.distributed.worker import TurnReport, Worker
    from massgen.orchestrator import Orchestrator


def worker_command(
    config: Path, agent: list[str] | None, *, redis: str | None, concurrency: int
) -> int:
    from massgen.cli import team_and_bus

    cfg, bus = team_and_bus(config, redis, need="a worker needs Redis to take turns from")
    assert cfg is not None and bus is not None
    from massgen.distributed.worker import Worker
    from massgen.orchestrator import Orchestrator

    bus.check()
    orchestrator = Orchestrator.from_config(cfg)
    worker = Worker(
        orchestrator,
        agent or None,
        redis_url=bus.url,
        prefix=bus.prefix,
        secret=bus.secret,
        concurrency=concurrency,
        team=cfg.name,
        on_turn=log_turn,
    )
    with log_to_stderr(logging.WARNING, "%(levelname)s %(name)s: %(message)s"):
        return asyncio.run(serve(worker, orchestrator))


async def serve(worker: Worker, orchestrator: Orchestrator) -> int:
    """Start, say what is hosted (one stdout line per agent), wait for a signal, stop."""
    got = stop_signal()
    async with orchestrator:  # closes the backends' connections at the end
        await worker.start()
        try:
            for agent in worker.hosted:
                meta = agent.get_metadata()
                kind = str(meta["backend"])
                model = str(meta["model"] or "")
                what = kind if model in ("", kind) else f"{kind} {model}"
                print(f"hosting {agent.id} ({what}) on {worker.where}", flush=True)
            await got
        finally:
            await worker.stop()
    name, code = stopped(got)
    print(f"worker stopped ({name})", file=sys.stderr, flush=True)
    return code


def log_turn(report: TurnReport) -> None:
    """One stderr line per handled turn."""
    again = f" (delivery {report.attempt})" if report.attempt > 1 else ""
    head = f"{report.agent}: {report.phase} r{report.round} for {report.run}{again}"
    if report.error is None:
        line = f"{head} done in {report.seconds:.2f}s"
    else:
        line = f"{head} failed after {report.seconds:.2f}s: {report.error}"
    if report.note:
        line += f" [{report.note}]"
    print(line, file=sys.stderr, flush=True)
