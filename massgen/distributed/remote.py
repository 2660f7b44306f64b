"""The handle to an agent that a worker hosts: a turn is one request over the bus.

Strategies cannot tell it from a local handle: ``ask`` returns the same
:class:`~massgen.types.Completion`, or raises the same error the agent raised on its worker
(after the worker's own retries, so the caller does not retry again). Costs are computed
here, with this config's prices, exactly as for a local agent.

Memory stays with the run: the handle loads the agent's session from the run's store (once
per run, like a local agent), recalls its long-term items, and sends them with the turn;
a summary the worker had to write comes back in the reply and is stored here, its usage
accounted like a local agent's. The worker needs no store, the run no provider key.
"""

from __future__ import annotations

import dataclasses
import logging
import time
import uuid
from typing import TYPE_CHECKING, Any

from massgen.agents.agent import OnDelta
from massgen.agents.loop import tool_listener
from massgen.agents.turn import Turn
from massgen.distributed.codec import (
    completion_from_dict,
    error_from_dict,
    folded_from_dict,
    memory_to_dict,
    tool_events_from_list,
    turn_to_dict,
)
from massgen.distributed.live import event_id
from massgen.errors import TransportError
from massgen.memory.short_term import Folded, summary_events
from massgen.types import Completion

if TYPE_CHECKING:
    from massgen.agents.agent import Agent
    from massgen.distributed.live import LiveFeeds
    from massgen.mas import Agent as BusAgent


log = logging.getLogger(__name__)


class RemoteHandle:
    """Reaches ``agent`` through ``client``, a started bus agent of this run.

    ``timeout`` is how long one turn may take on the worker (see
    :mod:`massgen.distributed.timeouts`); ``supports_tools`` is what the worker's backend
    advertised, so the caller never needs to build (or hold keys for) that backend.
    ``live`` streams the worker's token deltas to ``on_delta`` (without it, each answer
    reaches ``on_delta`` whole, when it arrives).
    """

    def __init__(
        self,
        agent: Agent,
        client: BusAgent,
        *,
        timeout: float,
        supports_tools: bool,
        run: str = "",
        live: LiveFeeds | None = None,
    ) -> None:
        self.agent = agent
        self.name = agent.name
        self.timeout = timeout
        self.run = run
        self._client = client
        self._supports_tools = supports_tools
        self._live = live

    def __repr__(self) -> str:
        return f"RemoteHandle({self.name!r}, timeout={self.timeout:g})"

    @property
    def supports_tools(self) -> bool:
        return self._supports_tools

    async def ask(self, turn: Turn, on_delta: OnDelta | None = None) -> Completion:
        """Send ``turn`` to a live worker of this agent and wait for its answer.

        Raises the agent's own error, :class:`~massgen.mas.RequestTimeout` when no worker
        answers in time, or :class:`~massgen.mas.RemoteError` when every delivery failed.
        """
        memory = self.agent.memory
        if memory.needs_load:
            async with memory.lock:  # the run's first turn loads the session (and may fold)
                if await memory.load() and memory.may_fold:
                    return await self._ask(turn, on_delta, fold=True)
        return await self._ask(turn, on_delta, fold=False)

    async def _ask(self, turn: Turn, on_delta: OnDelta | None, *, fold: bool) -> Completion:
        agent = self.agent
        recalled = await agent.long_term.recall_for(self.name, turn) if agent.long_term else []
        # The deadline lets a worker that starts late skip a turn nobody waits for any more
        # (inboxes keep work for agents that are offline).
        deadline = time.time() + self.timeout
        payload: dict[str, Any] = {
            "turn": turn_to_dict(turn),
            "run": self.run,
            "deadline": deadline,
        }
        context = agent.memory.context(recalled, fold=fold)
        if context.summary or context.exchanges or context.recalled or context.fold:
            payload["memory"] = memory_to_dict(context)
        feed = await self._live.feed() if self._live is not None and on_delta else None
        key = uuid.uuid4().hex
        if feed is not None and on_delta is not None:
            feed.open(key, self.name, on_delta, tool_listener.get())
            payload["stream"] = {"to": feed.id, "key": key}
        shown, heard = "", set[tuple[str, str]]()
        started = time.perf_counter()
        try:
            answer = await self._client.request(self.name, payload, timeout=self.timeout)
            reply = answer.payload
        finally:
            if feed is not None:
                shown, heard = feed.close(key)
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "turn agent=%s phase=%s round=%d run=%s worker=%s status=%s seconds=%.3f",
                self.name,
                turn.phase,
                turn.round,
                self.run or "-",
                reply.get("worker") or "-",
                "error" if "error" in reply else "ok",
                time.perf_counter() - started,
            )
        if "error" in reply:
            if "folded" in reply:  # the summary was written before the answer failed: keep it
                await self._store_summary(folded_from_dict(reply["folded"]))
            raise error_from_dict(reply["error"], source=self.name)
        if "completion" not in reply:
            raise TransportError(f"agent {self.name!r} sent a reply with no completion")
        completion = completion_from_dict(reply["completion"])
        listener = tool_listener.get()
        if "events" in reply and listener is not None:
            for event in tool_events_from_list(reply["events"]):  # the worker's tool calls
                if event_id(event) not in heard:  # not already shown live
                    listener(event)
        if on_delta is not None and completion.text.startswith(shown):
            rest = completion.text[len(shown) :]
            if rest:  # what the streamed pieces have not shown yet (all of it, unstreamed)
                on_delta(rest)
        if "folded" in reply:
            completion = await self._keep(folded_from_dict(reply["folded"]), completion)
        return completion

    async def _keep(self, folded: Folded, completion: Completion) -> Completion:
        """Store the summary the worker wrote and account for it as a local agent would."""
        if await self._store_summary(folded):
            return completion
        return dataclasses.replace(  # nobody heard the summary's events: its usage rides along
            completion,
            usage=completion.usage + folded.completion.usage,
            requests=completion.requests + folded.completion.requests,
        )

    async def _store_summary(self, folded: Folded) -> bool:
        """Keep ``folded`` in the session; emit its events. ``False`` when nobody listens."""
        memory = self.agent.memory
        await memory.keep(folded)
        writer = memory.summarizer if memory.summarizer is not None else self.agent
        listener = tool_listener.get()
        if listener is None:
            return False
        for event in summary_events(folded, writer.cost_of(folded.completion)):
            listener(event)
        return True

    def cost_of(self, completion: Completion) -> float:
        return self.agent.cost_of(completion)
