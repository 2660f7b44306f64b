"""Line-by-line progress for when stderr is not a terminal (CI logs, pipes)."""

from __future__ import annotations

import sys
from typing import TextIO

from massgen import events as ev
from massgen.result import RunResult


class PlainView:
    """Writes one line per meaningful event; never token deltas."""

    wants_deltas = False

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.ended = False
        """Whether the run's end (its summary line) has been written."""

    def __call__(self, e: ev.Event) -> None:
        line = self.describe(e)
        if line:
            print(line, file=self.stream, flush=True)
        if isinstance(e, ev.RunEnded):
            self.ended = True

    def describe(self, e: ev.Event) -> str | None:
        match e:
            case ev.RunStarted():
                return f"run {e.run_id}: {e.strategy} with {', '.join(e.agents)}"
            case ev.AgentAnswered():
                by = f" (answered by {e.answered_by})" if e.answered_by else ""
                cached = " cached" if e.cached else ""
                return (
                    f"  {e.agent} {e.phase} r{e.round}{by}: {e.usage.total_tokens} tok, "
                    f"${e.cost:.4f}, {e.latency:.2f}s{cached}"
                )
            case ev.AgentRetrying():
                of = f"/{e.limit}" if e.limit else ""
                return f"  {e.agent} retry {e.attempt}{of} in {e.wait:.1f}s: {e.error}"
            case ev.ToolCalled():
                return f"  {e.agent} calls {e.tool} {e.args}"
            case ev.ToolResult():
                how = "ok" if e.ok else "failed: " + " ".join(e.output.split())[:120]
                return f"  {e.agent} {e.tool} {how} ({e.duration:.2f}s)"
            case ev.AgentWaiting():
                return f"  {e.agent} {e.note}"
            case ev.AgentFailedEvent():
                what = "dropped" if e.dropped else "handing over to its fallback"
                return f"  {e.agent} failed ({what}): {e.error}"
            case ev.VoteCast():
                return f"  {e.agent} votes for {e.for_agent}"
            case ev.Revised():
                return f"  {e.agent} revised its answer"
            case ev.RoundDone():
                state = "converged" if e.converged else "no consensus yet"
                return f"round {e.round}: leader {e.leader or '-'} ({state})"
            case ev.RunEnded():
                return summary(e.result)
        return None


def summary(r: RunResult) -> str:
    who = f", winner {r.winner}" if r.winner else ""
    return (
        f"{r.status}{who}: {r.rounds} round(s), {r.requests} requests, "
        f"{r.usage.input_tokens}+{r.usage.output_tokens} tokens, ${r.cost:.4f}, "
        f"{r.duration:.2f}s"
    )
