"""What one agent keeps in its context: the session's earlier turns, cut by its strategy.

Strategies send every turn of a run as a fresh prompt (a consensus review embeds the
answers), so within one run there is nothing to remember. Memory is the conversation of a
*session*: at the end of each run every agent's exchange (the task and its own final answer:
its answer, its latest revision, its pipeline step or its synthesis) is appended to the
session; the next run in that session starts with them as prior user/assistant turns. Votes
and review prompts are not replayed (they refer to anonymous labels of a finished run); the
decision goes to long-term memory instead.

- ``full``: every earlier exchange (cut only by the model's context window).
- ``sliding_window``: the system prompt and the newest exchanges that fit ``size`` tokens.
- ``summary``: when the system prompt, summary and exchanges exceed ``size``, the oldest
  exchanges are folded into a running summary, written by the agent's own backend (or the
  ``summarizer`` agent's) and kept in the session, so it is written once, not every run.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from massgen import events as ev
from massgen.memory.session import Exchange, Sessions
from massgen.memory.tokens import ContextLimitExceeded, TokenEstimator, context_window
from massgen.memory.window import blocks, newest_fitting
from massgen.types import ChatMessage, CompletionRequest, Usage

if TYPE_CHECKING:
    from massgen.agents.agent import Agent
    from massgen.agents.loop import OnEvent
    from massgen.backends.base import Backend

REQUEST_OVERHEAD = 3
"""Tokens every request costs beyond its messages (the reply's priming)."""

SUMMARY_SYSTEM = (
    "You condense a conversation for your own later use. Keep facts, decisions, names, "
    "numbers and open questions; drop pleasantries. Write plain prose, no preamble."
)


class Conversation:
    """One agent's short-term memory: its strategy, its budget and the session it is in."""

    def __init__(
        self,
        strategy: str = "full",
        size: int | None = None,
        *,
        context_window: int | None = None,
        summarizer: Agent | None = None,
    ) -> None:
        self.strategy = strategy
        self.size = size
        self.context_window = context_window
        """Overrides the model's known window (``memory.context_window``)."""
        self.summarizer = summarizer
        self.estimator = TokenEstimator()
        self.summary = ""
        self.exchanges: list[Exchange] = []
        self.recalled: list[str] = []
        """Long-term items recalled for the current turn (set before each turn)."""
        self.summary_usage = Usage()
        """Usage of the summaries written so far (they are also reported as events)."""
        self._sessions: Sessions | None = None
        self._session = ""
        self._agent = ""
        self._loaded = True
        self._lock = asyncio.Lock()

    def attach(self, sessions: Sessions | None, name: str, agent: str) -> None:
        """Follow session ``name`` (``sessions`` None: no session); loaded on the next turn."""
        self._sessions, self._session, self._agent = sessions, name, agent
        self.summary, self.exchanges = "", []
        self._loaded = sessions is None

    def history(self) -> list[ChatMessage]:
        out: list[ChatMessage] = []
        for e in self.exchanges:
            out += [ChatMessage("user", e.task), ChatMessage("assistant", e.answer)]
        return out

    def system(self, role: str) -> list[ChatMessage]:
        text = role
        if self.summary:
            head = "Summary of your earlier conversation in this session:\n" + self.summary
            text = f"{role}\n\n{head}" if role else head
        return [ChatMessage("system", text)] if text else []

    # -- before a turn ------------------------------------------------------------------------
    async def prepare(self, agent: Agent, backend: Backend, on_event: OnEvent | None) -> Usage:
        """Load the session on the first turn of a run and, for ``summary``, fold what no
        longer fits into the summary. Returns the usage of the summary request, if any."""
        async with self._lock:
            if self._loaded or self._sessions is None:
                return Usage()
            self._loaded = True
            sessions, name = self._sessions, self._session
            summary, covered = await sessions.summary(name, self._agent)
            exchanges = await sessions.exchanges(name, self._agent)
            self.summary, self.exchanges = summary, exchanges[covered:]
            if self.strategy != "summary" or self.size is None:
                return Usage()
            fold = self._to_fold(agent.role)
            if not fold:
                return Usage()
            usage = await self._summarize(agent, backend, on_event, fold)
            await sessions.set_summary(name, self._agent, self.summary, covered + fold)
            self.exchanges = self.exchanges[fold:]
            return usage

    def summary_budget(self) -> int:
        return max(32, (self.size or 0) // 4)

    def _to_fold(self, role: str) -> int:
        """How many of the oldest exchanges must go into the summary (0: all fits)."""
        assert self.size is not None
        count = self.estimator.message
        used = sum(count(m) for m in [*self.system(role), *self.history()])
        if used <= self.size:
            return 0
        header = f"{role}\n\nSummary of your earlier conversation in this session:\n"
        base = count(ChatMessage("system", header)) + self.summary_budget()
        kept = newest_fitting(self.history(), max(0, self.size - base), count)
        return max(1, len(self.exchanges) - len(kept) // 2)

    async def _summarize(
        self, agent: Agent, backend: Backend, on_event: OnEvent | None, fold: int
    ) -> Usage:
        who = self.summarizer or agent
        handle = getattr(who, "local_handle", None)
        used = backend if who is agent else (handle.backend if handle else who.backend)
        lines = [f"Summary so far:\n{self.summary}\n"] if self.summary else []
        for e in self.exchanges[:fold]:
            lines += [f"User: {e.task}", f"Assistant: {e.answer}"]
        prompt = "\n".join(lines) + "\n\nWrite the updated summary."
        request = CompletionRequest(
            messages=(ChatMessage("system", SUMMARY_SYSTEM), ChatMessage("user", prompt)),
            model=who.model,
            max_tokens=self.summary_budget(),
        )
        if on_event is not None:
            on_event(ev.AgentStarted(agent=who.name, phase="summary", prompt=prompt))
        started = time.perf_counter()
        done = await used.complete(request)
        cost = who.cost_of(done)
        if on_event is not None:
            on_event(
                ev.AgentAnswered(
                    agent=who.name,
                    phase="summary",
                    round=0,
                    text=done.text,
                    usage=done.usage,
                    cost=cost,
                    latency=done.latency or time.perf_counter() - started,
                    cached=done.cached,
                )
            )
        self.summary = done.text.strip()
        self.summary_usage = self.summary_usage + done.usage
        return done.usage

    # -- the request --------------------------------------------------------------------------
    def compose(
        self, role: str, prompt: str, *, model: str | None, reserve: int = 0
    ) -> tuple[ChatMessage, ...]:
        """The messages of one request: system prompt (with the summary), the history the
        strategy keeps, then the prompt (after any recalled memory).

        Never more than the model's context window (less ``reserve`` output tokens): the
        oldest history goes first, then the least relevant recalled items, then the summary;
        :class:`ContextLimitExceeded` if the role and prompt alone do not fit.
        """
        count = self.estimator.message
        history = self.history()
        recalled = list(self.recalled)
        summary = self.summary
        if self.size is not None and self.strategy != "full":
            fixed = sum(count(m) for m in self.system(role))
            history = newest_fitting(history, max(0, self.size - fixed), count)
        window = context_window(model, self.context_window)

        def build() -> list[ChatMessage]:
            saved, self.summary = self.summary, summary
            try:
                system = self.system(role)
            finally:
                self.summary = saved
            return [*system, *history, ChatMessage("user", _with_recalled(recalled, prompt))]

        messages = build()
        if window is None:
            return tuple(messages)
        limit = window - reserve - REQUEST_OVERHEAD
        while sum(count(m) for m in messages) > limit:
            if history:
                history = [m for b in blocks(history)[1:] for m in b]
            elif recalled:
                recalled.pop()
            elif summary:
                summary = ""
            else:
                need = sum(count(m) for m in messages)
                raise ContextLimitExceeded(
                    f"the request needs about {need} tokens but the context window of "
                    f"{model or 'the model'} leaves {max(0, limit)} after {reserve} reserved "
                    f"for the answer ({window} in all); shorten the task or the role, lower "
                    "max_tokens, or set memory.context_window for a larger model"
                )
            messages = build()
        return tuple(messages)


def _with_recalled(items: list[str], prompt: str) -> str:
    if not items:
        return prompt
    body = "\n".join(f"<memory>\n{item}\n</memory>" for item in items)
    return (
        "Recalled memory from earlier runs (may be outdated; use it only if relevant):\n"
        f"{body}\n\n{prompt}"
    )
