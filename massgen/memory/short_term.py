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

A turn answered by a worker elsewhere gets the same memory as a :class:`MemoryContext`: the
run loads the session and recalls long-term items, the worker composes the request from
them in a :meth:`Conversation.fork` of its own (never its agent's shared conversation) and
returns any summary it wrote as a :class:`Folded`, which the run stores
(:meth:`Conversation.keep`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from massgen import events as ev
from massgen.memory.session import Exchange, Sessions
from massgen.memory.tokens import ContextLimitExceeded, TokenEstimator, context_window
from massgen.memory.window import RequestWindow, blocks, newest_fitting
from massgen.types import ChatMessage, Completion, CompletionRequest, Usage

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


@dataclass(frozen=True, slots=True)
class MemoryContext:
    """The memory one turn sees, as a value: what a run sends along with a turn that a
    worker answers (the run owns the session and the long-term store; the worker owns the
    model, so it composes the request and writes any summary)."""

    summary: str = ""
    exchanges: tuple[Exchange, ...] = ()
    """The session's exchanges the summary does not cover, oldest first."""
    recalled: tuple[str, ...] = ()
    fold: bool = False
    """The run's first turn of this agent: fold what no longer fits into the summary."""


@dataclass(frozen=True, slots=True)
class Folded:
    """A summary written before a turn: ``text`` replaces the previous summary and the
    oldest ``count`` exchanges. ``writer`` is the agent whose backend wrote it, with the
    ``prompt`` it was given and its ``completion`` (usage, model, latency)."""

    text: str
    count: int
    writer: str
    prompt: str
    completion: Completion


def summary_events(folded: Folded, cost: float) -> tuple[ev.AgentStarted, ev.AgentAnswered]:
    """The events of a summary request, as a local agent emits them."""
    return (
        ev.AgentStarted(agent=folded.writer, phase="summary", prompt=folded.prompt),
        ev.AgentAnswered.of(
            folded.completion, agent=folded.writer, phase="summary", round=0, cost=cost
        ),
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
        """Usage of the summaries written so far (they are also reported as events)."""
        self._sessions: Sessions | None = None
        self._session = ""
        self._agent = ""
        self._covered = 0
        self._loaded = True
        self.lock = asyncio.Lock()
        """Held while a run's first turn loads the session (and folds it into the summary)."""

    def attach(self, sessions: Sessions | None, name: str, agent: str) -> None:
        """Follow session ``name`` (``sessions`` None: no session); loaded on the next turn."""
        self._sessions, self._session, self._agent = sessions, name, agent
        self.summary, self.exchanges, self._covered = "", [], 0
        self._loaded = sessions is None

    def fork(self, context: MemoryContext) -> Conversation:
        """A conversation of this agent's strategy and budget holding ``context``: one turn's
        memory, apart from this one's (it shares only the token estimator)."""
        conv = Conversation(
            self.strategy,
            self.size,
            context_window=self.context_window,
            summarizer=self.summarizer,
        )
        conv.estimator = self.estimator
        conv.summary, conv.exchanges = context.summary, list(context.exchanges)
        conv.recalled = list(context.recalled)
        return conv

    @property
    def needs_load(self) -> bool:
        """A session is attached and the run's first turn has not loaded it yet."""
        return not self._loaded

    @property
    def may_fold(self) -> bool:
        return self.strategy == "summary" and self.size is not None

    def context(
        self, recalled: list[str] | tuple[str, ...] = (), *, fold: bool = False
    ) -> MemoryContext:
        """What this conversation holds now, for a turn answered elsewhere."""
        return MemoryContext(self.summary, tuple(self.exchanges), tuple(recalled), fold)

    def history(self) -> list[ChatMessage]:
        out: list[ChatMessage] = []
        for e in self.exchanges:
            out += [ChatMessage("user", e.task), ChatMessage("assistant", e.answer)]
        return out

    def system(self, role: str) -> list[ChatMessage]:
        return self._system(role, self.summary)

    # -- before a turn ------------------------------------------------------------------------
    async def load(self) -> bool:
        """Load the attached session's summary and exchanges, once per run. ``True`` when this
        call loaded it (the run's first turn); hold :attr:`lock` around it."""
        if self._loaded or self._sessions is None:
            return False
        self._loaded = True
        sessions, name = self._sessions, self._session
        summary, covered = await sessions.summary(name, self._agent)
        exchanges = await sessions.exchanges(name, self._agent)
        self.summary, self.exchanges, self._covered = summary, exchanges[covered:], covered
        return True

    async def prepare(self, agent: Agent, backend: Backend, on_event: OnEvent | None) -> Usage:
        """Load the session on the first turn of a run and, for ``summary``, fold what no
        longer fits into the summary. Returns the usage of the summary request, if any."""
        async with self.lock:
            if not await self.load():
                return Usage()
            folded = await self.fold(agent, backend, on_event)
            if folded is None:
                return Usage()
            await self.keep(folded)
            return folded.completion.usage

    async def fold(
        self, agent: Agent, backend: Backend, on_event: OnEvent | None = None
    ) -> Folded | None:
        """For ``summary``: write the summary that folds the oldest exchanges no longer
        fitting ``size`` (with ``backend``, or the summarizer's); :meth:`keep` applies it.
        ``None`` when all fits."""
        if not self.may_fold:
            return None
        count = self._to_fold(agent.role)
        if not count:
            return None
        return await self._summarize(agent, backend, on_event, count)

    async def keep(self, folded: Folded) -> None:
        """Take ``folded`` (written here by :meth:`fold`, or by the worker that answered the
        turn) as the summary, and store it in the session so later runs start from it."""
        self.summary, self.exchanges = folded.text, self.exchanges[folded.count :]
        self._covered += folded.count
        if self._sessions is not None:
            await self._sessions.set_summary(self._session, self._agent, folded.text, self._covered)

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
    ) -> Folded:
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
        if not done.latency:
            done = dataclasses.replace(done, latency=time.perf_counter() - started)
        folded = Folded(done.text.strip(), fold, who.name, prompt, done)
        if on_event is not None:
            on_event(summary_events(folded, who.cost_of(done))[1])
        return folded

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
        return self._compose(
            role, prompt, model, reserve, self.history(), list(self.recalled), self.summary
        )

    def window(
        self, role: str, prompt: str, *, model: str | None, reserve: int = 0
    ) -> RequestWindow | None:
        """What keeps a tool loop's follow-up requests within the context window (``None``
        when the model's window is unknown): the turn's opening messages, composed from this
        conversation as it is now, with room left for the loop's own messages."""
        window = context_window(model, self.context_window)
        if window is None:
            return None
        history, recalled, summary = self.history(), list(self.recalled), self.summary

        def opening(room: int) -> tuple[ChatMessage, ...]:
            try:
                return self._compose(
                    role, prompt, model, reserve + room, history, recalled, summary
                )
            except ContextLimitExceeded:  # memory is all gone: the role and prompt alone
                return (*self._system(role, ""), ChatMessage("user", prompt))

        return RequestWindow(window - reserve - REQUEST_OVERHEAD, self.estimator.message, opening)

    def _system(self, role: str, summary: str) -> list[ChatMessage]:
        text = role
        if summary:
            head = "Summary of your earlier conversation in this session:\n" + summary
            text = f"{role}\n\n{head}" if role else head
        return [ChatMessage("system", text)] if text else []

    def _compose(
        self,
        role: str,
        prompt: str,
        model: str | None,
        reserve: int,
        history: list[ChatMessage],
        recalled: list[str],
        summary: str,
    ) -> tuple[ChatMessage, ...]:
        count = self.estimator.message
        recalled = list(recalled)
        if self.size is not None and self.strategy != "full":
            fixed = sum(count(m) for m in self._system(role, summary))
            history = newest_fitting(history, max(0, self.size - fixed), count)
        window = context_window(model, self.context_window)

        def build() -> list[ChatMessage]:
            user = ChatMessage("user", _with_recalled(recalled, prompt))
            return [*self._system(role, summary), *history, user]

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
