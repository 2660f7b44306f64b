"""The Rich live view on stderr: a row per agent, the round and votes, then the answer.
Rich is imported only here, when a terminal is attached: ``--help`` and pipes stay fast."""

from __future__ import annotations

from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.markdown import Markdown
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from massgen import events as ev
from massgen.display.keys import echo_off
from massgen.display.plain import STATUS, ViewState, summary

STYLE = {
    **dict.fromkeys(STATUS.values(), "cyan"),  # a turn in flight
    **dict.fromkeys(("waiting", "stopped"), "dim"),
    **dict.fromkeys(("reviewing", "reviewed"), "magenta"),
    **dict.fromkeys(("fallback", "retrying", "no worker"), "red"),
    **dict.fromkeys(("revised", "tool"), "yellow"),
    "failed": "bold red",
}

# The status column never changes width, so the text beside it never moves: a status word
# and the retry and tool counters (``answering ↻2⚙3``), cut beyond that.
STATUS_WIDTH = 14
TOKENS_WIDTH = 7
COST_WIDTH = 8
MIN_TEXT_WIDTH = 24  # narrower, and tokens and cost (the summary has them) give up their room
# Around the text column: the panel's border and padding (4), two spaces between columns (8).
_FRAME = 12


class LiveView:
    """Subscribe it to a run; call :meth:`close` when the run is over."""

    def __init__(self, console: Console | None = None, *, show_final: bool = True) -> None:
        self.console = console or Console(stderr=True)
        self.state = ViewState()
        self.show_final = show_final
        self.ended = False  # whether the run's end (its summary line) has been shown
        # Keys typed during the run, Ctrl-C's "^C" included, would be echoed into the view
        # and push it down a line: its top border would be left behind, printed twice.
        self._restore_echo = echo_off(self.console)
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
            self.ended = True
            if self.show_final and e.result.final_answer:
                title = f"final answer · {e.result.winner}" if e.result.winner else "final answer"
                answer = Markdown(e.result.final_answer)
                self.console.print(Panel(answer, title=title, border_style="green"))

    def render(self) -> Any:
        s = self.state
        rows = list(s.rows.values())
        name_width = max([5, *(len(r.name) for r in rows)])
        counts = TOKENS_WIDTH + COST_WIDTH + 4  # those two columns and the gaps before them
        fixed = _FRAME + name_width + STATUS_WIDTH + counts
        narrow = self.console.width - fixed < MIN_TEXT_WIDTH  # then the text has their room
        text_width = max(8, self.console.width - fixed + narrow * counts)
        table = Table(expand=True, box=None, pad_edge=False)
        table.add_column("agent", style="bold", no_wrap=True, width=name_width)
        table.add_column("status", no_wrap=True, overflow="ellipsis", width=STATUS_WIDTH)
        table.add_column("text", ratio=1, overflow="ellipsis", no_wrap=True)
        if not narrow:
            table.add_column("tokens", justify="right", no_wrap=True, width=TOKENS_WIDTH)
            table.add_column("cost", justify="right", no_wrap=True, width=COST_WIDTH)
        for row in rows:
            style = STYLE.get(row.status, "green")
            retries = f"↻{row.retries}" if row.retries else ""
            marks = retries + (f"⚙{row.tool_calls}" if row.tool_calls else "")
            status = f"{row.status} {marks}" if marks else row.status
            tokens = f"~{row.token_estimate}" if row.pending else str(row.tokens)
            # Text, not str: "[openai 429]" in a reply is not markup
            cells = [Text(row.name), Text(status, style=style), Text(s.shown(row, text_width))]
            table.add_row(*cells, *([] if narrow else [tokens, f"${row.cost:.4f}"]))
        kind, at = s.strategy or "run", f"round {s.round} · {s.elapsed:.1f}s"
        votes = "votes " + ", ".join(f"{v}→{c}" for v, c in list(s.votes.items()))
        share = f" ({s.agreement:.0%})" if s.agreement is not None else ""
        leading = f"leading {s.leader}{share}" if s.leader else ""
        # Rather than be cut, the title drops the votes (each row shows its own), then the
        # strategy's name.
        for parts in ((kind, at, votes if s.votes else "", leading), (kind, at, leading)):
            title = " · ".join(p for p in parts if p)
            if len(title) + 6 <= self.console.width:  # its corners and spaces
                break
        else:
            title = " · ".join(p for p in (at, leading) if p)
        return Panel(Group(table), title=title, title_align="left", border_style="blue")

    def close(self) -> None:
        if self.live.is_started:
            self.live.stop()
        self._restore_echo()
