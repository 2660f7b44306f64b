"""What the views show, folded from events: a row per agent (its status and text: the
streaming answer, a review as the vote it casts, a retry's reason, a tool), the round, the
votes; and :class:`PlainView`, line-by-line progress when stderr is not a terminal."""

from __future__ import annotations

import json
import re
import sys
import time
from dataclasses import dataclass, field
from typing import TextIO

from massgen import events as ev
from massgen.result import RunResult
from massgen.types import clipped

STATUS = {
    "answer": "answering",
    "review": "reviewing",
    "step": "working",
    "aggregate": "merging",
    "present": "presenting",
    "ask": "helping",
    "summary": "summarizing",
}
"""The status of a row while its agent takes a turn of each phase."""

BUSY = frozenset({*STATUS.values(), "retrying", "tool", "no worker"})
"""Statuses of a turn in flight: when the run ends first (Ctrl-C, a timeout), "stopped"."""

_KEPT = 400  # characters of streamed text a row keeps (it shows the end of them)
_REPLY_KEPT = 20_000  # of a review reply, which is parsed from its start
_VOTE = re.compile(r'"vote"\s*:\s*"[\s\[\'"]*([A-Za-z]+)')
_REASON = re.compile(r'"reason"\s*:\s*"((?:[^"\\]|\\.)*)')
_REVISE = re.compile(r'"revise"\s*:\s*"((?:[^"\\]|\\.)*)')


@dataclass(slots=True)
class Row:
    """One agent's line. ``text``: the end of the streamed text, or the answer once given;
    ``note``, while set, is shown instead (a retry's reason, a tool call, a review). ``tokens``:
    the provider's figures; ``pending``: characters of the turn in flight (a four-to-a-token
    estimate), from ``prompt``'s (where a retry starts again). ``labels``: a reviewer's ballot."""

    name: str
    status: str = "waiting"
    text: str = ""
    note: str = ""
    answer: str = ""
    tokens: int = 0
    pending: int = 0
    prompt: int = 0
    cost: float = 0.0
    retries: int = 0
    tool_calls: int = 0
    phase: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    reply: str = ""

    @property
    def token_estimate(self) -> int:
        """Tokens so far: the ended turns' counts, plus an estimate of the one in flight."""
        return self.tokens + (self.pending + 3) // 4 if self.pending else self.tokens


@dataclass(slots=True)
class ViewState:
    strategy: str = ""
    rows: dict[str, Row] = field(default_factory=dict)
    round: int = 0
    votes: dict[str, str] = field(default_factory=dict)
    leader: str | None = None
    agreement: float | None = None  # the leader's support after the last review round
    started: float = field(default_factory=time.monotonic)
    final: ev.FinalAnswer | None = None

    def apply(self, e: ev.Event) -> None:
        match e:
            case ev.AgentEvent():
                self._apply(self.row(e.agent), e)
            case ev.RunStarted():
                self.strategy = e.strategy
                for name in e.agents:
                    self.rows.setdefault(name, Row(name))
            case ev.RoundDone():
                self.leader, self.agreement = e.leader, e.agreement
            case ev.FinalAnswer():
                self.final = e
            case ev.RunEnded():
                for row in self.rows.values():  # a timeout or Ctrl-C cut these turns short
                    if row.status in BUSY:
                        row.status = "stopped"
                        row.pending = 0

    def _apply(self, row: Row, e: ev.AgentEvent) -> None:
        match e:
            case ev.AgentStarted():
                row.status = STATUS.get(e.phase, e.phase)
                row.phase = e.phase
                row.text = row.reply = ""
                row.note = "voting…" if e.phase == "review" else ""
                row.prompt = row.pending = len(e.prompt) or 1
                self.round = max(self.round, e.round)
            case ev.TokenDelta():
                row.pending += len(e.text)
                if row.phase == "review":
                    row.reply = (row.reply + e.text)[:_REPLY_KEPT]
                    row.note = review_note(row.reply, row.labels) or "voting…"
                else:
                    row.text = (row.text + e.text)[-_KEPT:]
                    row.note = ""
            case ev.AgentAnswered():
                row.tokens += e.usage.total_tokens
                row.pending = 0
                row.cost += e.cost
                if e.phase == "review":
                    row.status = "reviewed"
                    row.note = review_note(e.text, row.labels)
                    return
                # an ask reply is a teammate's help: not its answer
                if e.phase != "ask":
                    row.answer = e.text
                marks = [f"by {e.answered_by}"] if e.answered_by else []
                marks += ["cached"] if e.cached else []
                row.note = ""
                row.text = (f"({', '.join(marks)}) " if marks else "") + row.answer
                row.status = "answered" if e.phase == "answer" else "done"
            case ev.AgentRetrying():
                row.retries += 1
                row.text = row.reply = ""  # the retried stream starts over
                row.pending = row.prompt
                row.status = "retrying"
                of = f"/{e.limit}" if e.limit else ""
                row.note = f"retry {e.attempt}{of} in {e.wait:.1f}s: {e.error}"
            case ev.AgentWaiting():
                row.status = "no worker"
                row.note = e.note
            case ev.ToolCalled():
                row.tool_calls += 1
                row.status = "tool"
                row.note = f"{e.tool} {e.args}".strip()
            case ev.ToolResult():
                how = "ok" if e.ok else "failed: " + e.output
                row.note = f"{e.tool} {how} ({e.duration:.2f}s)"
            case ev.AgentFailedEvent():
                row.status = "failed" if e.dropped else "fallback"
                row.pending = 0
                row.note = e.error
            case ev.Ballot():
                row.labels = dict(e.labels)
            case ev.VoteCast():
                self.votes[e.agent] = e.for_agent
                row.status = "voted"
                row.note = f"→ {e.for_agent}" + (f": {e.reason}" if e.reason else "")
            case ev.Revised():
                self.votes.pop(e.agent, None)
                row.status = "revised"
                row.note = ""
                row.text = row.answer = e.text

    def row(self, name: str) -> Row:
        return self.rows.setdefault(name, Row(name))

    def shown(self, row: Row, width: int) -> str:
        """What ``row``'s text column shows in ``width`` characters: text streaming in from
        its end (the newest words), anything else from its start."""
        flat = " ".join((row.note or row.text).split())
        if len(flat) <= width or row.note or not row.pending:
            return clipped(flat, width)
        return "…" + flat[-(width - 1) :]

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started


