"""A cost budget shared by every request of a run or a batch (a denial-of-wallet guard).

Each request **reserves** its estimated cost before it is sent, and is refused
(:class:`BudgetExceeded`) when what is spent, plus what requests in flight have reserved,
plus its own estimate would pass the limit. When it ends, its reservation is replaced by
what it actually cost. So concurrent requests cannot together start more than the budget
covers, and a free request (a model nobody priced, a cached answer) is never refused,
even under a limit of 0.

The estimate uses the token estimator of :mod:`massgen.memory.tokens` (the agent's own,
which learns from the provider's counts) for the input, and for the output the turn's
``max_tokens`` when set, else the longest answer the model has given under this budget so
far, else :data:`DEFAULT_OUTPUT_TOKENS` (the rate limiter's default too); it is priced
with :mod:`massgen.backends.pricing`. Spend stays within the limit as long as requests cost
no more than estimated: set ``max_tokens`` to make the output side a hard bound.

A batch gives each task an *allowance* (:meth:`Budget.allowance`): the task's expected
cost, reserved before the task starts, so a task is only started when the budget can carry
it and tasks already running are not starved half way.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from massgen.errors import ConfigError, RunError

if TYPE_CHECKING:
    from massgen.agents.turn import Turn
    from massgen.types import Completion

DEFAULT_OUTPUT_TOKENS = 1024
"""Output tokens reserved for a request without ``max_tokens`` before the model has answered
once under this budget."""

_EPSILON = 1e-12  # USD: float sums of prices must not refuse a request that exactly fits


class BudgetExceeded(RunError):
    """The cost budget is spent, or cannot cover the next request; it is not sent."""


def check_limit(value: float | None, key: str = "--max-cost") -> float | None:
    """``value`` if it is a usable cost limit (finite, not negative), else a ConfigError."""
    if value is None:
        return None
    if not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        raise ConfigError(
            f"must be a finite number of US dollars, 0 or more (got {value!r})",
            key=key,
            hint="e.g. --max-cost 0.50",
        )
    return float(value)


@dataclass(slots=True)
class Budget:
    """``limit`` USD (``None``: unlimited) for every request that reserves through it."""

    limit: float | None = None
    spent: float = 0.0
    reserved: float = 0.0
    """Held by requests in flight and by allowances (see :meth:`allowance`)."""
    _outputs: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.limit = check_limit(self.limit, "max_cost")

    # -- questions ---------------------------------------------------------------------------
    def can_cover(self, estimate: float) -> bool:
        return self.limit is None or self.spent + self.reserved + estimate <= self.limit + _EPSILON

    @property
    def exhausted(self) -> bool:
        """Nothing is left for a request that costs anything."""
        if self.limit is None:
            return False
        used = self.spent + self.reserved
        return used > self.limit + _EPSILON or (used > 0 and used >= self.limit - _EPSILON)

    def check(self) -> None:
        """Refuse when the budget is spent (for a request whose cost cannot be estimated)."""
        if self.exhausted:
            raise self._refusal(0.0)

    # -- reserving ---------------------------------------------------------------------------
    def reserve(self, estimate: float) -> float:
        """Hold ``estimate`` USD for a request about to be sent; returns what was held (give
        it back to :meth:`settle`). Raises :class:`BudgetExceeded` if it does not fit."""
        estimate = max(0.0, estimate)
        if (estimate == 0.0 and self.exhausted) or not self.can_cover(estimate):
            raise self._refusal(estimate)
        self.reserved += estimate
        return estimate

    def release(self, held: float) -> None:
        """Give back a reservation (the request ended; its cost goes to :meth:`add`)."""
        self.reserved = max(0.0, self.reserved - held)

    def add(self, cost: float) -> None:
        self.spent += cost

    def reserve_turn(self, handle: Any, turn: Turn) -> float:
        """Reserve the estimated cost of an agent's turn (see the module docstring)."""
        return self.reserve(self.estimate_turn(handle, turn))

    def settle(self, held: float, completion: Completion) -> None:
        """A turn ended: give back its reservation and learn how long the model answers."""
        self.release(held)
        if completion.usage.output_tokens and completion.model:
            seen = self._outputs.get(completion.model, 0)
            self._outputs[completion.model] = max(seen, completion.usage.output_tokens)

    def estimate_turn(self, handle: Any, turn: Turn) -> float:
        """USD a turn of ``handle``'s agent is expected to cost; 0 when it cannot be known
        (an agent in another process) or the model is free."""
        if self.limit is None:
            return 0.0
        agent = getattr(handle, "agent", None)
        if agent is None:
            return 0.0
        from massgen.backends.pricing import price_of
        from massgen.types import ChatMessage

        model = agent.model_name()
        price = price_of(model, agent.prices or None) if model else None
        if price is None or (price.input == 0 and price.output == 0):
            return 0.0
        estimator = agent.memory.estimator
        messages = [ChatMessage("user", turn.prompt)]
        if agent.role:
            messages.insert(0, ChatMessage("system", agent.role))
        tokens_in = estimator.messages(messages)
        specs = turn.tools or (agent.toolbox.specs() if agent.tools else ())
        if specs:
            tokens_in += estimator.tools(specs)
        tokens_out = (
            turn.max_tokens
            or agent.max_tokens
            or _backend_max_tokens(agent.backend)
            or self._outputs.get(model)
            or self._outputs.get(model.rsplit("/", 1)[-1])
            or DEFAULT_OUTPUT_TOKENS
        )
        return (tokens_in * price.input + tokens_out * price.output) / 1_000_000

    # -- allowances (a batch's tasks) ----------------------------------------------------------
    def allowance(self, amount: float) -> Budget:
        """A budget for one task: ``amount`` is reserved here at once; the task's requests
        draw on it first and on this budget for the rest. :meth:`close` gives back what the
        task did not spend. Raises :class:`BudgetExceeded` if ``amount`` does not fit."""
        held = self.reserve(amount)
        return _Allowance(limit=None, parent=self, held=held, _outputs=self._outputs)

    def close(self) -> None:
        """Nothing to give back (see :meth:`allowance`)."""

    def _refusal(self, estimate: float) -> BudgetExceeded:
        if self.spent >= (self.limit or 0.0) - _EPSILON and self.spent > 0:
            return BudgetExceeded(
                f"cost budget of ${self.limit:.4f} reached (${self.spent:.4f} spent); "
                "stopped before the next request"
            )
        return BudgetExceeded(
            f"cost budget of ${self.limit:.4f} cannot cover the next request "
            f"(estimated ${estimate:.4f}; ${self.spent:.4f} spent, "
            f"${self.reserved:.4f} held by requests in flight); not sent"
        )


