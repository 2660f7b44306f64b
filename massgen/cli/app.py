"""Typer app: the commands and their options. Each body imports its module only when run."""

from __future__ import annotations

from importlib import import_module
from pathlib import Path
from typing import Annotated, Any

import typer

from massgen import __version__
from massgen.cli.exits import guarded

Opt, Arg = typer.Option, typer.Argument

app = typer.Typer(
    name="massgen",
    help="Run a team of LLM agents on a task and get one answer.",
    no_args_is_help=True,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
)


def _group(name: str, help: str) -> typer.Typer:
    group = typer.Typer(help=help, no_args_is_help=True)
    app.add_typer(group, name=name)
    return group


config_app = _group("config", "Check and describe team configs.")
cache_app = _group("cache", "Look at or empty the response cache.")
agents_app = _group("agents", "See the agents of a team or on Redis.")
session_app = _group("session", "List, show or delete sessions (--session).")
memory_app = _group("memory", "Look at, search or clear long-term memory.")


def _do(module: str, func: str, args: dict[str, Any]) -> None:
    """Run ``massgen.cli.<module>.<func>(**args)``, its errors mapped to exit codes."""
    work = getattr(import_module(f"massgen.cli.{module}"), func)
    guarded(lambda: work(**args))


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
Store = Annotated[
    str | None,
    Opt(
        "--store",
        metavar="TARGET",
        help="Memory store: a file path or redis:// URL (default: the config's Redis, "
        "else .massgen/memory.sqlite3).",
    ),
]
Json = Annotated[bool, Opt("--json", help="Print JSON.")]
OnlyAgent = Annotated[str | None, Opt("--agent", "-a", help="Only this agent's own memory.")]
Strategy = Annotated[str | None, Opt("--strategy", "-s", help="parallel | sequential | consensus.")]
Quiet = Annotated[bool, Opt("--quiet", "-q", help="No progress on stderr.")]
NoCache = Annotated[bool, Opt("--no-cache", help="Do not read or write the response cache.")]
MaxCost = Annotated[
    float | None, Opt("--max-cost", help="Stop before spending more than this (USD).")
]
Name = Annotated[str, Arg(help="Session name.")]


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


@app.command()
def run(
    config: TeamFile,
    task: Annotated[str, Arg(help="The task; '-' reads it from stdin.")],
    strategy: Strategy = None,
    json_out: Annotated[
        bool, Opt("--json", help="Print the whole result as JSON on stdout.")
    ] = False,
    quiet: Quiet = False,
    record: Annotated[
        Path | None, Opt("--record", help="Where to write the run record (JSON).")
    ] = None,
    no_record: Annotated[bool, Opt("--no-record", help="Do not write a run record.")] = False,
    redis: Redis = None,
    no_cache: NoCache = False,
    max_cost: MaxCost = None,
    session: Annotated[
        str | None,
        Opt(
            "--session",
            metavar="NAME",
            help="Continue session NAME: each agent remembers its earlier runs in it.",
        ),
    ] = None,
) -> None:
    """Run TASK with the team in CONFIG; print the final answer on stdout."""
    _do("run", "run_command", locals())


@app.command()
def batch(
    tasks: Annotated[Path, Arg(help="Tasks: .txt (one per line), .jsonl or .csv.")],
    config: FindConfig = None,
    out: Annotated[
        Path | None,
        Opt("--out", "-o", help="Results JSONL (default: TASKS.results.jsonl beside it)."),
    ] = None,
    concurrency: Annotated[int, Opt("--concurrency", "-j", help="Tasks in flight.")] = 8,
    strategy: Strategy = None,
    no_resume: Annotated[
        bool, Opt("--no-resume", help="Start over (the old results file is moved aside).")
    ] = False,
    max_cost: MaxCost = None,
    no_cache: NoCache = False,
    quiet: Quiet = False,
) -> None:
    """Run every task in TASKS; one JSON line per finished task; a re-run resumes."""
    _do("batch", "batch_command", locals())


