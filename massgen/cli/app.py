"""The Typer app: the root options, and every command registered from its module."""

from __future__ import annotations

from typing import Annotated

import typer

from massgen import __version__
from massgen.cli import agents, batch, cachecmd, configcmd, run, service, session, worker
from massgen.cli.options import Opt, command

app = typer.Typer(
    name="massgen",
    help="Run a team of LLM agents on a task and get one answer.",
    no_args_is_help=True,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
)
for fn in (run.run, batch.batch, worker.worker, service.service):
    command(app)(fn)
app.add_typer(configcmd.app, name="config")
app.add_typer(cachecmd.app, name="cache")
app.add_typer(agents.app, name="agents")
app.add_typer(session.sessions, name="session")
app.add_typer(session.memory, name="memory")


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
        from massgen.cli.exits import USAGE, fail
        from massgen.cli.logs import configure
        from massgen.errors import ConfigError

        try:
            configure(log_level)
        except ConfigError as e:
            raise fail(str(e), USAGE) from None
