"""The handle to an agent that a worker hosts: a turn is one request over the bus.

Strategies cannot tell it from a local handle: ``ask`` returns the same
:class:`~massgen.types.Completion`, or raises the same error the agent raised on its worker
(after the worker's own retries, so the caller does not retry again). Costs are computed
here, with this config's prices, exactly as for a local agent.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from massgen.agents.agent import OnDelta
from massgen.agents.turn import Turn
from massgen.distributed.codec import completion_from_dict, error_from_dict, turn_to_dict
from massgen.errors import TransportError
from massgen.types import Completion

if TYPE_CHECKING:
    from massgen.agents.agent import Agent
    from massgen.mas import Agent as BusAgent


class RemoteHandle:
    """Reaches ``agent`` through ``client``, a started bus agent of this run.

    ``timeout`` is how long one turn may take on the worker (see
    :mod:`massgen.distributed.timeouts`); ``supports_tools`` is what the worker's backend
    advertised, so the caller never needs to build (or hold keys for) that backend.
    """

    def __init__(
        self,
        agent: Agent,
        client: BusAgent,
        *,
        timeout: float,
        supports_tools: bool,
        run: str = "",
    ) -> None:
        self.agent = agent
        self.name = agent.name
        self.timeout = timeout
        self.run = run
        self._client = client
        self._supports_tools = supports_tools

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
        # The deadline lets a worker that starts late skip a turn nobody waits for any more
        # (inboxes keep work for agents that are offline).
        deadline = time.time() + self.timeout
        payload = {"turn": turn_to_dict(turn), "run": self.run, "deadline": deadline}
        reply = await self._client.request(self.name, payload, timeout=self.timeout)
        if "error" in reply:
            raise error_from_dict(reply["error"], source=self.name)
        if "completion" not in reply:
            raise TransportError(f"agent {self.name!r} sent a reply with no completion")
        completion = completion_from_dict(reply["completion"])
        if on_delta is not None and completion.text:
            on_delta(completion.text)  # the live view shows the answer (one piece, not streamed)
        return completion

    def cost_of(self, completion: Completion) -> float:
        return self.agent.cost_of(completion)
