"""`massgen dashboard --redis URL`: the live dashboard of a distributed deployment (workers,
the agents they host, heartbeats, turns in flight, dead letters) without serving a team.
aiohttp's server is imported only when the command runs."""

from __future__ import annotations

import sys
from typing import Annotated

from massgen.cli.common import Opt, Prefix, Redis, stop_signal, stopped
from massgen.cli.serve import loopback  # the rule serve keys by


def dashboard(
    redis: Redis = None,
    prefix: Prefix = None,
    host: Annotated[str, Opt("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, Opt("--port", help="Port to listen on (0: a free one).")] = 8080,
) -> int:
    """Serve the live dashboard of the workers on Redis at http://HOST:PORT/ until stopped."""
    import asyncio

    from massgen.cli import team_and_bus
    from massgen.errors import ConfigError

    if not 0 <= port <= 65535:
        raise ConfigError("must be a port number, 0 to 65535", key="--port")
    _, bus = team_and_bus(None, redis, prefix, need="the dashboard shows the workers on Redis")
    assert bus is not None
    bus.check()  # refused: exit 2 at the URL's origin; down: exit 2 too
    if not loopback(host):
        print(
            f"warning: the dashboard has no authentication; anyone who reaches {host}:{port} "
            "sees the workers and their hosts",
            file=sys.stderr,
        )

    async def main() -> int:
        from aiohttp import web

        from massgen.serve.board import Board

        got = stop_signal()
        board = Board(redis_url=bus.url, prefix=bus.prefix, runs=False)
        app = web.Application()
        app.add_routes(board.routes())
        app.on_shutdown.append(lambda _: board.aclose())
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        try:
            try:
                await web.TCPSite(runner, host, port).start()
            except OSError as e:  # the port is taken, or the address is not this machine's
                hint = "pick another --port (0: a free one) or --host"
                raise ConfigError(
                    f"cannot listen on {host}:{port}: {e.strerror}", hint=hint
                ) from None
            bound = runner.addresses[0][1] if port == 0 else port
            shown = f"[{host}]" if ":" in host else host
            print(
                f"massgen dashboard: serving on http://{shown}:{bound}/ "
                f"(workers on {bus.where}, prefix {bus.prefix})",
                flush=True,
            )
            await got
        finally:
            await runner.cleanup()
        name, code = stopped(got)
        print(f"massgen dashboard: stopped ({name})", file=sys.stderr, flush=True)
        return code

    return asyncio.run(main())