def _backend_max_tokens(backend: Any) -> int | None:
    """The ``max_tokens`` a backend sends by default, looked for through its wrappers."""
    for _ in range(8):
        if backend is None:
            return None
        found = getattr(backend, "max_tokens", None)
        if isinstance(found, int) and found > 0:
            return found
        backend = getattr(backend, "inner", None)
    return None


@dataclass(slots=True)
class _Allowance(Budget):
    """One task's share of a batch budget (see :meth:`Budget.allowance`).

    ``held`` is what the batch budget still reserves for this task and it has not spent;
    its requests in flight (``reserved``) draw on it first, and reserve any excess in the
    batch budget. What the task spends moves from ``held`` to the batch's ``spent``.
    """

    parent: Budget | None = None
    held: float = 0.0

    @property
    def _batch(self) -> Budget:
        assert self.parent is not None
        return self.parent

    def _room(self) -> float:
        return max(0.0, self.held - self.reserved)

    def can_cover(self, estimate: float) -> bool:
        return self._batch.can_cover(max(0.0, estimate - self._room()))

    @property
    def exhausted(self) -> bool:
        return self._room() <= 0 and self._batch.exhausted

    def reserve(self, estimate: float) -> float:
        estimate = max(0.0, estimate)
        room = self._room()
        if estimate > room:
            self.held += self._batch.reserve(estimate - room)  # raises if the batch cannot
        elif estimate == 0.0 and self.exhausted:
            raise self._refusal(0.0)
        self.reserved += estimate
        return estimate

    def add(self, cost: float) -> None:
        self.spent += cost
        self._batch.add(cost)
        moved = min(cost, self.held)
        self.held -= moved
        self._batch.release(moved)

    def estimate_turn(self, handle: Any, turn: Turn) -> float:
        return self._batch.estimate_turn(handle, turn)

    def close(self) -> None:
        """Give back to the batch what this task still holds."""
        self._batch.release(self.held)
        self.held = 0.0

    def _refusal(self, estimate: float) -> BudgetExceeded:
        return self._batch._refusal(estimate)
