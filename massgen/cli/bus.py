"""`massgen worker` (host a team's agents on Redis) and `massgen service` (the registry
monitor, logging what it sees), each until SIGINT or SIGTERM."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

from massgen.cli.common import Opt, Prefix, Redis, TeamFile, stop_signal, stopped
from massgen.cli.metrics import MetricsHost, MetricsPort, metrics_served

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
    lease: Annotated[
        float,
        Opt("--lease", metavar="SECONDS", help="Before a silent worker's turn goes to a replica."),
    ] = 30.0,
    metrics_port: MetricsPort = None,
    metrics_host: MetricsHost = "127.0.0.1",
) -> int:
    """Host the agents of CONFIG on Redis, so runs anywhere send them their turns."""
    import asyncio
    import logging

    from massgen.cli import team_and_bus
    from massgen.cli.logs import log_to_stderr
    from massgen.errors import ConfigError

    cfg, bus = team_and_bus(config, redis, need="a worker needs Redis to take turns from")
    assert cfg is not None and bus is not None
    if not 0 < lease < float("inf"):
        raise ConfigError("the lease must be a positive number of seconds", key="--lease")
    from massgen.distributed.worker import DRAIN_TIMEOUT, Worker
    from massgen.mas.transport import BusSettings
    from massgen.orchestrator import Orchestrator

    bus.check()
    orchestrator = Orchestrator.from_config(cfg)

    async def serve(host: Worker) -> int:
        got = stop_signal()
        async with orchestrator:  # closes the backends' connections at the end
            await host.start()
            if metrics is not None:
                metrics.watch_worker(host.hosted, host.transport, asyncio.get_running_loop())
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

    with (
        metrics_served(metrics_port, metrics_host, sys.stdout, orchestrator) as metrics,
        log_to_stderr(logging.WARNING, "%(levelname)s %(name)s: %(message)s"),
    ):
        host = Worker(
            orchestrator,
            agent or None,
            redis_url=bus.url,
            prefix=bus.prefix,
            secret=bus.secret,
            concurrency=concurrency,
            settings=BusSettings(drain_timeout=DRAIN_TIMEOUT, lease=lease),
            team=cfg.name,
            on_turn=log_turn,
            observer=metrics,
        )
        return asyncio.run(serve(host))


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


def service(
    redis: Redis = None,
    prefix: Prefix = None,
    config: Annotated[
        Path | None, Opt("--config", help="Take Redis URL and prefix from a team config.")
    ] = None,
    interval: Annotated[float, Opt("--interval", help="Seconds between checks.")] = 5.0,
    metrics_port: MetricsPort = None,
    metrics_host: MetricsHost = "127.0.0.1",
) -> int:
    """Watch the registry: mark silent agents dead, report dead letters and stuck work."""
    import asyncio
    import logging

    from redis.exceptions import RedisError

    from massgen.cli import team_and_bus
    from massgen.cli.logs import log_to_stderr
    from massgen.errors import ConfigError, TransportError
    from massgen.mas import RedisTransport
    from massgen.mas.service import MASService

    _, bus = team_and_bus(config, redis, prefix, need="the service needs Redis to watch")
    if interval <= 0:
        raise ConfigError("the interval must be positive", key="--interval")
    assert bus is not None
    bus.check()
    log = logging.getLogger("massgen.service")

    async def serve() -> int:
        transport = RedisTransport(bus.url, prefix=bus.prefix)
        await transport.connect()  # a bad URL or password stops here, before any write
        got = stop_signal()
        service = MASService(transport=transport, interval=interval)
        if metrics is not None:
            metrics.watch_inboxes(transport, asyncio.get_running_loop())
            metrics.watch_fleet(transport, asyncio.get_running_loop())
        print(f"service watching {bus.where} (prefix {bus.prefix})", flush=True)
        known: dict[tuple[str, str], str] = {}
        try:
            while not got.done():
                try:
                    await service.check()  # marks dead agents, logs dead letters, stuck inboxes
                    live = {
                        (r.id, r.instance_id): f"{r.host} pid {r.pid}"
                        for r in await transport.discover()
                    }
                except (TransportError, RedisError) as e:  # inbox stats are not mapped to ours
                    log.warning("check failed, retrying: %s", e)
                else:
                    for key in live.keys() - known.keys():
                        log.info("agent %s joined (%s)", key[0], live[key])
                    for key in known.keys() - live.keys():
                        log.info("agent %s left (%s)", key[0], known[key])
                    known = live
                await asyncio.wait([got], timeout=interval)
        finally:
            await transport.close()
        name, code = stopped(got)
        log.info("service stopped (%s)", name)
        return code

    with (
        metrics_served(metrics_port, metrics_host, sys.stdout) as metrics,
        log_to_stderr(logging.INFO, "%(asctime)s %(message)s"),
    ):
        return asyncio.run(serve())
