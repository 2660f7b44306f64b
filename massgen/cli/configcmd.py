"""`massgen config validate|schema`."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
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
    from massgen.orchestrator import Orchestrator

    cfg = load(path)
    bus = BusTarget.resolve(None, cfg)
    orchestrator = Orchestrator.from_config(cfg)
    asyncio.run(_close(orchestrator))
    if bus is not None:
        bus.check()  # refused: a ConfigError at the URL (exit 2); down: exit 69
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


async def _close(orchestrator: Orchestrator) -> None:
    """Close what building the team opened (connection pools, stores)."""
    async with orchestrator:
        pass


def schema() -> int:
    from massgen.config import json_schema

    json.dump(json_schema(), sys.stdout, indent=2)
    print()
    return 0
