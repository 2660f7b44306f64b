"""What the views show, folded from events: one row per agent, the round, the votes."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from massgen import events as ev

TAIL = 72


@dataclass(slots=True)
class Row:
    name: str
    model: str = ""
    status: str = "waiting"
    text: str = ""
    answer: str = ""
    tokens: int = 0
    cost: float = 0.0
    retries: int = 0
    tool_calls: int = 0


@dataclass(slots=True)
class ViewState:
    strategy: str = ""
    rows: dict[str, Row] = field(default_factory=dict)
    round: int = 0
    votes: dict[str, str] = field(default_factory=dict)
    leader: str | None = None
    started: float = field(default_factory=time.monotonic)
    final: ev.FinalAnswer | None = None

    def apply(self, e: ev.Event) -> None:
        match e:
            case ev.RunStarted():
                self.strategy = e.strategy
                for name in e.agents:
                    self.rows.setdefault(name, Row(name))
            case ev.AgentStarted():
                row = self.row(e.agent)
                row.status = {"answer": "answering", "review": "reviewing"}.get(e.phase, e.phase)
                row.text = ""
                self.round = max(self.round, e.round)
            case ev.TokenDelta():
                row = self.row(e.agent)
                row.text = (row.text + e.text)[-400:]
            case ev.AgentAnswered():
                row = self.row(e.agent)
                row.tokens += e.usage.total_tokens
                row.cost += e.cost
                # a review reply is a vote, an ask reply a teammate's help: not its answer
                if e.phase not in ("review", "ask"):
                    row.answer = e.text
                row.text = row.answer
                by = f" (by {e.answered_by})" if e.answered_by else ""
                row.status = ("answered" if e.phase == "answer" else "done") + by
                if e.cached:
                    row.status += " [cached]"
            case ev.AgentRetrying():
                row = self.row(e.agent)
                row.retries += 1
                row.text = ""  # the retried stream starts over
                row.status = f"retry {e.attempt} in {e.wait:.1f}s"
            case ev.ToolCalled():
                row = self.row(e.agent)
                row.tool_calls += 1
                row.status = f"tool {e.tool}"
            case ev.ToolResult():
                self.row(e.agent).status = f"tool {e.tool} " + ("ok" if e.ok else "failed")
            case ev.AgentFailedEvent():
                self.row(e.agent).status = "failed" if e.dropped else "failed, fallback"
            case ev.VoteCast():
                self.votes[e.agent] = e.for_agent
                self.row(e.agent).status = f"voted {e.for_agent}"
            case ev.Revised():
                self.votes.pop(e.agent, None)
                row = self.row(e.agent)
                row.status = "revised"
                row.text = row.answer = e.text
            case ev.RoundDone():
                self.leader = e.leader
            case ev.FinalAnswer():
                self.final = e

    def row(self, name: str) -> Row:
        return self.rows.setdefault(name, Row(name))

    def tail(self, row: Row) -> str:
        flat = " ".join(row.text.split())
        return flat if len(flat) <= TAIL else "…" + flat[-(TAIL - 1) :]

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started
