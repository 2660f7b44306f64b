"""`massgen config validate|schema`."""

from __future__ import annotations

import json
import sys
from pathlib import Path


def validate(config: Path) -> int:
    """Everything ``massgen run`` checks before its first request: the team is built as a
    run builds it and its Redis reached; no provider is called."""
    import asyncio

    from massgen.config import load
    from massgen.distributed.target import BusTarget
    from massgen.orchestrator import Orchestrator

    cfg = load(config)
    bus = BusTarget.resolve(None, cfg)
    orchestrator = Orchestrator.from_config(cfg)
    asyncio.run(orchestrator.aclose())  # what building the team opened (pools, stores)
    if bus is not None:
        bus.check()  # refused: a ConfigError at the URL (exit 2); down: exit 69
    o = cfg.orchestrator
    count = f"{len(cfg.agents)} agent" + ("s" if len(cfg.agents) > 1 else "")
    print(f"{config}: ok — {count}, strategy {o.strategy}")
    for a in cfg.agents:
        agent = orchestrator.agents[a.name]
        extra = f", tools {', '.join(a.tools)}" if a.tools else ""
        extra += f", fallback {a.fallback}" if a.fallback else ""
        print(f"  {a.name}: {cfg.backend_for(a).type} {agent.model_name() or '-'}{extra}")
    if bus is not None:
        print(f"  redis: {bus.where} answers (prefix {bus.prefix})")
    return 0


def schema() -> int:
    from massgen.config import json_schema

    json.dump(json_schema(), sys.stdout, indent=2)
    print()
    return 0
