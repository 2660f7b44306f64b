"""`massgen config validate|schema`."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from massgen.distributed.target import BusTarget
    from massgen.orchestrator import Orchestrator


def validate(path: Path) -> int:
    """Everything ``massgen run`` checks before its first request, and nothing sent.

    The file is loaded, the team built as a run builds it (every backend: its type, model,
    key and options; every tool with its settings; fallbacks, memory) and, when the config
    or ``$MASSGEN_REDIS_URL`` names a Redis, that Redis is reached. Only the SDKs of the
    backends used are imported; no provider is called.
    """
    import asyncio

    from massgen.config import load
    from massgen.distributed.target import BusTarget
    from massgen.errors import ConfigError
    from massgen.orchestrator import Orchestrator

    cfg = load(path)
    bus = BusTarget.resolve(None, cfg)
    orchestrator = Orchestrator.from_config(cfg)
    try:
        asyncio.run(_reach(orchestrator, bus))
    except ConfigError as e:
        if e.file is None and cfg.redis is not None and bus is not None:
            file, line = cfg.locate("redis", "url")  # the URL came from this file
            raise ConfigError(e.message, file=file, line=line, key="redis.url", hint=e.hint) from e
        raise
    o = cfg.orchestrator
    count = f"{len(cfg.agents)} agent" + ("s" if len(cfg.agents) > 1 else "")
    print(f"{path}: ok — {count}, strategy {o.strategy}")
    for a in cfg.agents:
        agent = orchestrator.agents[a.name]
        extra = f", tools {', '.join(a.tools)}" if a.tools else ""
        extra += f", fallback {a.fallback}" if a.fallback else ""
        print(f"  {a.name}: {cfg.backend_for(a).type} {agent.model_name() or '-'}{extra}")
    if bus is not None:
        print(f"  redis: {bus.where} answers (prefix {bus.prefix})")
    return 0


async def _reach(orchestrator: Orchestrator, bus: BusTarget | None) -> None:
    """Connect to the run's Redis as a run would (a bad URL, password or server is a
    ConfigError), then close what the build opened."""
    async with orchestrator:
        if bus is None:
            return
        from massgen.mas import RedisTransport

        transport = RedisTransport(bus.url, prefix=bus.prefix)
        try:
            await transport.connect()
        finally:
            await transport.close()


def schema() -> int:
    from massgen.config import json_schema

    json.dump(json_schema(), sys.stdout, indent=2)
    print()
    return 0
