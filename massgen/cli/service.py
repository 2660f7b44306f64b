"""`massgen service`: the registry monitor, logging what it sees until SIGINT or SIGTERM."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from massgen.cli.options import Opt, Prefix, Redis


def service(
    redis: Redis = None,
    prefix: Prefix = None,
    config: Annotated[
        Path | None, Opt("--config", help="Take Redis URL and prefix from a team config.")
    ] = None,
    interval: Annotated[float, Opt("--interval", help="Seconds between checks.")] = 5.0,
) -> int:
    """Watch the registry: mark silent agents dead, report dead letters and stuck work."""
    import asyncio
    import logging

    from redis.exceptions import RedisError

    from massgen.cli import team_and_bus
    from massgen.cli.exits import stop_signal, stopped
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

    with log_to_stderr(logging.INFO, "%(asctime)s %(message)s"):
        return asyncio.run(serve())
