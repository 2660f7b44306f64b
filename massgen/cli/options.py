"""What the commands share: their options (one ``Annotated`` alias each) and :func:`command`.
Command modules import only this and the standard library at the top (the rest inside the
command), so ``massgen --help`` stays fast."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from massgen.cli.exits import guarded

Opt, Arg = typer.Option, typer.Argument
Command = Callable[..., int | None]


def group(help: str) -> typer.Typer:
    return typer.Typer(help=help, no_args_is_help=True)


def command(app: typer.Typer, name: str | None = None) -> Callable[[Command], Command]:
    """Register a command on ``app``, its errors mapped to exit codes (see exits.py)."""

    def register(fn: Command) -> Command:
        @functools.wraps(fn)
        def run(**kwargs: Any) -> None:
            guarded(lambda: fn(**kwargs))

        app.command(name)(run)
        return fn

    return register


TeamFile = Annotated[Path, Arg(help="Team config (YAML).")]
FindConfig = Annotated[
    Path | None,
    Opt("--config", "-c", help="Team config (default: $MASSGEN_CONFIG or ./massgen.yaml)."),
]
Redis = Annotated[
    str | None,
    Opt(
        "--redis",
        metavar="URL",
        help="Redis URL (redis://, rediss://); default: the config's redis.url, "
        "else $MASSGEN_REDIS_URL.",
        show_default=False,
    ),
]
Prefix = Annotated[
    str | None,
    Opt(
        "--prefix",
        metavar="PREFIX",
        help="Key prefix on Redis (default: the config's, else massgen:).",
    ),
]
StoreTarget = Annotated[
    str | None,
    Opt(
        "--store",
        metavar="TARGET",
        help="Memory store: a file path or redis:// URL (default: the config's Redis, "
        "else .massgen/memory.sqlite3).",
    ),
]
Json = Annotated[bool, Opt("--json", help="Print JSON.")]
Strategy = Annotated[str | None, Opt("--strategy", "-s", help="parallel | sequential | consensus.")]
Quiet = Annotated[bool, Opt("--quiet", "-q", help="No progress on stderr.")]
NoCache = Annotated[bool, Opt("--no-cache", help="Do not read or write the response cache.")]
MaxCost = Annotated[
    float | None, Opt("--max-cost", help="Stop before spending more than this (USD).")
]
