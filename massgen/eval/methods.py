"""The methods an eval compares, each a way of asking the team one question:

- ``single:<agent>``: that agent alone, one request;
- ``self-consistency`` (or ``self-consistency:<agent>``; default the first agent): ``k``
  independent samples of one agent, the majority of their answers;
- ``vote``: the consensus strategy in its ``vote`` mode: every agent answers once, the most
  given answer wins, no review;
- ``consensus``: the team's consensus strategy as its file configures it (with ``answer:
  auto``, the default, told the question's kind of answer rather than guessing it);
- ``moa``: mixture of agents, the others' answers synthesised by the team's ``aggregator``
  (without one, by the first agent, which then does not propose).

Every majority groups replies by :func:`massgen.strategies.agreement.answer_key` of the
question's kind (the question known) and breaks a tie for the answer given first (the
earliest seat, or draw): ``vote`` is the strategy itself, self-consistency's majority is
:func:`massgen.eval.grading.majority` on the same :class:`~massgen.strategies.agreement.Board`.
Every request is sent (the response cache is off: a cached reply would cost nothing and be
the same draw again). With ``equal_compute`` every sampling method (single, self-
consistency, vote) draws ``budget`` answers per question, the most the consensus run may
make (``vote`` dealt round-robin over the agents, the same majority); MoA and consensus keep
their own shape.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from massgen.budget import Budget
from massgen.errors import BudgetExceeded, ConfigError, MassGenError, RunError
from massgen.eval.grading import majority
from massgen.questions import EvalItem
from massgen.result import RunResult

if TYPE_CHECKING:
    from massgen.config import OrchestratorConfig

KINDS = ("single", "self-consistency", "vote", "consensus", "moa")
DEFAULT_METHODS = "single,vote,consensus,moa,self-consistency"


@dataclass(frozen=True, slots=True)
class Method:
    name: str
    kind: str
    agent: str | None = None


def parse_methods(
    spec: str | Sequence[str], seats: Sequence[str], aggregator: str | None = None
) -> list[Method]:
    """``single,vote,...`` as methods; ``single`` alone is one method per agent."""
    names = [s.strip() for s in (spec.split(",") if isinstance(spec, str) else spec) if s.strip()]
    hint = (
        "methods: "
        + ", ".join(KINDS)
        + "; single:<agent> and self-consistency:<agent> pick one agent"
    )
    out: list[Method] = []
    for name in names:
        kind, _, agent = name.partition(":")
        if kind not in KINDS or (agent and kind not in ("single", "self-consistency")):
            raise ConfigError(f"unknown method {name!r}", key="--methods", hint=hint)
        if agent and agent not in seats:
            raise ConfigError(
                f"{name!r}: no agent {agent!r} in the team",
                key="--methods",
                hint="agents: " + ", ".join(seats),
            )
        if kind == "single" and not agent:
            out += [Method(f"single:{a}", "single", a) for a in seats]
        elif kind == "self-consistency":
            out.append(Method(name, kind, agent or seats[0]))
        elif kind == "moa" and len(seats) < 2 and not aggregator:
            raise ConfigError(
                "moa needs two agents, or an orchestrator.aggregator", key="--methods"
            )
        else:
            out.append(Method(name, kind, agent or None))
    if not out:
        raise ConfigError("no methods given", key="--methods", hint=hint)
    return list({m.name: m for m in out}.values())


class Team(Protocol):
    """What the methods need of the team (an :class:`~massgen.Orchestrator`; eval sits
    beside it and does not import it: the orchestrator's ``evaluate`` calls eval)."""

    agents: dict[str, Any]
    config: OrchestratorConfig
    seed: int
    handles: dict[str, Any]

    def seats(self) -> list[str]: ...

    async def arun(
        self, task: str, strategy: str | None = None, *, budget: Budget | None = None
    ) -> RunResult: ...


CONSENSUS_KEYS = ("answer", "mode", "final")
"""Options of :func:`with_options` that set a key of ``consensus``."""


def with_options(config: OrchestratorConfig, **options: Any) -> OrchestratorConfig:
    """``config`` with ``aggregator``, ``cache_enabled`` or a consensus ``answer``, ``mode``
    or ``final`` set."""
    if "cache_enabled" in options:
        cache = config.cache.model_copy(update={"enabled": options.pop("cache_enabled")})
        config = config.model_copy(update={"cache": cache})
    update = {k: options.pop(k) for k in CONSENSUS_KEYS if k in options}
    if update:
        config = config.model_copy(update={"consensus": config.consensus.model_copy(update=update)})
    return config.model_copy(update=options) if options else config


def seated(team: Team, seats: Sequence[str], config: OrchestratorConfig) -> Team:
    """A team of ``team``'s class on its agents and handles (its connections, its
    resilience stack), with only ``seats`` taking part (the constructor's ``seats``: the
    others stay on hand as fallbacks, aggregator or presenter)."""
    cls: Any = type(team)
    built = cls(
        list(team.agents.values()), config, handles=team.handles, seed=team.seed, seats=seats
    )
    built.observability = None  # a tracer of its own would never be flushed
    return built


class Methods:
    """Runs each method on a question, all on ``team``'s agents and connections."""

    def __init__(
        self, team: Team, *, samples: int | None = None, equal_compute: bool = False
    ) -> None:
        self.team = team
        self.seats = team.seats()
        self.equal_compute = equal_compute
        if samples is not None and samples < 1:
            raise ConfigError("must be at least 1", key="--samples")
        consensus = team.config.consensus
        per_round = len(self.seats)
        self.budget = samples or per_round * (1 + consensus.max_rounds) + (
            consensus.final == "synthesize"
        )
        """Requests per question each sampling method draws under ``equal_compute``."""
        self.samples = samples or len(self.seats)
        """``k`` of self-consistency without ``equal_compute``."""
        self._built: dict[tuple[Any, ...], Team] = {}

    def draws(self, method: Method) -> list[str]:
        """Who answers, in order, for a sampling method (one entry per request)."""
        if method.kind == "single" and not self.equal_compute:
            return [method.agent or ""]
        if method.kind in ("single", "self-consistency"):
            return [method.agent or ""] * (self.budget if self.equal_compute else self.samples)
        if method.kind == "vote":
            n = self.budget if self.equal_compute else len(self.seats)
            return [self.seats[i % len(self.seats)] for i in range(n)]
        return []

    def _seated(self, seats: Sequence[str], **options: Any) -> Team:
        key = (tuple(seats), tuple(sorted(options.items())))
        if key not in self._built:
            self._built[key] = seated(self.team, seats, with_options(self.team.config, **options))
        return self._built[key]

    async def run(self, method: Method, item: EvalItem, budget: Budget) -> RunResult:
        if method.kind == "vote" and not self.equal_compute:  # the strategy's own vote
            team = self._seated(self.seats, answer=item.kind, mode="vote", final="winner")
            return await team.arun(item.prompt, "consensus", budget=budget)
        if method.kind == "consensus":  # as configured; `answer: auto` is told the kind
            auto = self.team.config.consensus.answer == "auto"
            team = self._seated(self.seats, **({"answer": item.kind} if auto else {}))
            return await team.arun(item.prompt, "consensus", budget=budget)
        if method.kind == "moa":
            aggregator = self.team.config.aggregator or self.seats[0]
            team = self._seated(self.seats, aggregator=aggregator)
            return await team.arun(item.prompt, "parallel", budget=budget)
        return await self._sample(method, item, budget)

    async def judge(self, agent: str, prompt: str, budget: Budget) -> RunResult:
        return await self._seated([agent], aggregator=None).arun(prompt, "parallel", budget=budget)

    async def _sample(self, method: Method, item: EvalItem, budget: Budget) -> RunResult:
        """Each draw a run of its own (one request unless retried), at once; the majority of
        the draws that answered (a failed one is out, as a failed agent is in consensus), its
        agreement and distribution in the result as consensus records them."""
        names = self.draws(method)
        repeats = len(names) > len(set(names))
        labels = [f"{n}#{names[:i].count(n) + 1}" if repeats else n for i, n in enumerate(names)]
        combined = RunResult(
            run_id="", task=item.prompt, strategy=method.kind, started_at=time.time()
        )
        started = time.perf_counter()

        async def draw(name: str) -> RunResult | BaseException:
            try:
                return await self._seated([name], aggregator=None).arun(
                    item.prompt, "parallel", budget=budget
                )
            except MassGenError as e:  # BudgetExceeded too: raised below, once all are in
                return e

        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(draw(n)) for n in names]
        texts: list[str] = []
        for label, task in zip(labels, tasks, strict=True):
            got = task.result()
            run = got if isinstance(got, RunResult) else getattr(got, "result", None)
            if isinstance(run, RunResult):
                combined.answers += run.answers
                combined.usage = combined.usage + run.usage
                combined.cost += run.cost
                combined.requests += run.requests
                combined.run_id = combined.run_id or run.run_id
            if isinstance(got, BaseException):
                combined.failed_agents[label] = str(got)
            texts.append(got.final_answer if isinstance(got, RunResult) else "")
        combined.duration = time.perf_counter() - started
        combined.history = [dict(zip(labels, texts, strict=True))]
        combined.rounds = 1
        live = {
            label: text
            for label, text, task in zip(labels, texts, tasks, strict=True)
            if isinstance(task.result(), RunResult)
        }
        if len(names) == 1:
            combined.final_answer, combined.winner = texts[0], labels[0] if live else None
        elif (vote := majority(item, live)).winner is not None:
            combined.final_answer, combined.winner = live[vote.winner], vote.winner
            combined.support, combined.distribution = vote.support, vote.distribution
        for task in tasks:
            if isinstance(spent := task.result(), BudgetExceeded):  # the batch stops; row fails
                combined.status = "failed"
                spent.result = combined  # type: ignore[attr-defined]
                raise spent
        if combined.failed_agents:
            combined.status = "degraded"
            if len(combined.failed_agents) == len(names):
                error = RunError(
                    "every draw failed (" + "; ".join(combined.failed_agents.values()) + ")"
                )
                combined.status, combined.error = "failed", str(error)
                error.result = combined  # type: ignore[attr-defined]
                raise error
        return combined