def review_note(reply: str, labels: dict[str, str]) -> str:
    """A review reply (JSON text, as far as it has streamed) as a user reads it: ``→ bob:
    reason`` for a vote, ``revising: text`` for a revision; empty while neither can be told."""
    if revision := _REVISE.search(reply):
        return "revising: " + _unescape(revision.group(1))
    if (vote := _VOTE.search(reply)) is None:
        return ""
    label = vote.group(1).upper()
    who = labels.get(label) or f"answer {label}"
    reason = _REASON.search(reply)
    return f"→ {who}" + (f": {_unescape(reason.group(1))}" if reason else "")


def _unescape(fragment: str) -> str:
    """A JSON string's contents, which may stop mid-escape while it streams."""
    for cut in (fragment, fragment.rstrip("\\"), re.sub(r"\\u[0-9a-fA-F]{0,3}$", "", fragment)):
        try:
            return str(json.loads(f'"{cut}"'))
        except ValueError:
            continue
    return fragment


class PlainView:
    """Writes one line per meaningful event; never token deltas."""

    wants_deltas = False

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.ended = False  # whether the run's end (its summary line) has been written

    def __call__(self, e: ev.Event) -> None:
        if line := self.describe(e):
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
                how = "ok" if e.ok else "failed: " + clipped(e.output, 120)
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
                share = f", agreement {e.agreement:.0%}" if e.agreement is not None else ""
                return f"round {e.round}: leader {e.leader or '-'}{share} ({state})"
            case ev.RunEnded():
                return summary(e.result)
        return None


def summary(r: RunResult) -> str:
    """The run's one-line summary; then the agreement score and the answers given, if judged."""
    who = f", winner {r.winner}" if r.winner else ""
    line = f"{r.status}{who}: {r.rounds} round(s), {r.requests} requests, "
    cached = f" ({r.usage.cached_tokens} cached)" if r.usage.cached_tokens else ""
    line += f"{r.usage.input_tokens}+{r.usage.output_tokens} tokens{cached}, ${r.cost:.4f}, "
    line += f"{r.duration:.2f}s"
    if r.support is not None:
        given = ", ".join(f"{clipped(a, 24)} ({n})" for a, n in r.distribution.items())
        line += f"; agreement {r.support:.0%}"  # of the votes; the answers, as first given:
        line += f"; answers given: {given}" if len(r.distribution) > 1 else ""
    return line
