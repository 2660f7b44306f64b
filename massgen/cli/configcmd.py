"""`massgen config validate|schema`."""

from __future__ import annotations

from massgen.cli.options import TeamFile, command, group

app = group("Check and describe team configs.")


@command(app, "validate")
def validate(config: TeamFile) -> int:
    """Check CONFIG as a run does before its first request (file, backends, models, keys,
    tools, Redis) and summarise the team; exit 2 on any mistake. Nothing is sent."""
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
    count = f"{len(cfg.agents)} agent" + ("s" if len(cfg.agents) > 1 else "")
    print(f"{config}: ok — {count}, strategy {cfg.orchestrator.strategy}")
    for a in cfg.agents:
        extra = f", tools {', '.join(a.tools)}" if a.tools else ""
        extra += f", fallback {a.fallback}" if a.fallback else ""
        model = orchestrator.agents[a.name].model_name() or "-"
        print(f"  {a.name}: {cfg.backend_for(a).type} {model}{extra}")
    if bus is not None:
        print(f"  redis: {bus.where} answers (prefix {bus.prefix})")
    return 0


@command(app, "schema")
def schema() -> int:
    """Print the JSON Schema of team configs (for editors)."""
    import json
    import sys

    from massgen.config import json_schema

    json.dump(json_schema(), sys.stdout, indent=2)
    print()
    return 0
