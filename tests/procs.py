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


def read_line(proc: subprocess.Popen[str], deadline: float) -> str | None:
    """One line of ``proc``'s stdout, read byte by byte from its descriptor (so nothing past
    the line is taken from a later ``communicate``); ``None`` at EOF. Raises
    :class:`TimeoutError` when no whole line came by ``deadline`` (``time.monotonic``)."""
    import select
    import time

    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    out = bytearray()
    while not out.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            raise TimeoutError("no line in time")
        byte = os.read(fd, 1)
        if not byte:
            return out.decode() or None
        out += byte
    return out.decode()


def start_ready(
    argv: list[str],
    *,
    ready: str,
    count: int = 1,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = 30,
) -> subprocess.Popen[str]:
    """Start ``argv``; return once it printed ``count`` stdout lines starting with ``ready``.
    A process that ends or stalls first is killed and the test fails with its stderr."""
    import time

    proc = subprocess.Popen(
        argv,
        cwd=cwd,
        env=dict(env) if env is not None else None,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + timeout
    seen = 0
    try:
        while seen < count:
            line = read_line(proc, deadline)
            if line is None:
                raise AssertionError("ended before it was ready")
            seen += line.startswith(ready)
    except (AssertionError, TimeoutError) as e:
        proc.kill()
        _, err = proc.communicate(timeout=10)
        raise AssertionError(f"{' '.join(argv[1:4])}: {e}:\n{err}") from None
    return proc


DUMMY_KEYS = {
    "OPENAI_API_KEY": "sk-dummy",
    "ANTHROPIC_API_KEY": "sk-ant-dummy",
    "GEMINI_API_KEY": "dummy",
    "XAI_API_KEY": "xai-dummy",
    "OPENROUTER_API_KEY": "sk-or-dummy",
}
"""A key for every provider that needs one: enough to build a team, never to reach anyone."""

KEY_VARS = (*DUMMY_KEYS, "GOOGLE_API_KEY")
"""Every variable a provider key is read from (unset them to test a missing key)."""