@app.command()
def worker(
    config: TeamFile,
    agent: Annotated[
        list[str] | None,
        Opt(
            "--agent", "-a", metavar="NAME", help="Host this agent (repeat; default: every agent)."
        ),
    ] = None,
    redis: Redis = None,
    concurrency: Annotated[
        int, Opt("--concurrency", "-c", metavar="N", min=1, help="Turns each agent runs at once.")
    ] = 8,
) -> None:
    """Host the agents of CONFIG on Redis, so runs anywhere send them their turns."""
    _do("worker", "worker_command", locals())


@app.command()
def service(
    redis: Redis = None,
    prefix: Prefix = None,
    config: Annotated[
        Path | None, Opt("--config", help="Take Redis URL and prefix from a team config.")
    ] = None,
    interval: Annotated[float, Opt("--interval", help="Seconds between checks.")] = 5.0,
) -> None:
    """Watch the registry: mark silent agents dead, report dead letters and stuck work."""
    _do("service", "service_command", locals())


@agents_app.command("list")
def agents_list(
    config: Annotated[Path | None, Opt("--config", help="Team config (YAML).")] = None,
    redis: Redis = None,
    prefix: Prefix = None,
    json_out: Annotated[bool, Opt("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Live agents on Redis (with counters), or without Redis the team a config declares."""
    _do("agents", "list_command", locals())


@config_app.command("validate")
def config_validate(config: TeamFile) -> None:
    """Check CONFIG as a run does before its first request (file, backends, models, keys,
    tools, Redis) and summarise the team; exit 2 on any mistake. Nothing is sent."""
    _do("configcmd", "validate", locals())


@config_app.command("schema")
def config_schema() -> None:
    """Print the JSON Schema of team configs (for editors)."""
    _do("configcmd", "schema", {})


@cache_app.command("stats")
def cache_stats(config: FindConfig = None) -> None:
    """How many answers the cache holds, and where."""
    _do("cachecmd", "stats", locals())


@cache_app.command("clear")
def cache_clear(config: FindConfig = None) -> None:
    """Remove every cached answer."""
    _do("cachecmd", "clear", locals())


@session_app.command("list")
def session_list(
    config: FindConfig = None, store: Store = None, prefix: Prefix = None, json_out: Json = False
) -> None:
    """Every session: runs, last update, agents."""
    _do("session", "session_list", locals())


@session_app.command("show")
def session_show(
    name: Name,
    config: FindConfig = None,
    store: Store = None,
    prefix: Prefix = None,
    json_out: Json = False,
) -> None:
    """What each agent remembers of session NAME (exit 1 if there is none)."""
    _do("session", "session_show", locals())


@session_app.command("delete")
def session_delete(
    name: Name, config: FindConfig = None, store: Store = None, prefix: Prefix = None
) -> None:
    """Forget session NAME entirely (exit 1 if there is none)."""
    _do("session", "session_delete", locals())


@memory_app.command("list")
def memory_list(
    config: FindConfig = None,
    store: Store = None,
    prefix: Prefix = None,
    agent: OnlyAgent = None,
    json_out: Json = False,
) -> None:
    """Every long-term item, the team's and each agent's."""
    _do("session", "memory_list", locals())


@memory_app.command("search")
def memory_search(
    query: Annotated[str, Arg(help="Words to look for.")],
    config: FindConfig = None,
    store: Store = None,
    prefix: Prefix = None,
    agent: OnlyAgent = None,
    k: Annotated[int, Opt("--top", "-k", min=1, help="How many items.")] = 5,
    json_out: Json = False,
) -> None:
    """The items most relevant to QUERY (BM25), best first."""
    _do("session", "memory_search", locals())


@memory_app.command("clear")
def memory_clear(
    config: FindConfig = None, store: Store = None, prefix: Prefix = None, agent: OnlyAgent = None
) -> None:
    """Forget every long-term item (or only ``--agent``'s)."""
    _do("session", "memory_clear", locals())
