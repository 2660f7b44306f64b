"""`massgen service`: the registry monitor, logging what it sees until SIGINT or SIGTERM."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from massgen.cli.exits import stop_signal, stopped
from massgen.errors import ConfigError, TransportError

if TYPE_CHECKING:
    from massgen.distributed.target import BusTarget

log = logging.getLogger("massgen.service")


def service_command(
    *, redis: str | None, prefix: str | None, config: Path | None, interval: float
) -> int:
    from massgen.cli import team_and_bus

    _, bus = team_and_bus(config, redis, prefix, need="the service needs Redis to watch")
    if interval <= 0:
        raise ConfigError("the interval must be positive", key="--interval")
    assert bus is not None
    bus.check()
    from massgen.cli.logs import log_to_stderr

    with log_to_stderr(logging.INFO, "%(asctime)s %(message)s"):
        return asyncio.run(_serve(bus, interval))


async def _serve(bus: BusTarget, interval: float) -> int:
    from redis.exceptions import RedisError

    from massgen.mas import RedisTransport
    from massgen.mas.service import MASService

    transport = RedisTransport(bus.url, prefix=bus.prefix)
    await transport.connect()  # a bad URL or password stops here, before anything is written
    got = stop_signal()
    service = MASService(transport=transport, interval=interval)
    print(f"service watching {bus.where} (prefix {bus.prefix})", flush=True)
    known: dict[tuple[str, str], str] = {}
    try:
        while not got.done():
            try:
                await service.check()  # marks dead agents, logs dead letters and stuck inboxes
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
