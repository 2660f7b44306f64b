"""Exit codes, and turning our errors into one clear line instead of a traceback."""

from __future__ import annotations

import sys
from collections.abc import Callable

import typer

OK, FAILED, USAGE, DEGRADED, INTERRUPTED = 0, 1, 2, 3, 130


def fail(message: str, code: int) -> typer.Exit:
    prefix = "error: " if code != INTERRUPTED else ""
    print(prefix + message, file=sys.stderr, flush=True)
    return typer.Exit(code)


def guarded(fn: Callable[[], int | None]) -> None:
    """Run a command body; map errors to exit codes (see docs/cli.md)."""
    from massgen.errors import AuthenticationError, ConfigError, Interrupted, MassGenError

    try:
        code = fn() or OK
    except ConfigError as e:
        raise fail(str(e), USAGE) from None
    except AuthenticationError as e:
        raise fail(f"{e}\n  hint: check the API key (see README: Providers)", USAGE) from None
    except (KeyboardInterrupt, Interrupted):
        raise fail("interrupted", INTERRUPTED) from None
    except MassGenError as e:
        raise fail(str(e), FAILED) from None
    except BrokenPipeError:
        code = OK
    raise typer.Exit(code)
