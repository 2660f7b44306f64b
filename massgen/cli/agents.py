"""`massgen agents list` (the live registry on Redis, or the team a config declares) and
`massgen config validate|schema`."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from massgen.cli.common import Opt, Prefix, Redis, TeamFile, command, group

if TYPE_CHECKING:
    from massgen.config import TeamConfig
    from massgen.distributed.target import BusTarget

LIVE_COLUMNS: tuple[str, ...] = ("name", "capabilities", "hosts", "status", "heartbeat_age")
LIVE_COLUMNS += ("in_flight", "processed", "failed", "replicas", "dead_letters", "secret")
TEAM_COLUMNS: tuple[str, ...] = ("name", "backend", "model", "role", "fallback")
_HEADERS = {"name": "agent", "hosts": "host/pid", "heartbeat_age": "heartbeat"}
agents = group("See the agents of a team or on Redis.")
configs = group("Check and describe team configs.")


@command(agents, "list")
def list_agents(
    config: Annotated[Path | None, Opt("--config", help="Team config (YAML).")] = None,
    redis: Redis = None,
    prefix: Prefix = None,
    json_out: Annotated[bool, Opt("--json", help="Print JSON instead of a table.")] = False,
) -> int:
    """Live agents on Redis (with counters), or without Redis the team a config declares."""
    import asyncio
    import json

    from massgen.cli import team_and_bus
    from massgen.errors import ConfigError

    cfg, bus = team_and_bus(config, redis, prefix)
    if bus is not None:
        bus.check()  # refused: exit 2 at the URL's origin; down: exit 2 too
        rows, columns = asyncio.run(_live(bus, cfg)), LIVE_COLUMNS
        title = f"agents on {bus.where} (prefix {bus.prefix})"
    elif cfg is not None:
        rows, columns = team_rows(cfg), TEAM_COLUMNS
        title = f"team {cfg.name or config} (not distributed: no Redis configured)"
    else:
        hint = "pass --redis redis://host:6379 (or set MASSGEN_REDIS_URL) for live agents, "
        hint += "or --config team.yaml for a team"
        raise ConfigError("nothing to list: no Redis and no config", key="--redis", hint=hint)
    if json_out:
        print(json.dumps(rows, ensure_ascii=False))
    else:
        _table(title, columns, rows)
    for row in rows:  # the agents whose signatures this secret does not verify
        if bad := row.get("secret_mismatch"):
            line = f"warning: agent {row['name']}: the signatures of {len(bad)} of its "
            line += f"{row['replicas']} instance(s) do not verify with this secret "
            line += f"({', '.join(bad)}); their messages are refused here and ours there"
            print(line, file=sys.stderr)
    return 0


async def _live(bus: BusTarget, cfg: TeamConfig | None) -> list[dict[str, Any]]:
    from massgen.distributed.registry import registry_rows
    from massgen.mas import RedisTransport, Signer

    transport = RedisTransport(bus.url, prefix=bus.prefix)
    await transport.connect()  # bad URL or password: a ConfigError, nothing read or written
    try:
        rows = await registry_rows(transport, Signer.resolve(bus.secret))
    finally:
        await transport.close()
    if cfg is not None:
        hosted = {r["name"] for r in rows}
        rows += [
            {**row, "status": "not hosted"} for row in team_rows(cfg) if row["name"] not in hosted
        ]
    return rows


def team_rows(cfg: TeamConfig) -> list[dict[str, Any]]:
    from massgen.types import role_excerpt

    return [
        {
            "name": a.name,
            "backend": cfg.backend_for(a).type,
            "model": a.model or cfg.backend_for(a).model or None,
            "role": role_excerpt(a.role),
            "fallback": a.fallback,
        }
        for a in cfg.agents
    ]


def _table(title: str, columns: tuple[str, ...], rows: list[dict[str, Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    for key in columns:
        table.add_column(_HEADERS.get(key, key.replace("_", " ")), overflow="fold")
    for row in rows:
        table.add_row(*(_cell(key, row.get(key)) for key in columns))
    width = None if sys.stdout.isatty() else 160  # pipes: do not squeeze to 80 columns
    Console(file=sys.stdout, width=width).print(table)
    if not rows:
        print("no live agents" if columns is LIVE_COLUMNS else "no agents")


def _cell(key: str, value: Any) -> str:
    if value is None:
        return "-"
    if key == "heartbeat_age":
        return f"{value:.1f}s ago"
    if isinstance(value, list):
        return ", ".join(str(v) for v in value) or "-"
    return str(value)


@command(configs, "validate")
def validate(config: TeamFile) -> int:
    """Check CONFIG as a run does before its first request (file, backends, models, keys,
    tools, Redis) and summarise the team; exit 2 on any mistake. Nothing is sent."""
    import asyncio

    from massgen.config import load
    from massgen.distributed.target import BusTarget
    from massgen.errors import ConfigError
    from massgen.orchestrator import Orchestrator

    try:
        cfg = load(config)
    except ConfigError as e:  # every mistake the file holds, not the first alone
        *told, last = (e, *e.more)
        for shown in told:
            print(f"error: {shown}", file=sys.stderr)
        raise last from None
    bus = BusTarget.resolve(None, cfg)
    orchestrator = Orchestrator.from_config(cfg)
    asyncio.run(orchestrator.aclose())  # what building the team opened (pools, stores)
    if bus is not None:
        bus.check()  # refused: a ConfigError at the URL (exit 2); down: exit 2 too
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


@command(configs, "schema")
def schema() -> int:
    """Print the JSON Schema of team configs (for editors)."""
    import json

    from massgen.config import json_schema

    json.dump(json_schema(), sys.stdout, indent=2)
    print()
    return 0
