"""`massgen mcp team.yaml`: the team as an MCP server (stdio, or streamable HTTP with
``--http PORT``) with one tool, ``ask_team(task, strategy?)``, through the official ``mcp``
SDK (imported inside the command, so ``massgen --help`` stays fast). Each call is one run of
the same orchestrator; calls may overlap. On stdio, stdout carries only the protocol."""

from __future__ import annotations

import sys
from typing import Annotated, Any

from massgen.cli.common import MaxCost, NoCache, Opt, TeamFile, stop_signal, stopped
from massgen.cli.metrics import MetricsHost, MetricsPort, metrics_served


def mcp(
    config: TeamFile,
    http: Annotated[
        int | None,
        Opt("--http", metavar="PORT", help="Serve streamable HTTP on PORT (0: a free one)."),
    ] = None,
    host: Annotated[str, Opt("--host", help="Address to listen on with --http.")] = "127.0.0.1",
    no_cache: NoCache = False,
    max_cost: MaxCost = None,
    metrics_port: MetricsPort = None,
    metrics_host: MetricsHost = "127.0.0.1",
) -> int:
    """Serve the team in CONFIG as an MCP server with the tool ask_team (stdio by default)."""
    import importlib.util

    from massgen.config import load
    from massgen.errors import ConfigError
    from massgen.orchestrator import Orchestrator

    if importlib.util.find_spec("mcp") is None:
        raise ConfigError("serving MCP needs the `mcp` package", hint="pip install 'massgen[mcp]'")
    if http is not None and not 0 <= http <= 65535:
        raise ConfigError("must be a port number, 0 to 65535", key="--http")
    cfg = load(config)
    off = False if no_cache else None  # None: as the config says
    orchestrator = Orchestrator.from_config(cfg, max_cost=max_cost, cache_enabled=off)
    import asyncio

    from massgen.cli.mcp_serve import Calls, build_server, serve

    async def main() -> int:
        got = stop_signal()
        stopping = asyncio.Event()
        got.add_done_callback(lambda _: stopping.set())
        async with orchestrator:
            calls = Calls()
            server = build_server(orchestrator, cfg.name or config.stem, stopping, calls)
            serving = asyncio.ensure_future(serve(server, http, host))
            either: list[asyncio.Future[Any]] = [serving, got]
            await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
            if not serving.done():
                await calls.ended(within=5)  # their runs cancelled: each client told why
                serving.cancel()
            await asyncio.gather(serving, return_exceptions=True)
            if serving.done() and not serving.cancelled() and serving.exception():
                raise serving.exception()  # type: ignore[misc]
        if got.done():
            name, code = stopped(got)
            print(f"massgen mcp: stopped ({name})", file=sys.stderr, flush=True)
            return code
        return 0

    # Their URL goes to stderr: on stdio, stdout carries only the protocol.
    with metrics_served(metrics_port, metrics_host, sys.stderr, orchestrator):
        return asyncio.run(main())
