"""What a team of simulated agents should score: exact expected accuracies, to hold measured
ones against (tests/test_quiz_backend.py, bench/bench_quiz_theory.py).

The agents are the replay backend's ``quiz:`` (massgen/backends/quiz.py): agent i is right
with probability ``p_i``; with ``correlation`` c it uses the question's shared draw U with
probability c and its own draw otherwise (right iff the draw < p_i), so given U = u the
agents are independent, each right with chance q_i(u) = c·[u < p_i] + (1 - c)·p_i.

Majority vote: the answers are grouped by their extracted value and the largest group wins;
**a tie goes to the group of the earliest agent in config order** (agent 0). Wrong answers
either all ``coincide`` (one wrong group of n - k agents when k are right) or are all
``distinct`` (n - k groups of one). So with k right answers, majority is right iff

- ``coincide``: k > n - k, or k = n - k and agent 0 is right;
- ``distinct``: k >= 2, or k = 1 and agent 0 is right (every group then holds one agent).

:func:`majority` sums exactly over the (k, agent 0 right) distribution and integrates u
over the intervals between the p_i (q_i is constant on each). For equal p and no
correlation it is the binomial sum of :func:`majority_binomial` (3 agents at 0.7, wrong
answers coinciding: 0.784; never coinciding: 0.784 + 0.7·0.3² = 0.847). A self-consistency
run (k samples of one agent) is the same sum with ``[p] * k``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

Wrong = Literal["coincide", "distinct"]


def single(p: float) -> float:
    """One agent alone is right with its chance ``p``."""
    return p


def right_wins(k: int, n: int, first_right: bool, wrong: Wrong) -> bool:
    """Whether majority vote picks the right answer when ``k`` of ``n`` agents are right."""
    if wrong == "coincide":
        return k > n - k or (k == n - k and first_right)
    return k >= 2 or (k == 1 and first_right)


def _independent(qs: Sequence[float], wrong: Wrong) -> float:
    """Majority accuracy of independent agents right with chances ``qs`` (agent 0 first)."""
    n = len(qs)
    # by_first[r][k]: chance that agent 0's rightness is r and k agents are right in all
    by_first = [[0.0] * (n + 1) for _ in range(2)]
    by_first[1][1], by_first[0][0] = qs[0], 1 - qs[0]
    for q in qs[1:]:
        for row in by_first:
            for k in range(n, -1, -1):
                row[k] = row[k] * (1 - q) + (row[k - 1] * q if k else 0.0)
    return sum(
        by_first[r][k] for r in (0, 1) for k in range(n + 1) if right_wins(k, n, bool(r), wrong)
    )


def majority(ps: Sequence[float], *, correlation: float = 0.0, wrong: Wrong = "coincide") -> float:
    """Expected accuracy of the majority of the answers of agents with chances ``ps`` (in
    config order), ``correlation`` and ``wrong`` as the quiz draws them; exact."""
    if not ps:
        raise ValueError("majority needs at least one agent")
    if not all(0 <= p <= 1 for p in [*ps, correlation]):
        raise ValueError(f"chances and correlation are in [0, 1], not {ps}, {correlation}")
    cuts = sorted({0.0, 1.0, *ps})
    total = 0.0
    for low, high in zip(cuts, cuts[1:], strict=False):
        u = (low + high) / 2  # q_i is the same anywhere in [low, high)
        qs = [correlation * (u < p) + (1 - correlation) * p for p in ps]
        total += (high - low) * _independent(qs, wrong)
    return total


def majority_binomial(p: float, n: int, wrong: Wrong = "coincide") -> float:
    """:func:`majority` for ``n`` independent agents of equal chance ``p``, as a binomial
    sum: Σ C(n, k) p^k (1 - p)^(n - k) over the k where the right answer wins, a tie's k
    weighted by the chance k/n that agent 0 is among the right."""
    total = 0.0
    for k in range(n + 1):
        weight = math.comb(n, k) * p**k * (1 - p) ** (n - k)
        first = k / n  # chance agent 0 is one of the k right
        total += weight * (
            first * right_wins(k, n, True, wrong) + (1 - first) * right_wins(k, n, False, wrong)
        )
    return total
