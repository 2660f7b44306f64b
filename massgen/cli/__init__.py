"""The ``massgen`` command line. Thin: it parses, then calls the library.

Heavy modules (SDKs, Rich, the orchestrator) are imported inside commands, so
``massgen --help`` stays fast.
"""

from __future__ import annotations

from massgen.cli.app import app


def main() -> None:
    app()


__all__ = ["app", "main"]
