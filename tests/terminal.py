"""The ``massgen`` command in a pseudo-terminal, its screen read through a terminal emulator:
what a user sees, cursor movements and all, for tests of the live view."""

from __future__ import annotations

import fcntl
import os
import pty
import select
import signal
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import pyte

_TAKE_TERMINAL = (
    "import fcntl, os, sys, termios; fcntl.ioctl(0, termios.TIOCSCTTY, 0); "
    "os.execv(sys.executable, [sys.executable, *sys.argv[1:]])"
)


class Terminal:
    """``python -m massgen ARGS`` on a ``columns`` x ``lines`` terminal (stdin, stdout and
    stderr all the terminal, as in a shell). Read it with :meth:`until`; type with
    :meth:`type`."""

    def __init__(
        self,
        *args: str,
        cwd: Path | None = None,
        columns: int = 120,
        lines: int = 40,
    ) -> None:
        self.screen = pyte.Screen(columns, lines)
        self.stream = pyte.ByteStream(self.screen)
        self.raw = bytearray()
        self.master, self.slave = pty.openpty()
        fcntl.ioctl(self.slave, termios.TIOCSWINSZ, struct.pack("HHHH", lines, columns, 0, 0))
        env = {**os.environ, "TERM": "xterm-256color"}
        for name in ("NO_COLOR", "COLUMNS", "LINES", "FORCE_COLOR", "TERM_PROGRAM"):
            env.pop(name, None)
        # A session of its own whose controlling terminal is this one, so that typing ^C
        # interrupts it as in a shell; then the command itself.
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _TAKE_TERMINAL, "-m", "massgen", *args],
            cwd=cwd,
            env=env,
            stdin=self.slave,
            stdout=self.slave,
            stderr=self.slave,
            start_new_session=True,
        )
        self.code: int | None = None

    # -- reading -------------------------------------------------------------------------
    def _pump(self, deadline: float) -> bool:
        """Feed what the program wrote so far to the screen; ``False`` at EOF."""
        left = max(0.0, deadline - time.monotonic())
        ready, _, _ = select.select([self.master], [], [], min(left, 0.5))
        if not ready:  # (this side holds the terminal open too: no EOF, just silence)
            return self.proc.poll() is None
        try:
            chunk = os.read(self.master, 65536)
        except OSError:  # EIO: every writer closed the terminal
            return False
        if not chunk:
            return False
        self._feed(chunk)
        return True

    def _feed(self, chunk: bytes) -> None:
        self.raw += chunk
        self.stream.feed(chunk)

    def until(self, seen: Callable[[list[str]], bool], timeout: float = 30) -> list[str]:
        """The screen's lines once ``seen(lines)`` holds; fails at ``timeout``."""
        deadline = time.monotonic() + timeout
        while not seen(self.lines()):
            if time.monotonic() > deadline:
                raise AssertionError("not seen in time; the screen:\n" + "\n".join(self.lines()))
            if not self._pump(deadline):
                if seen(self.lines()):
                    break
                raise AssertionError("ended first; the screen:\n" + "\n".join(self.lines()))
        return self.lines()

    def shows(self, *texts: str, timeout: float = 30) -> list[str]:
        return self.until(lambda ls: all(any(t in line for line in ls) for t in texts), timeout)

    def lines(self) -> list[str]:
        return [line.rstrip() for line in self.screen.display]

    def text(self) -> str:
        return "\n".join(line for line in self.lines() if line)

    def wait(self, timeout: float = 30) -> int:
        """Read to the end; the exit code."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self._pump(deadline):
            pass
        self.code = self.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        return self.code

    # -- typing --------------------------------------------------------------------------
    def type(self, keys: bytes) -> None:
        os.write(self.master, keys)

    def echoes(self) -> bool:
        """Whether the terminal echoes typed keys (as a shell leaves it)."""
        return bool(termios.tcgetattr(self.slave)[3] & termios.ECHO)

    def close(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        for fd in (self.master, self.slave):
            try:
                os.close(fd)
            except OSError:
                pass

    def __enter__(self) -> Terminal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def borders(lines: Sequence[str], corner: str = "╭") -> list[str]:
    """The panels' top borders on screen."""
    return [line for line in lines if line.startswith(corner)]
