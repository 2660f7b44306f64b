"""Batch progress on stderr (a Rich bar on a terminal, else plain lines), named for what runs."""

from __future__ import annotations

import sys
import time
from typing import Any

from massgen.batch.runner import BatchSummary

NARROW = 70  # columns below which the bar shows counts and cost only


def describe(s: BatchSummary, digits: int = 1) -> str:
    return (
        f"{s.done} done, {s.failed} failed, {s.skipped} skipped, {s.remaining} remaining; "
        f"{s.usage.input_tokens}+{s.usage.output_tokens} tokens, ${s.cost:.4f}, "
        f"{time.perf_counter() - s.started:.{digits}f}s"
    )


def tasks(n: int) -> str:
    return f"{n} task" + ("" if n == 1 else "s")


class PlainBatchView:
    """A line at most every ``every`` seconds, and one at the end."""

    def __init__(self, total: int, name: str = "batch", what: str = "") -> None:
        self.stream, self.every, self.last, self.name = sys.stderr, 2.0, 0.0, name
        print(f"{name}: {what or tasks(total)}", file=self.stream, flush=True)

    def __call__(self, row: dict[str, Any], summary: BatchSummary) -> None:
        now = time.monotonic()
        if now - self.last >= self.every and summary.remaining:  # the last: :meth:`close`'s
            self.last = now
            print(f"{self.name}: " + describe(summary), file=self.stream, flush=True)

    def close(self, summary: BatchSummary) -> None:
        print(f"{self.name} summary: " + describe(summary, 3), file=self.stream, flush=True)


class RichBatchView:
    """A progress bar with done/failed/total, rate, ETA, tokens and cost; a table at the end."""

    def __init__(self, total: int, skipped: int, name: str = "batch", what: str = "") -> None:
        from rich import progress as p
        from rich.console import Console

        from massgen.display.keys import echo_off

        self.console, self.name = Console(stderr=True), name
        self._restore_echo = echo_off(self.console)
        if what:
            self.console.print(f"{name}: {what}", markup=False)
        columns: list[Any] = [p.TextColumn(f"[bold]{name}"), p.BarColumn()]
        columns += [p.MofNCompleteColumn(), p.TextColumn("{task.fields[failed]} failed")]
        if self.console.width >= NARROW:  # else the counts would be cut: "2… 0 failed ... 0…"
            columns += [p.TextColumn("{task.fields[rate]}/s"), p.TimeRemainingColumn()]
            columns += [p.TimeElapsedColumn(), p.TextColumn("{task.fields[tokens]} tok")]
        else:
            columns[1] = p.BarColumn(bar_width=10)
        columns.append(p.TextColumn("${task.fields[cost]}"))
        self.progress = p.Progress(*columns, console=self.console)
        self.task = self.progress.add_task(
            "batch", total=total, completed=skipped, failed=0, rate="-", tokens=0, cost="0.0000"
        )
        self.progress.start()

    def __call__(self, row: dict[str, Any], summary: BatchSummary) -> None:
        elapsed = max(time.perf_counter() - summary.started, 1e-6)
        finished = summary.done + summary.failed
        self.progress.update(
            self.task,
            completed=finished + summary.skipped,
            failed=summary.failed,
            rate=f"{finished / elapsed:.1f}",
            tokens=summary.usage.total_tokens,
            cost=f"{summary.cost:.4f}",
        )

    def close(self, summary: BatchSummary) -> None:
        from rich.table import Table

        self.progress.stop()
        self._restore_echo()
        table = Table(title=f"{self.name} summary", show_header=False, box=None)
        shown = {"cost": f"${summary.cost:.4f}", "duration": f"{summary.duration:.3f}s"}
        for key, value in summary.as_dict().items():
            if value is not None:  # `stopped`, when the batch was not
                table.add_row(key, shown.get(key, str(value)))
        self.console.print(table)
