"""A cost budget shared by every request of a run or a batch (a denial-of-wallet guard)."""

from __future__ import annotations

from dataclasses import dataclass

from massgen.errors import RunError


class BudgetExceeded(RunError):
    """The cost budget is spent; no further request is sent."""


@dataclass(slots=True)
class Budget:
    """``limit`` USD (``None``: unlimited). Checked before each request, so the overshoot
    is at most the requests already in flight."""

    limit: float | None = None
    spent: float = 0.0

    def check(self) -> None:
        if self.limit is not None and self.spent >= self.limit:
            raise BudgetExceeded(
                f"cost budget of ${self.limit:.4f} reached (${self.spent:.4f} spent); "
                "stopped before the next request"
            )

    def add(self, cost: float) -> None:
        self.spent += cost

    @property
    def exhausted(self) -> bool:
        return self.limit is not None and self.spent >= self.limit
