"""The Rich live view on stderr: a row per agent, the round and votes, then the answer.

Rich is imported only here (and only when a terminal is attached), keeping ``--help`` and
piped runs fast.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.markdown import Markdown
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from massgen import events as ev
from massgen.display.plain import summary
from massgen.display.state import ViewState

STYLE = {
    "waiting": "dim",
    "answering": "cyan",
    "reviewing": "magenta",
    "failed": "bold red",
    "revised": "yellow",
    "tool": "yellow",
}


class LiveView:
    """Subscribe it to a run; call :meth:`close` when the run is over."""

    def __init__(self, console: Console | None = None, *, show_final: bool = True) -> None:
        self.console = console or Console(stderr=True)
        self.state = ViewState()
        self.show_final = show_final
        # Live pulls a fresh rendering 12 times a second; events only update the state,
        # so a burst of token deltas costs nothing extra.
        self.live = Live(console=self.console, get_renderable=self.render, refresh_per_second=12)
        self.live.start()

    def __call__(self, e: ev.Event) -> None:
        self.state.apply(e)
        if isinstance(e, ev.RunEnded):
            self.live.refresh()
            self.close()
            self.console.print(Text(summary(e.result), style="dim"))
            if self.show_final and e.result.final_answer:
                title = f"final answer · {e.result.winner}" if e.result.winner else "final answer"
                self.console.print(
                    Panel(Markdown(e.result.final_answer), title=title, border_style="green")
                )

    def render(self) -> Any:
        s = self.state
        table = Table(expand=True, box=None, pad_edge=False)
        table.add_column("agent", style="bold", no_wrap=True)
        table.add_column("status", no_wrap=True)
        table.add_column("text", ratio=1, overflow="ellipsis", no_wrap=True)
        table.add_column("tokens", justify="right")
        table.add_column("cost", justify="right")
        for row in list(s.rows.values()):
            style = next((v for k, v in STYLE.items() if row.status.startswith(k)), "green")
            status = row.status + (f" ↻{row.retries}" if row.retries else "")
            status += f" ⚙{row.tool_calls}" if row.tool_calls else ""
            table.add_row(
                row.name,
                Text(status, style=style),
                s.tail(row),
                str(row.tokens),
                f"${row.cost:.4f}",
            )
        head = f"{s.strategy or 'run'} · round {s.round} · {s.elapsed:.1f}s"
        if s.votes:
            head += " · votes " + ", ".join(f"{v}→{c}" for v, c in list(s.votes.items()))
        if s.leader:
            head += f" · leading {s.leader}"
        return Panel(Group(table), title=head, title_align="left", border_style="blue")

    def close(self) -> None:
        if self.live.is_started:
            self.live.stop()
