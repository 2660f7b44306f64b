"""The ``massgen`` command as a real process, for tests of what a user sees."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path


def run_massgen(
    *args: str,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    unset: tuple[str, ...] = (),
    timeout: float = 60,
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m massgen ARGS`` to the end; ``env`` adds to (``unset`` removes from)
    this process's environment."""
    full = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    for name in unset:
        full.pop(name, None)
    return subprocess.run(
        [sys.executable, "-m", "massgen", *args],
        cwd=cwd,
        env=full,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
