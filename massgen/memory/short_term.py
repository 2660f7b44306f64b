"""What one agent keeps in its context: the session's earlier exchanges, cut by its strategy
(``full``, ``sliding_window``, ``summary``; docs/memory.md). A worker answers with the run's
memory: a :class:`MemoryContext` in, a :class:`Folded` summary out."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Protocol

from massgen import events as ev
from massgen.errors import ContextLimitExceeded
from massgen.memory.session import Exchange, Sessions
from massgen.memory.window import RequestWindow, blocks, newest_fitting
from massgen.tokens import TokenEstimator, context_window
from massgen.types import ChatMessage, Completion, CompletionRequest, Usage

if TYPE_CHECKING:
    from massgen.backends.base import Backend


class Writer(Protocol):
    """Who writes a summary: the agent or its ``summarizer`` (an :class:`~massgen.Agent`)."""

    name: str
    role: str

    @property
    def model(self) -> str | None: ...

    @property
    def backend(self) -> Backend: ...

    def cost_of(self, completion: Completion) -> float: ...


REQUEST_OVERHEAD = 3  # tokens every request costs beyond its messages (the reply's priming)

SUMMARY_SYSTEM = (
    "You condense a conversation for your own later use. Keep facts, decisions, names, "
    "numbers and open questions; drop pleasantries. Write plain prose, no preamble."
)


@dataclass(frozen=True, slots=True)
class MemoryContext:
    """The memory one turn sees, as a value: what a run sends with a turn a worker answers."""

    summary: str = ""
    exchanges: tuple[Exchange, ...] = ()  # those the summary does not cover, oldest first
    recalled: tuple[str, ...] = ()
    fold: bool = False  # the run's first turn of this agent: fold what no longer fits


@dataclass(frozen=True, slots=True)
class Folded:
    """A summary written before a turn: ``text`` replaces the previous one and the oldest
    ``count`` exchanges; ``writer`` wrote it from ``prompt`` (``completion``)."""

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
        summarizer: Writer | None = None,
    ) -> None:
        self.strategy, self.size = strategy, size
        self.context_window = context_window  # overrides the model's known window
        self.summarizer = summarizer
        self.estimator = TokenEstimator()
        self.recalled: list[str] = []  # long-term items recalled for the current turn
        self.lock = asyncio.Lock()  # held while a run's first turn loads (and folds) the session
        self.attach(None, "", "")

    def attach(self, sessions: Sessions | None, name: str, agent: str) -> None:
        """Follow session ``name`` (``sessions`` None: no session); loaded on the next turn."""
        self._sessions, self._session, self._agent = sessions, name, agent
        self.summary, self._covered = "", 0
        self.exchanges: list[Exchange] = []
        self._loaded = sessions is None

    def fork(self, context: MemoryContext) -> Conversation:
        """A conversation of this strategy holding one turn's ``context``, apart from this."""
        conv = Conversation(self.strategy, self.size, context_window=self.context_window)
        conv.summarizer, conv.estimator = self.summarizer, self.estimator
        conv.summary, conv.exchanges = context.summary, list(context.exchanges)
        conv.recalled = list(context.recalled)
        return conv

    @property
    def needs_load(self) -> bool:
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

    async def load(self) -> bool:
        """Load the attached session once per run (hold :attr:`lock`); ``True`` if this did."""
        if self._loaded or self._sessions is None:
            return False
        self._loaded = True
        self.summary, self._covered = await self._sessions.summary(self._session, self._agent)
        exchanges = await self._sessions.exchanges(self._session, self._agent)
        self.exchanges = exchanges[self._covered :]
        return True

    async def prepare(
        self, agent: Writer, backend: Backend, on_event: ev.Subscriber | None
    ) -> Usage:
        """Load the session on a run's first turn and fold what no longer fits (``backend``:
        the writer's); the usage of the summary request, if any."""
        async with self.lock:
            folded = await self.fold(agent, backend, on_event) if await self.load() else None
            if folded is None:
                return Usage()
            await self.keep(folded)
            return folded.completion.usage

    async def fold(
        self, agent: Writer, backend: Backend, on_event: ev.Subscriber | None = None
    ) -> Folded | None:
        """For ``summary``: the summary, through the writer's ``backend``, folding the oldest
        exchanges beyond ``size`` (``None`` when all fits); :meth:`keep` applies it."""
        fold = self._to_fold(agent.role) if self.may_fold else 0
        if not fold:
            return None
        who = self.summarizer or agent
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
        done = await backend.complete(request)
        if not done.latency:
            done = replace(done, latency=time.perf_counter() - started)
        folded = Folded(done.text.strip(), fold, who.name, prompt, done)
        if on_event is not None:
            on_event(summary_events(folded, who.cost_of(done))[1])
        return folded

    async def keep(self, folded: Folded) -> None:
        """Take ``folded`` (written here or by a worker) as the summary and store it."""
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

    def system(self, role: str, summary: str | None = None) -> list[ChatMessage]:
        summary = self.summary if summary is None else summary
        head = "Summary of your earlier conversation in this session:\n" + summary
        text = (f"{role}\n\n{head}" if role else head) if summary else role
        return [ChatMessage("system", text)] if text else []

    def compose(
        self,
        role: str,
        prompt: str,
        *,
        model: str | None,
        reserve: int = 0,
        held: tuple[list[ChatMessage], list[str], str] | None = None,
    ) -> tuple[ChatMessage, ...]:
        """System prompt (with the summary), kept history, recalled memory and the prompt,
        within the context window less ``reserve``: the oldest history goes first, then the
        least relevant recalled items, then the summary (ContextLimitExceeded if the role
        and prompt alone do not fit). ``held``: (history, recalled, summary) to use."""
        history, recalled, summary = held or (self.history(), self.recalled, self.summary)
        count = self.estimator.message
        recalled = list(recalled)
        if self.size is not None and self.strategy != "full":
            fixed = sum(count(m) for m in self.system(role, summary))
            history = newest_fitting(history, max(0, self.size - fixed), count)
        window = context_window(model, self.context_window)

        def build() -> list[ChatMessage]:
            user = ChatMessage("user", _with_recalled(recalled, prompt))
            return [*self.system(role, summary), *history, user]

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

    def window(
        self, role: str, prompt: str, *, model: str | None, reserve: int = 0
    ) -> RequestWindow | None:
        """What keeps a tool loop's follow-up requests within the context window (``None``:
        window unknown): the opening messages, with room left for the loop's own."""
        window = context_window(model, self.context_window)
        if window is None:
            return None
        held = (self.history(), list(self.recalled), self.summary)

        def opening(room: int) -> tuple[ChatMessage, ...]:
            try:
                return self.compose(role, prompt, model=model, reserve=reserve + room, held=held)
            except ContextLimitExceeded:  # memory is all gone: the role and prompt alone
                return (*self.system(role, ""), ChatMessage("user", prompt))

        return RequestWindow(window - reserve - REQUEST_OVERHEAD, self.estimator.message, opening)


def _with_recalled(items: list[str], prompt: str) -> str:
    if not items:
        return prompt
    body = "\n".join(f"<memory>\n{item}\n</memory>" for item in items)
    return (
        "Recalled memory from earlier runs (may be outdated; use it only if relevant):\n"
        f"{body}\n\n{prompt}"
    )
