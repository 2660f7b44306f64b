"""`massgen serve team.yaml [more.yaml ...]`: the teams behind an OpenAI-compatible endpoint
and the live dashboard (docs/serve.md), on aiohttp's server, imported only when this runs."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

from massgen.cli.common import Arg, MaxCost, NoCache, Opt
from massgen.cli.metrics import MetricsHost, MetricsPort, teams_metrics_served

KEYS_ENV = "MASSGEN_SERVE_KEYS"


def loopback(host: str) -> bool:
    """Whether listening on ``host`` stays on this machine (a name other than localhost: no)."""
    import ipaddress

    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name: it may resolve to anything


def serve(
    configs: Annotated[list[Path], Arg(help="Team configs (YAML); each is a model.")],
    host: Annotated[str, Opt("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, Opt("--port", "-p", help="Port (0: a free one, told on stderr).")] = 8080,
    api_key: Annotated[
        list[str] | None,
        Opt(
            "--api-key",
            metavar="KEY",
            help=f"A bearer key clients must send (repeat for more; "
            f"better: ${KEYS_ENV}, comma-separated).",
        ),
    ] = None,
    max_body: Annotated[int, Opt("--max-body", metavar="BYTES", help="Largest request body.")] = 1
    << 20,
    concurrency: Annotated[
        int, Opt("--concurrency", "-j", help="Runs at once; more get 429 with Retry-After.")
    ] = 64,
    timeout: Annotated[
        float, Opt("--timeout", metavar="SECONDS", help="Longest run (504 after); 0: none.")
    ] = 600.0,
    grace: Annotated[
        float, Opt("--grace", metavar="SECONDS", help="On SIGTERM, time runs in flight get.")
    ] = 30.0,
    cors_origin: Annotated[
        list[str] | None,
        Opt(
            "--cors-origin",
            metavar="ORIGIN",
            help="Allow browsers of ORIGIN (repeat; '*': any). Off by default.",
        ),
    ] = None,
    access_log: Annotated[
        bool, Opt("--access-log/--no-access-log", help="One line per request on stderr.")
    ] = True,
    no_cache: NoCache = False,
    max_cost: MaxCost = None,
    metrics_port: MetricsPort = None,
    metrics_host: MetricsHost = "127.0.0.1",
) -> int:
    """Serve the teams in CONFIGS as an OpenAI-compatible API (POST /v1/chat/completions)."""
    from massgen.cli import team_and_bus
    from massgen.cli.common import stop_signal, stopped
    from massgen.errors import ConfigError

    keys = [k.strip() for k in [*(api_key or []), *os.environ.get(KEYS_ENV, "").split(",")]]
    keys = [k for k in keys if k]
    if not keys and not loopback(host):
        hint = f"pass --api-key KEY or set {KEYS_ENV}, or listen on 127.0.0.1"
        raise ConfigError(
            "refusing to listen beyond this machine without API keys", key="--host", hint=hint
        )
    if not 0 <= port <= 65535:
        raise ConfigError("must be a port number, 0 to 65535", key="--port")
    for value, name in ((max_body, "--max-body"), (concurrency, "--concurrency")):
        if value < 1:
            raise ConfigError("must be at least 1", key=name)
    if timeout < 0 or grace < 0:
        raise ConfigError("must not be negative", key="--timeout" if timeout < 0 else "--grace")
    import asyncio
    import logging

    from massgen.serve.app import Limits, Served
    from massgen.serve.app import serve as listen
    from massgen.serve.board import Board
    from massgen.serve.teams import Team

    def told(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    options = {"max_cost": max_cost, "cache_enabled": False if no_cache else None}
    teams: dict[str, Team] = {}
    for path in configs:
        cfg, bus = team_and_bus(path, None)
        assert cfg is not None
        name = cfg.name or path.stem
        if name in teams:
            raise ConfigError(f"two teams are named {name!r}", file=str(path), key="name")
        if bus is not None:
            bus.check()  # before anything is built
        teams[name] = Team(
            name, cfg, bus, {k: v for k, v in options.items() if v is not None}, told=told
        )
    first = next(iter(teams.values()))
    redis = first.bus
    access = None
    if access_log:
        access = logging.getLogger("massgen.serve.access")
        access.setLevel(logging.INFO)
        access.propagate = False
        access.addHandler(logging.StreamHandler(sys.stderr))
    limits = Limits(
        max_body=max_body, concurrency=concurrency, timeout=timeout or None, grace=grace
    )

    more_files()

    async def main() -> int:
        got = stop_signal()
        board = Board(
            redis_url=redis.url if redis else None, prefix=redis.prefix if redis else None
        )
        served = Served(teams=teams, board=board, keys=keys, limits=limits, cors=cors_origin or ())
        try:
            for team in teams.values():
                await team.start()
            settle_heap()
            await listen(served, host, port, got, told=told, access=access)
        finally:
            for team in teams.values():
                await team.aclose()
        name, code = stopped(got)
        told(f"massgen serve: stopped ({name})")
        return code

    with teams_metrics_served(metrics_port, metrics_host, sys.stderr, list(teams.values())):
        return asyncio.run(main())


def settle_heap(young: int = 10_000) -> None:
    """Set the cycle collector for a long-lived server, once everything is built. What start-up
    made (modules, configs, clients) lives as long as the process: frozen out of the
    collector's reach, a full collection no longer scans it. And a young collection comes
    every ``young`` allocations instead of 700: hundreds of runs in flight keep their objects
    for seconds, which the default scans young, then again one generation up. Under
    bench/bench_serve.py's load (200 runs of 1 s at once) the collector took a third of the
    CPU of a run; with both, a run costs about a quarter less (docs/performance.md)."""
    import gc

    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(young, middle, old)


def more_files(want: int = 4096) -> None:
    """Each run's provider connections are open files: the soft limit (often 1,024) is raised
    toward ``want``, within the hard one, so hundreds of runs at once do not run out."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < want:
        raised = want if hard == resource.RLIM_INFINITY else min(want, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, raised), hard))
