"""Log records from the command line: none by default; ``--log-level`` sends every logger's
to stderr through a :class:`~massgen.redact.SecretRedactor` (a library's DEBUG line cannot
print a key); ``worker`` and ``service`` show massgen's own anyway."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from massgen.errors import ConfigError
from massgen.redact import SecretRedactor

LEVELS = ("debug", "info", "warning", "error")
_CHATTY = ("markdown_it",)
_MARK = "_massgen_cli_handler"


class _Stderr(logging.StreamHandler):
    """Writes ``fmt`` lines, secrets redacted, to ``sys.stderr`` as it is at each record: the
    live view swaps it while it runs, so that log lines print above the view, not through it."""

    def __init__(self, fmt: str) -> None:
        super().__init__()
        self.setFormatter(logging.Formatter(fmt))
        self.addFilter(SecretRedactor())

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)


def configure(level: str) -> None:
    """Send every record at ``level`` or above to stderr, secrets redacted."""
    name = level.strip().lower()
    if name not in LEVELS:
        hint = "use one of: " + ", ".join(LEVELS) + " (or unset MASSGEN_LOG)"
        raise ConfigError(f"unknown log level {level!r}", key="--log-level", hint=hint)
    root = logging.getLogger()
    if any(getattr(h, _MARK, False) for h in root.handlers):
        return
    handler = _Stderr("%(asctime)s %(levelname)s %(name)s: %(message)s")
    setattr(handler, _MARK, True)
    root.addHandler(handler)
    root.setLevel(name.upper())
    for chatty in _CHATTY:  # rendering internals, not what anyone debugs a run for
        logging.getLogger(chatty).setLevel(max(logging.INFO, root.level))


@contextmanager
def log_to_stderr(level: int, fmt: str) -> Iterator[None]:
    """Show massgen's log records on stderr while a long-running command runs (the root
    logger is left alone: embedding programs keep their own logging). With ``--log-level``
    set, that choice stands and this does nothing."""
    if any(getattr(h, _MARK, False) for h in logging.getLogger().handlers):
        yield
        return
    handler = _Stderr(fmt)
    logger = logging.getLogger("massgen")
    before = logger.level
    logger.addHandler(handler)
    logger.setLevel(level)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(before)
