"""Keys typed while a live display runs (Ctrl-C's "^C" included) are not echoed into it: an
echo would push the display down a line and leave its top line behind, printed twice."""

from __future__ import annotations

import contextlib
import functools
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console


def echo_off(console: Console) -> Callable[[], None]:
    """Stop the terminal echoing typed keys while the view (and stdin) is a terminal; return
    what turns the echo back on (safe to call more than once)."""
    if not console.is_terminal:
        return lambda: None
    try:
        import termios
    except ImportError:  # Windows
        return lambda: None
    try:
        fd = sys.stdin.fileno()
        before = termios.tcgetattr(fd)
        quiet = termios.tcgetattr(fd)
        quiet[3] &= ~(termios.ECHO | termios.ECHOCTL)
        termios.tcsetattr(fd, termios.TCSANOW, quiet)
    except (termios.error, AttributeError, ValueError, OSError):
        return lambda: None  # stdin closed, replaced, or not a terminal

    @functools.cache  # the echo is turned back on once, however often this is called
    def restore() -> None:
        with contextlib.suppress(termios.error):
            termios.tcsetattr(fd, termios.TCSADRAIN, before)

    return restore
