"""The ``massgen`` command line: the Typer app and what its commands share. It parses, then
calls the library (imported inside the commands, so ``massgen --help`` stays fast)."""

from __future__ import annotations

import gc
import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from massgen import __version__
from massgen.cli import agents, bus, dashboard, mcp, run, serve, stores
from massgen.cli import eval as evaluation
from massgen.cli.common import USAGE, Opt, command, fail, start_up

if TYPE_CHECKING:
    from massgen.config import TeamConfig
    from massgen.distributed.target import BusTarget

__all__ = ["app", "main"]
CONFIG_ENV = "MASSGEN_CONFIG"
app = typer.Typer(
    name="massgen",
    help="Run a team of LLM agents on a task and get one answer.",
    no_args_is_help=True,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
)
for fn in (run.run, run.batch, bus.worker, bus.service, mcp.mcp, serve.serve, dashboard.dashboard):
    command(app)(fn)
command(app, "eval")(evaluation.eval_)
app.add_typer(agents.configs, name="config")
app.add_typer(stores.cache, name="cache")
app.add_typer(agents.agents, name="agents")
app.add_typer(stores.sessions, name="session")
app.add_typer(stores.memory, name="memory")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"massgen {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[
        bool, Opt("--version", callback=_version, is_eager=True, help="Show the version.")
    ] = False,
    log_level: Annotated[
        str | None,
        Opt(
            "--log-level",
            envvar="MASSGEN_LOG",
            metavar="LEVEL",
            help="Log to stderr at LEVEL (debug, info, warning, error); secrets are redacted.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Run a team of LLM agents on a task and get one answer."""
    if log_level:
        from massgen.cli.logs import configure
        from massgen.errors import ConfigError

        try:
            configure(log_level)
        except ConfigError as e:
            raise fail(str(e), USAGE) from None


def main() -> None:
    start_up()
    try:
        app()
    finally:
        # On the way out: the final collections then skip every object start-up and the
        # run made (≈ 50 ms of CPU for a run; nothing is left that needs collecting).
        gc.freeze()


def team_and_bus(
    config: Path | None, redis: str | None, prefix: str | None = None, *, need: str = ""
) -> tuple[TeamConfig | None, BusTarget | None]:
    """The team file, if given, and the Redis that ``--redis``, the file or
    ``$MASSGEN_REDIS_URL`` names; with ``need`` (what for), having none is a usage error."""
    from massgen.config import load
    from massgen.distributed.target import BusTarget
    from massgen.errors import ConfigError

    cfg = load(config) if config is not None else None
    bus = BusTarget.resolve(redis, cfg, prefix=prefix)
    if bus is None and need:
        where = f"set redis.url in {config}" if config else "--config with redis.url"
        hint = f"pass --redis redis://host:6379, {where}, or set MASSGEN_REDIS_URL"
        raise ConfigError(need, key="--redis", hint=hint)
    return cfg, bus


def find_config(config: Path | None) -> Path | None:
    """The team config: given, else ``$MASSGEN_CONFIG``, else ``./massgen.yaml`` if any."""
    if config is not None:
        return config
    if env := os.environ.get(CONFIG_ENV):
        return Path(env)
    default = Path("massgen.yaml")
    return default if default.exists() else None


def team_store(
    config: Path | None,
    default: Path,
    *,
    store: str | None = None,
    prefix: str | None = None,
    cache: bool = False,
) -> tuple[str | Path, str]:
    """Where the team keeps its memory (or, with ``cache``, its cache) and the key prefix:
    ``--store``, the cache's own path, the team's Redis (reached now, as every command
    reaches it: refused or silent, exit 2), else ``default``."""
    if store:
        return (store if "://" in store else Path(store)), prefix or "massgen:"
    path = find_config(config)
    cfg, bus = team_and_bus(path, None) if path is not None else (None, None)
    if cfg is not None and cache and cfg.orchestrator.cache.path:
        return Path(cfg.orchestrator.cache.path), "massgen:"
    if cfg is not None and cfg.redis is not None and bus is not None:
        bus.check()
        return bus.url, prefix or bus.prefix
    return default, "massgen:"
