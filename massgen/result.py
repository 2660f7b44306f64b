"""What a run returns: the final answer and everything that led to it."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from massgen.types import Usage

Status = Literal["done", "degraded", "failed", "interrupted"]


@dataclass(frozen=True, slots=True)
class AgentAnswer:
    """One agent's output for one turn. ``answered_by``: the fallback agent that took the turn,
    if any. ``reasoning``: the model's thinking text, kept for the record, not in ``text``."""

    agent: str
    phase: str
    round: int
    text: str
    usage: Usage
    cost: float
    latency: float
    model: str = ""
    answered_by: str = ""
    cached: bool = False
    reasoning: str = ""


@dataclass(frozen=True, slots=True)
class Vote:
    voter: str
    round: int
    for_agent: str
    reason: str = ""


@dataclass(slots=True)
class RunResult:
    """Everything a run produced. ``answers``: every turn of every agent, in order;
    ``history[r]``: each agent's answer after round ``r`` (0: the answer round); ``status``
    is ``degraded`` when some agents failed but an answer was still reached."""

    run_id: str
    task: str
    strategy: str
    final_answer: str = ""
    winner: str | None = None
    status: Status = "done"
    answers: list[AgentAnswer] = field(default_factory=list)
    votes: list[Vote] = field(default_factory=list)
    history: list[dict[str, str]] = field(default_factory=list)
    rounds: int = 0
    converged: bool = False
    failed_agents: dict[str, str] = field(default_factory=dict)
    usage: Usage = Usage()
    cost: float = 0.0
    requests: int = 0
    started_at: float = 0.0
    duration: float = 0.0
    error: str | None = None
    support: float | None = None
    """The agreement score: the share of live agents backing the winner's answer (by vote
    or by giving it), 0..1; ``None`` where the strategy does not judge agreement."""
    distribution: dict[str, int] = field(default_factory=dict)
    """Each extracted answer and how many live agents give it at the end."""

    @property
    def degraded(self) -> bool:
        return self.status == "degraded"

    def usage_by_agent(self) -> dict[str, Usage]:
        out: dict[str, Usage] = {}
        for a in self.answers:
            who = a.answered_by or a.agent
            out[who] = out.get(who, Usage()) + a.usage
        return out

    def cost_by_agent(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for a in self.answers:
            who = a.answered_by or a.agent
            out[who] = out.get(who, 0.0) + a.cost
        return out

    def latest_answers(self) -> dict[str, str]:
        """Each agent's answer, or its latest revision."""
        return dict(self.history[-1]) if self.history else {}

    def agreement(self, seats: int = 0) -> float | None:
        """The agreement score (:attr:`support`), else the winner's votes in the last round
        over the ``seats`` agents still running."""
        if self.support is not None:
            return self.support
        last = max((v.round for v in self.votes), default=None)
        votes = [v.for_agent for v in self.votes if v.round == last]
        live = seats - len(self.failed_agents)
        return round(votes.count(self.winner or "") / live, 4) if votes and live > 0 else None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["agreement"] = data.pop("support")
        data["usage"] = {**data["usage"], "total_tokens": self.usage.total_tokens}
        data["usage_by_agent"] = {k: asdict(v) for k, v in self.usage_by_agent().items()}
        data["cost_by_agent"] = self.cost_by_agent()
        return data
