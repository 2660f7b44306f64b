"""Typer app: the commands and their options. Work happens in the modules they call."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from massgen import __version__
from massgen.cli.exits import guarded

app = typer.Typer(
    name="massgen",
    help="Run a team of LLM agents on a task and get one answer.",
    no_args_is_help=True,
    add_completion=True,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
)
config_app = typer.Typer(help="Check and describe team configs.", no_args_is_help=True)
app.add_typer(config_app, name="config")
cache_app = typer.Typer(help="Look at or empty the response cache.", no_args_is_help=True)
app.add_typer(cache_app, name="cache")
CacheConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config", "-c", help="Team config (default: $MASSGEN_CONFIG or ./massgen.yaml)."
    ),
]
agents_app = typer.Typer(help="See the agents of a team or on Redis.", no_args_is_help=True)
app.add_typer(agents_app, name="agents")
session_app = typer.Typer(help="List, show or delete sessions (--session).", no_args_is_help=True)
app.add_typer(session_app, name="session")
memory_app = typer.Typer(help="Look at, search or clear long-term memory.", no_args_is_help=True)
app.add_typer(memory_app, name="memory")
StoreOption = Annotated[
    str | None,
    typer.Option(
        "--store",
        metavar="TARGET",
        help="Memory store: a file path or redis:// URL (default: the config's Redis, "
        "else .massgen/memory.sqlite3).",
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON.")]
AgentOption = Annotated[
    str | None, typer.Option("--agent", "-a", help="Only this agent's own memory.")
]

RedisOption = Annotated[
    str | None,
    typer.Option(
        "--redis",
        metavar="URL",
        help="Redis URL (redis://, rediss://); default: the config's redis.url, "
        "else $MASSGEN_REDIS_URL.",
        show_default=False,
    ),
]
PrefixOption = Annotated[
    str | None,
    typer.Option(
        "--prefix",
        metavar="PREFIX",
        help="Key prefix on Redis (default: the config's, else massgen:).",
    ),
]


def _version(value: bool) -> None:
    if value:
        typer.echo(f"massgen {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[
        bool | None,
        typer.Option("--version", callback=_version, is_eager=True, help="Show the version."),
    ] = None,
    log_level: Annotated[
        str | None,
        typer.Option(
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
    config: Annotated[Path, typer.Argument(help="Team config (YAML).")],
    task: Annotated[str, typer.Argument(help="The task; '-' reads it from stdin.")],
    strategy: Annotated[
        str | None,
        typer.Option("--strategy", "-s", help="parallel | sequential | consensus."),
    ] = None,
    json_out: Annotated[
        bool, typer.Option("--json", help="Print the whole result as JSON on stdout.")
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress on stderr.")] = False,
    record: Annotated[
        Path | None,
        typer.Option("--record", help="Where to write the run record (JSON)."),
    ] = None,
    no_record: Annotated[
        bool, typer.Option("--no-record", help="Do not write a run record.")
    ] = False,
    redis: RedisOption = None,
    no_cache: Annotated[
        bool, typer.Option("--no-cache", help="Do not read or write the response cache.")
    ] = False,
    max_cost: Annotated[
        float | None, typer.Option("--max-cost", help="Stop before spending more than this (USD).")
    ] = None,
    session: Annotated[
        str | None,
        typer.Option(
            "--session",
            metavar="NAME",
            help="Continue session NAME: each agent remembers its earlier runs in it.",
        ),
    ] = None,
) -> None:
    """Run TASK with the team in CONFIG; print the final answer on stdout."""
    from massgen.cli.run import run_command

    guarded(
        lambda: run_command(
            config,
            task,
            strategy=strategy,
            json_out=json_out,
            quiet=quiet,
            record=record,
            no_record=no_record,
            redis=redis,
            no_cache=no_cache,
            max_cost=max_cost,
            session=session,
        )
    )


@app.command()
def batch(
    tasks: Annotated[Path, typer.Argument(help="Tasks: .txt (one per line), .jsonl or .csv.")],
    config: Annotated[
        Path | None,
        typer.Option(
            "--config", "-c", help="Team config (default: $MASSGEN_CONFIG or ./massgen.yaml)."
        ),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Results JSONL (default: TASKS.results.jsonl beside it)."),
    ] = None,
    concurrency: Annotated[int, typer.Option("--concurrency", "-j", help="Tasks in flight.")] = 8,
    strategy: Annotated[
        str | None, typer.Option("--strategy", "-s", help="parallel | sequential | consensus.")
    ] = None,
    no_resume: Annotated[
        bool,
        typer.Option("--no-resume", help="Start over (the old results file is moved aside)."),
    ] = False,
    max_cost: Annotated[
        float | None, typer.Option("--max-cost", help="Stop before spending more than this (USD).")
    ] = None,
    no_cache: Annotated[
        bool, typer.Option("--no-cache", help="Do not read or write the response cache.")
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress on stderr.")] = False,
) -> None:
    """Run every task in TASKS; one JSON line per finished task; a re-run resumes."""
    from massgen.cli.batch import batch_command

    guarded(
        lambda: batch_command(
            tasks,
            config=config,
            out=out,
            concurrency=concurrency,
            strategy=strategy,
            resume=not no_resume,
            max_cost=max_cost,
            no_cache=no_cache,
            quiet=quiet,
        )
    )


@app.command()
def worker(
    config: Annotated[Path, typer.Argument(help="Team config (YAML).")],
    agent: Annotated[
        list[str] | None,
        typer.Option(
            "--agent", "-a", metavar="NAME", help="Host this agent (repeat; default: every agent)."
        ),
    ] = None,
    redis: RedisOption = None,
    concurrency: Annotated[
        int,
        typer.Option(
            "--concurrency", "-c", metavar="N", min=1, help="Turns each agent runs at once."
        ),
    ] = 8,
) -> None:
    """Host the agents of CONFIG on Redis, so runs anywhere send them their turns."""
    from massgen.cli.worker import worker_command

    guarded(lambda: worker_command(config, agent or [], redis=redis, concurrency=concurrency))


@app.command()
def service(
    redis: RedisOption = None,
    prefix: PrefixOption = None,
    config: Annotated[
        Path | None, typer.Option("--config", help="Take Redis URL and prefix from a team config.")
    ] = None,
    interval: Annotated[float, typer.Option("--interval", help="Seconds between checks.")] = 5.0,
) -> None:
    """Watch the registry: mark silent agents dead, report dead letters and stuck work."""
    from massgen.cli.service import service_command

    guarded(lambda: service_command(redis=redis, prefix=prefix, config=config, interval=interval))


@agents_app.command("list")
def agents_list(
    config: Annotated[Path | None, typer.Option("--config", help="Team config (YAML).")] = None,
    redis: RedisOption = None,
    prefix: PrefixOption = None,
    json_out: Annotated[
        bool, typer.Option("--json", help="Print JSON instead of a table.")
    ] = False,
) -> None:
    """Live agents on Redis (with counters), or without Redis the team a config declares."""
    from massgen.cli.agents import list_command

    guarded(lambda: list_command(config=config, redis=redis, prefix=prefix, json_out=json_out))


@config_app.command("validate")
def config_validate(
    config: Annotated[Path, typer.Argument(help="Team config (YAML).")],
) -> None:
    """Check CONFIG as a run does before its first request (file, backends, models, keys,
    tools, Redis) and summarise the team; exit 2 on any mistake. Nothing is sent."""
    from massgen.cli.configcmd import validate

    guarded(lambda: validate(config))


@config_app.command("schema")
def config_schema() -> None:
    """Print the JSON Schema of team configs (for editors)."""
    from massgen.cli.configcmd import schema

    guarded(schema)


@cache_app.command("stats")
def cache_stats(config: CacheConfigOption = None) -> None:
    """How many answers the cache holds, and where."""
    from massgen.cli.cachecmd import stats

    guarded(lambda: stats(config))


@cache_app.command("clear")
def cache_clear(config: CacheConfigOption = None) -> None:
    """Remove every cached answer."""
    from massgen.cli.cachecmd import clear

    guarded(lambda: clear(config))


@session_app.command("list")
def session_list(
    config: CacheConfigOption = None,
    store: StoreOption = None,
    prefix: PrefixOption = None,
    json_out: JsonOption = False,
) -> None:
    """Every session: runs, last update, agents."""
    from massgen.cli.session import Where
    from massgen.cli.session import session_list as work

    guarded(lambda: work(Where(config, store, prefix), json_out))


@session_app.command("show")
def session_show(
    name: Annotated[str, typer.Argument(help="Session name.")],
    config: CacheConfigOption = None,
    store: StoreOption = None,
    prefix: PrefixOption = None,
    json_out: JsonOption = False,
) -> None:
    """What each agent remembers of session NAME (exit 1 if there is none)."""
    from massgen.cli.session import Where
    from massgen.cli.session import session_show as work

    guarded(lambda: work(name, Where(config, store, prefix), json_out))


@session_app.command("delete")
def session_delete(
    name: Annotated[str, typer.Argument(help="Session name.")],
    config: CacheConfigOption = None,
    store: StoreOption = None,
    prefix: PrefixOption = None,
) -> None:
    """Forget session NAME entirely (exit 1 if there is none)."""
    from massgen.cli.session import Where
    from massgen.cli.session import session_delete as work

    guarded(lambda: work(name, Where(config, store, prefix)))


@memory_app.command("list")
def memory_list(
    config: CacheConfigOption = None,
    store: StoreOption = None,
    prefix: PrefixOption = None,
    agent: AgentOption = None,
    json_out: JsonOption = False,
) -> None:
    """Every long-term item, the team's and each agent's."""
    from massgen.cli.session import Where
    from massgen.cli.session import memory_list as work

    guarded(lambda: work(Where(config, store, prefix), agent, json_out))


@memory_app.command("search")
def memory_search(
    query: Annotated[str, typer.Argument(help="Words to look for.")],
    config: CacheConfigOption = None,
    store: StoreOption = None,
    prefix: PrefixOption = None,
    agent: AgentOption = None,
    k: Annotated[int, typer.Option("--top", "-k", min=1, help="How many items.")] = 5,
    json_out: JsonOption = False,
) -> None:
    """The items most relevant to QUERY (BM25), best first."""
    from massgen.cli.session import Where
    from massgen.cli.session import memory_search as work

    guarded(lambda: work(query, Where(config, store, prefix), agent, k, json_out))


@memory_app.command("clear")
def memory_clear(
    config: CacheConfigOption = None,
    store: StoreOption = None,
    prefix: PrefixOption = None,
    agent: AgentOption = None,
) -> None:
    """Forget every long-term item (or only ``--agent``'s)."""
    from massgen.cli.session import Where
    from massgen.cli.session import memory_clear as work

    guarded(lambda: work(Where(config, store, prefix), agent))
