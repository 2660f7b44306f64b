"""`massgen worker`: host a team's agents on Redis until SIGINT or SIGTERM."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated

from massgen.cli.options import Opt, Redis, TeamFile

if TYPE_CHECKING:
    from massgen.distributed.worker import TurnReport


def worker(
    config: TeamFile,
    agent: Annotated[
        list[str] | None,
        Opt(
            "--agent", "-a", metavar="NAME", help="Host this agent (repeat; default: every agent)."
        ),
    ] = None,
    redis: Redis = None,
    concurrency: Annotated[
        int, Opt("--concurrency", "-c", metavar="N", min=1, help="Turns each agent runs at once.")
    ] = 8,
) -> int:
    """Host the agents of CONFIG on Redis, so runs anywhere send them their turns."""
    import asyncio
    import logging

    from massgen.cli import team_and_bus
    from massgen.cli.exits import stop_signal, stopped
    from massgen.cli.logs import log_to_stderr

    cfg, bus = team_and_bus(config, redis, need="a worker needs Redis to take turns from")
    assert cfg is not None and bus is not None
    from massgen.distributed.worker import Worker
    from massgen.orchestrator import Orchestrator

    bus.check()
    orchestrator = Orchestrator.from_config(cfg)
    host = Worker(
        orchestrator,
        agent or None,
        redis_url=bus.url,
        prefix=bus.prefix,
        secret=bus.secret,
        concurrency=concurrency,
        team=cfg.name,
        on_turn=log_turn,
    )

    async def serve() -> int:
        """Start, say what is hosted (one stdout line per agent), wait for a signal, stop."""
        got = stop_signal()
        async with orchestrator:  # closes the backends' connections at the end
            await host.start()
            try:
                for hosted in host.hosted:
                    meta = hosted.get_metadata()
                    kind, model = str(meta["backend"]), str(meta["model"] or "")
                    what = kind if model in ("", kind) else f"{kind} {model}"
                    print(f"hosting {hosted.id} ({what}) on {host.where}", flush=True)
                await got
            finally:
                await host.stop()
        name, code = stopped(got)
        print(f"worker stopped ({name})", file=sys.stderr, flush=True)
        return code

    with log_to_stderr(logging.WARNING, "%(levelname)s %(name)s: %(message)s"):
        return asyncio.run(serve())


def log_turn(report: TurnReport) -> None:
    """One stderr line per handled turn."""
    again = f" (delivery {report.attempt})" if report.attempt > 1 else ""
    line = f"{report.agent}: {report.phase} r{report.round} for {report.run}{again} "
    if report.error is None:
        line += f"done in {report.seconds:.2f}s"
    else:
        line += f"failed after {report.seconds:.2f}s: {report.error}"
    if report.note:
        line += f" [{report.note}]"
    print(line, file=sys.stderr, flush=True)
