"""A cost budget shared by every request of a run or a batch (a denial-of-wallet guard): each
request reserves its estimated cost first, so concurrent requests never together start more
than the budget covers; a free request is never refused. See docs/batch.md."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from massgen.errors import BudgetExceeded, ConfigError

if TYPE_CHECKING:
    from massgen.types import Completion, Turn

DEFAULT_OUTPUT_TOKENS = 1024  # before the model has answered once under this budget

_EPSILON = 1e-12  # USD: float sums of prices must not refuse a request that exactly fits


def check_limit(value: float | None, key: str = "--max-cost") -> float | None:
    """``value`` if it is a usable cost limit (finite, not negative), else a ConfigError."""
    if value is None:
        return None
    if not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        message = f"must be a finite number of US dollars, 0 or more (got {value!r})"
        raise ConfigError(message, key=key, hint="e.g. --max-cost 0.50")
    return float(value)


@dataclass(slots=True)
class Budget:
    """``limit`` USD (``None``: unlimited) for every request that reserves through it."""

    limit: float | None = None
    spent: float = 0.0
    reserved: float = 0.0  # held by requests in flight and by allowances
    _outputs: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.limit = check_limit(self.limit, "max_cost")

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

    def reserve(self, estimate: float) -> float:
        """Hold ``estimate`` USD for a request about to be sent (BudgetExceeded if it does
        not fit); give what it returns back to :meth:`settle`."""
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
        """Reserve the estimated cost of an agent's turn (input tokens, then ``max_tokens``, else
        the longest answer seen, else :data:`DEFAULT_OUTPUT_TOKENS`; see docs/batch.md)."""
        return self.reserve(self.estimate_turn(handle, turn))

    def settle(self, held: float, completion: Completion) -> None:
        """A turn ended: give back its reservation and learn how long the model answers."""
        self.release(held)
        if completion.usage.output_tokens and completion.model:
            seen = self._outputs.get(completion.model, 0)
            self._outputs[completion.model] = max(seen, completion.usage.output_tokens)

    def estimate_turn(self, handle: Any, turn: Turn) -> float:
        """USD a turn of ``handle``'s agent is expected to cost (0: unknown, or free)."""
        if self.limit is None:
            return 0.0
        agent = getattr(handle, "agent", None)
        if agent is None:
            return 0.0
        from massgen.backends.base import layers
        from massgen.backends.pricing import price_of
        from massgen.types import ChatMessage

        model = agent.model_name()
        price = price_of(model, agent.prices or None) if model else None
        if price is None or (price.input == 0 and price.output == 0):
            return 0.0
        estimator = agent.memory.estimator
        system = [ChatMessage("system", agent.role)] if agent.role else []
        specs = turn.tools or (agent.toolbox.specs() if agent.tools else ())
        tokens_in = estimator.messages([*system, ChatMessage("user", turn.prompt)])
        tokens_in += estimator.tools(specs)  # no tools: 0
        tokens_out = (
            turn.max_tokens
            or agent.max_tokens
            or next((n for b in layers(agent.backend) if (n := _max_tokens(b))), None)
            or self._outputs.get(model)
            or self._outputs.get(model.rsplit("/", 1)[-1])
            or DEFAULT_OUTPUT_TOKENS
        )
        return (tokens_in * price.input + tokens_out * price.output) / 1_000_000

    def allowance(self, amount: float) -> Budget:
        """A budget for one task, ``amount`` reserved here at once (its requests draw on it
        first); :meth:`close` gives back what the task did not spend."""
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


def _max_tokens(backend: Any) -> int | None:
    found = getattr(backend, "max_tokens", None)
    return found if isinstance(found, int) and found > 0 else None


@dataclass(slots=True)
class _Allowance(Budget):
    """One task's share of a batch budget: ``held`` is what the batch still reserves for
    it; its requests draw on that first and reserve any excess in the batch."""

    parent: Budget = field(default_factory=Budget)
    held: float = 0.0

    def _room(self) -> float:  # held, not yet reserved by a request
        return max(0.0, self.held - self.reserved)

    def can_cover(self, estimate: float) -> bool:
        return self.parent.can_cover(max(0.0, estimate - self._room()))

    @property
    def exhausted(self) -> bool:
        return self._room() <= 0 and self.parent.exhausted

    def reserve(self, estimate: float) -> float:
        estimate = max(0.0, estimate)
        room = self._room()
        if estimate > room:
            self.held += self.parent.reserve(estimate - room)  # raises if the batch cannot
        elif estimate == 0.0 and self.exhausted:
            raise self._refusal(0.0)
        self.reserved += estimate
        return estimate

    def add(self, cost: float) -> None:
        self.spent += cost
        self.parent.add(cost)
        moved = min(cost, self.held)
        self.held -= moved
        self.parent.release(moved)

    def estimate_turn(self, handle: Any, turn: Turn) -> float:
        return self.parent.estimate_turn(handle, turn)

    def close(self) -> None:
        """Give back to the batch what this task still holds."""
        self.parent.release(self.held)
        self.held = 0.0

    def _refusal(self, estimate: float) -> BudgetExceeded:
        return self.parent._refusal(estimate)
