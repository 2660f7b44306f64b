"""Exit codes, and turning our errors into one clear line instead of a traceback."""

from __future__ import annotations

import sys
from collections.abc import Callable

import typer

OK, FAILED, USAGE, DEGRADED, INTERRUPTED = 0, 1, 2, 3, 130
UNAVAILABLE = 69
"""Redis (a service the command needs) did not answer: not your file's fault, try again
once it is up (``EX_UNAVAILABLE`` of sysexits.h)."""


def fail(message: str, code: int) -> typer.Exit:
    prefix = "error: " if code != INTERRUPTED else ""
    print(prefix + message, file=sys.stderr, flush=True)
    return typer.Exit(code)


KEY_HINT = "check the API key (see README: Run with real providers)"


def _caused_by(error: BaseException | None, kind: type[BaseException]) -> bool:
    """Whether ``kind`` is in ``error``'s chain of ``raise ... from`` (a run wraps its
    agents' errors)."""
    for _ in range(16):
        if error is None:
            return False
        if isinstance(error, kind):
            return True
        error = error.__cause__
    return False


def guarded(fn: Callable[[], int | None]) -> None:
    """Run a command body; map errors to exit codes (see docs/cli.md)."""
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
    except ConfigError as e:
        raise fail(str(e), USAGE) from None
    except AuthenticationError as e:
        raise fail(f"{e}\n  hint: {KEY_HINT}", USAGE) from None
    except (KeyboardInterrupt, Interrupted):
        raise fail("interrupted", INTERRUPTED) from None
    except ServiceUnreachable as e:
        raise fail(str(e), UNAVAILABLE) from None
    except MassGenError as e:
        if _caused_by(e, AuthenticationError):  # e.g. every agent's key was refused
            raise fail(f"{e}\n  hint: {KEY_HINT}", USAGE) from None
        if _caused_by(e, SecretRefused):  # the run's and its workers' secrets differ
            raise fail(str(e), USAGE) from None
        raise fail(str(e), FAILED) from None
    except BrokenPipeError:
        code = OK
    raise typer.Exit(code)
