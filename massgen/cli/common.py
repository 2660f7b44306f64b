"""What the commands share: exit codes, turning our errors into one clear line instead of a
traceback, and the options (one ``Annotated`` alias each). Command modules import only this
and the standard library at the top (the rest inside the command), so ``massgen --help``
stays fast."""

from __future__ import annotations

import functools
import gc
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

if TYPE_CHECKING:
    import asyncio

T = TypeVar("T")
E = TypeVar("E", bound=BaseException)
OK, FAILED, USAGE, DEGRADED, INTERRUPTED = 0, 1, 2, 3, 130
KEY_HINT = "check the API key (see README: Run with real providers)"
_usual_gc: tuple[int, int, int] | None = None


def start_up() -> None:
    """Collect garbage less often while the command starts: start-up (imports, the config,
    the team) makes some 80,000 objects and no garbage cycles, so collecting would only
    rescan them (≈ 15 ms of a run's CPU). :func:`start_up_done` undoes it."""
    global _usual_gc
    _usual_gc = gc.get_threshold()
    gc.set_threshold(100_000, *_usual_gc[1:])


def start_up_done() -> None:
    """The command's work begins: start-up's objects leave the collector's way (frozen) and
    it collects at its usual pace again."""
    global _usual_gc
    if _usual_gc is not None:
        gc.freeze()
        gc.set_threshold(*_usual_gc)
        _usual_gc = None


def fail(message: str, code: int) -> typer.Exit:
    prefix = "error: " if code != INTERRUPTED else ""
    print(prefix + message, file=sys.stderr, flush=True)
    return typer.Exit(code)


def _caused_by(error: BaseException | None, kind: type[E]) -> E | None:
    """``kind`` if it is in ``error``'s ``raise ... from`` chain (a run wraps its agents')."""
    for _ in range(16):
        if error is None or isinstance(error, kind):
            return error
        error = error.__cause__
    return None


def guarded(fn: Callable[[], int | None]) -> None:
    """Run a command body; map errors to exit codes (see README: Exit codes)."""
    from massgen.errors import (
        AuthenticationError,
        ConfigError,
        Interrupted,
        MassGenError,
        SecretRefused,
        ServiceUnreachable,
    )

    try:
        code = fn() or OK
    except (ConfigError, ServiceUnreachable) as e:  # an unreachable Redis too (reliability)
        raise fail(str(e), USAGE) from None
    except (KeyboardInterrupt, Interrupted):
        raise fail("interrupted", INTERRUPTED) from None
    except MassGenError as e:
        if mistake := _caused_by(e, ConfigError):  # found as it ran: an MCP server's `include:`
            raise fail(str(mistake), USAGE) from None
        if _caused_by(e, AuthenticationError):  # e.g. every agent's key was refused
            raise fail(f"{e}\n  hint: {KEY_HINT}", USAGE) from None
        # The run's and its workers' secrets differ: a usage error too.
        raise fail(str(e), USAGE if _caused_by(e, SecretRefused) else FAILED) from None
    except BrokenPipeError:
        code = OK
    raise typer.Exit(code)


def run_until_done(main: Callable[[], Awaitable[T]]) -> T:
    """``asyncio.run(main())``; Ctrl-C or SIGTERM cancels it once, and raises Interrupted. A
    second one is ignored: asyncio's would raise KeyboardInterrupt wherever the clean-up is
    (an MCP server being stopped), which could hang it with the server left running."""
    import asyncio

    from massgen.errors import Interrupted

    async def cancellable() -> T:
        me = asyncio.current_task()
        if me is not None:
            for sig in (signal.SIGINT, signal.SIGTERM):
                asyncio.get_running_loop().add_signal_handler(
                    sig, lambda: me.cancelling() or me.cancel()
                )
        return await main()

    start_up_done()
    try:
        return asyncio.run(cancellable())
    except (KeyboardInterrupt, asyncio.CancelledError):
        raise Interrupted("interrupted") from None


def results_log(path: Path, name: str, *, resume: bool, fingerprint: dict[str, Any]) -> Any:
    """A results file (ResultLog) of ``name`` (batch, eval), saying what it found there."""
    from massgen.batch import ResultLog

    log = ResultLog(path, resume=resume, fingerprint=fingerprint)
    if log.moved_aside is not None:
        print(f"{name}: previous results moved to {log.moved_aside}", file=sys.stderr)
    if log.set_aside:
        damaged = f"{log.set_aside} damaged lines of {path} set aside in {log.bad_file}"
        print(f"{name}: {damaged}; their tasks run again", file=sys.stderr)
    return log


def run_logged(
    main: Callable[[], Awaitable[T]], log: Any, view: Any, summary: Any, name: str, resume: str
) -> T:
    """:func:`run_until_done` for a job writing results to ``log`` (batch, eval): the log and
    the view closed whatever happens; interrupted, or the file full, it says how to go on."""
    from massgen.display.batch import describe
    from massgen.errors import Interrupted, ResultsFileError

    try:
        try:
            return run_until_done(main)
        except Interrupted:
            summary.stopped = "interrupted"
            raise
        finally:
            log.close()
            if view is not None:
                view.close(summary)
    except Interrupted:
        kept = f"finished work is kept in {log.path}, {resume} to go on"
        print(f"{name} interrupted: {describe(summary)}; {kept}", file=sys.stderr)
        raise typer.Exit(INTERRUPTED) from None  # said: not "interrupted" once more
    except ResultsFileError as e:
        raise ResultsFileError(f"{e}; every result written before is kept, {resume}") from None


def stop_signal() -> asyncio.Future[signal.Signals]:
    """The first SIGINT or SIGTERM, for commands that serve until told to stop."""
    import asyncio

    start_up_done()
    loop = asyncio.get_running_loop()
    got: asyncio.Future[signal.Signals] = loop.create_future()

    def on_signal(sig: signal.Signals) -> None:
        if not got.done():
            got.set_result(sig)

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal, sig)
    return got


def stopped(got: asyncio.Future[signal.Signals]) -> tuple[str, int]:
    """The signal's name and the exit code of a served command: 130 after Ctrl-C, else 0."""
    sig = got.result() if got.done() else signal.SIGTERM
    return sig.name, INTERRUPTED if sig is signal.SIGINT else OK


Opt, Arg = typer.Option, typer.Argument
Command = Callable[..., int | None]


def group(help: str) -> typer.Typer:
    return typer.Typer(help=help, no_args_is_help=True)


def command(app: typer.Typer, name: str | None = None) -> Callable[[Command], Command]:
    """Register a command on ``app``, its errors mapped to exit codes (:func:`guarded`)."""

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


def _strategy(value: str | None) -> str | None:
    from massgen.types import STRATEGIES  # checked as read: the option's error, not the config's

    if value is not None and value not in STRATEGIES:
        raise typer.BadParameter(f"{value!r} is not one of {', '.join(STRATEGIES)}")
    return value


Strategy = Annotated[
    str | None,
    Opt("--strategy", "-s", callback=_strategy, help="parallel | sequential | consensus."),
]
Quiet = Annotated[bool, Opt("--quiet", "-q", help="No progress on stderr.")]
NoCache = Annotated[bool, Opt("--no-cache", help="Do not read or write the response cache.")]
MaxCost = Annotated[
    float | None, Opt("--max-cost", help="Stop before spending more than this (USD).")
]
