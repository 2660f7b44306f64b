"""``ask_agent`` and ``broadcast``: agents of one team talking to each other.

During a run a teammate is reached through the run's handle (``ctx.peers``: in-process or on
a worker), so retries, cache, breaker, cost and budget apply; outside a run through the
agents given to :func:`connect`. Limits hold per top-level turn (``ctx.state``)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Annotated, Any

from pydantic import Field

from massgen import events as ev
from massgen.agents.agent import Agent
from massgen.agents.handle import LocalHandle
from massgen.errors import ToolError
from massgen.tools.base import BuiltinTool, S, ToolSettings
from massgen.tools.context import ToolContext
from massgen.types import Turn


class AskSettings(ToolSettings):
    max_depth: int = Field(default=2, ge=1, le=5)  # A asks B, B asks C...
    max_calls: int = Field(default=6, ge=1)  # per top-level turn, nested ones included
    max_question: int = Field(default=4000, gt=0)  # characters


class BroadcastSettings(ToolSettings):
    max_notes: int = Field(default=5, ge=1)  # per agent and top-level turn
    max_note: int = Field(default=2000, gt=0)  # characters


class _TeamTool(BuiltinTool[S]):
    def setup(self) -> None:
        self.team: dict[str, Agent] = {}  # set by :func:`connect`


class AskAgent(_TeamTool[AskSettings]):
    """Ask a teammate a question and get its answer. `agent` is a teammate's name, or
    `capability:NAME` for a teammate with that capability."""

    async def execute(
        self,
        ctx: ToolContext,
        agent: Annotated[str, Field(description="teammate name or capability:NAME")],
        question: Annotated[str, Field(min_length=1)],
    ) -> str:
        s, state, asker = self.settings, ctx.state, ctx.agent
        if not self.team and not ctx.peers:
            raise ToolError(f"{self.name} is not connected to a team")
        name = self._find(agent, asker, ctx.peers)
        depth = state.get("ask_depth", 0)
        if depth >= s.max_depth:
            raise ToolError(f"questions may nest {s.max_depth} deep at most")
        if state.get("ask_calls", 0) >= s.max_calls:
            raise ToolError(f"no more questions this turn (limit {s.max_calls})")
        state["ask_calls"] = state.get("ask_calls", 0) + 1
        if len(question) > s.max_question:
            raise ToolError(f"question longer than {s.max_question} characters")
        prompt = f"Your teammate {asker or 'an agent'} asks you:\n\n{question}"
        on_retry = None
        if ctx.emit is not None:
            ctx.emit(ev.AgentStarted(agent=name, phase="ask", prompt=prompt))
            on_retry = ev.retries_told(ctx.emit, name)  # told as the asker's own retries are
        state["ask_depth"] = depth + 1
        try:
            # The run's handle (in-process or on a worker), else a bare one outside a run.
            handle = ctx.peers.get(name) or LocalHandle(self.team[name])
            observed: dict[str, Any] = {"on_attempt": ctx.on_attempt} if ctx.on_attempt else {}
            completion = await handle.ask(
                Turn("ask", prompt), None, ctx, on_retry=on_retry, **observed
            )
            cost = handle.cost_of(completion)
        finally:
            state["ask_depth"] = depth
        if ctx.emit is not None:
            ctx.emit(ev.AgentAnswered.of(completion, agent=name, phase="ask", round=0, cost=cost))
        return completion.text or "(no answer)"

    def _find(self, wanted: str, asker: str, handles: Mapping[str, Any]) -> str:
        if wanted.startswith("capability:"):
            cap = wanted.partition(":")[2]
            able = [a.name for a in self.team.values() if a.name != asker and cap in a.capabilities]
            if not able:
                raise ToolError(f"no teammate has capability {cap!r}")
            return able[0]
        if wanted == asker:
            raise ToolError("an agent cannot ask itself")
        names = list(dict.fromkeys([*self.team, *handles]))
        if wanted not in names:
            others = ", ".join(n for n in names if n != asker) or "none"
            raise ToolError(f"no teammate named {wanted!r}; teammates: {others}")
        return wanted


class Broadcast(_TeamTool[BroadcastSettings]):
    """Leave a short note for every teammate; they see it at the start of their next turn."""

    def execute(self, ctx: ToolContext, note: Annotated[str, Field(min_length=1)]) -> str:
        s, sender = self.settings, ctx.agent
        if not self.team:
            raise ToolError(f"{self.name} is not connected to a team")
        if len(note) > s.max_note:
            raise ToolError(f"note longer than {s.max_note} characters")
        sent = ctx.state.setdefault("broadcasts", {})
        if sent.get(sender, 0) >= s.max_notes:
            raise ToolError(f"no more notes this turn (limit {s.max_notes})")
        sent[sender] = sent.get(sender, 0) + 1
        told = [a for a in self.team.values() if a.name != sender]
        for a in told:
            a.post_note(sender or "an agent", note)
        return f"note delivered to {len(told)} teammate(s)"


def connect(agents: Iterable[Agent]) -> None:
    """Connect every ``ask_agent``/``broadcast`` tool of ``agents`` to that team."""
    team = list(agents)
    for agent in team:
        for t in agent.toolbox.tools.values() if agent.tools else ():
            if isinstance(t, _TeamTool):
                t.team = {a.name: a for a in team}
