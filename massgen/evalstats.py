"""The statistics an eval reports: how sure an accuracy is, and whether two methods differ.

- :func:`wilson`: the Wilson score interval of a proportion (any ``z``; 95 % by default).
  Unlike the textbook ``p ± z·sqrt(p(1-p)/n)`` it stays inside [0, 1] and is not zero-width at
  0/n or n/n, which is where small eval sets live.
- :func:`bootstrap`: the percentile bootstrap interval of any statistic, resampled with a
  ``random.Random`` you seed, so a report is reproducible.
- :func:`mcnemar_exact`: the exact McNemar test of two methods graded on the same questions:
  a two-sided exact binomial test on the discordant pairs only.
- :func:`compare_paired`: both at once for two methods: accuracy difference, its paired
  bootstrap interval, and McNemar's p-value.

Pure standard library. Wrong arguments (``k > n``, an empty sample) raise ``ValueError``.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from statistics import NormalDist, fmean

Z95 = NormalDist().inv_cdf(0.975)
"""The two-sided 95 % normal quantile, 1.959963984540054."""


def z_for(confidence: float) -> float:
    """The two-sided normal quantile for a ``confidence`` in (0, 1): 0.95 gives 1.95996..."""
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), not {confidence!r}")
    return NormalDist().inv_cdf(0.5 + confidence / 2)


def wilson(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of ``successes``/``n`` at normal quantile ``z``.

    With p = k/n: centre (p + z²/2n) / (1 + z²/n), half-width
    z·sqrt(p(1-p)/n + z²/4n²) / (1 + z²/n). The bounds are exactly 0 at k = 0 and exactly 1
    at k = n. With n = 0 nothing is known: (0.0, 1.0).
    """
    if n < 0 or not 0 <= successes <= n:
        raise ValueError(f"need 0 <= successes <= n, not {successes}/{n}")
    if z <= 0:
        raise ValueError(f"z must be > 0, not {z!r}")
    if n == 0:
        return 0.0, 1.0
    p, z2 = successes / n, z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == n else min(1.0, centre + half)
    return low, high


def _quantile(ordered: Sequence[float], q: float) -> float:
    """The ``q`` quantile of sorted values, interpolated linearly between order statistics
    (Hyndman and Fan's type 7, numpy's default)."""
    position = q * (len(ordered) - 1)
    below = math.floor(position)
    above = min(below + 1, len(ordered) - 1)
    return ordered[below] + (ordered[above] - ordered[below]) * (position - below)


def bootstrap(
    values: Sequence[float],
    statistic: Callable[[Sequence[float]], float] = fmean,
    *,
    rng: random.Random | None = None,
    resamples: int = 2000,
    confidence: float = 0.95,
) -> tuple[float, float]:
    """The percentile bootstrap interval of ``statistic`` (the mean by default) of ``values``.

    Draws ``resamples`` samples of ``len(values)`` with replacement using ``rng``
    (``random.Random(0)`` if not given: the same input gives the same interval), computes the
    statistic of each, and returns its (1-confidence)/2 and (1+confidence)/2 quantiles.
    Caveat: with few values or a statistic at 0 or 1 the interval is too narrow (all 1s give
    (1.0, 1.0)); prefer :func:`wilson` for a single accuracy.
    """
    if not values:
        raise ValueError("bootstrap needs at least one value")
    if resamples < 1 or not 0 < confidence < 1:
        raise ValueError(
            f"need resamples >= 1 and 0 < confidence < 1, not {resamples}, {confidence}"
        )
    rng = rng if rng is not None else random.Random(0)
    n = len(values)
    stats = sorted(statistic(rng.choices(values, k=n)) for _ in range(resamples))
    tail = (1 - confidence) / 2
    return _quantile(stats, tail), _quantile(stats, 1 - tail)


def mcnemar_exact(only_a: int, only_b: int) -> float:
    """The two-sided exact McNemar p-value for the discordant pairs of two methods.

    ``only_a``: questions method A got right and B wrong; ``only_b``: the reverse. Under the
    null hypothesis (same accuracy) each discordant pair is a fair coin, so with
    m = only_a + only_b the p-value is min(1, 2·P[X <= min(only_a, only_b)]) for
    X ~ Binomial(m, 1/2), computed exactly. No discordant pair (m = 0), or a tie, gives 1.0.
    """
    if only_a < 0 or only_b < 0:
        raise ValueError(f"counts must be >= 0, not {only_a}, {only_b}")
    m = only_a + only_b
    if m == 0:
        return 1.0
    tail = sum(math.comb(m, i) for i in range(min(only_a, only_b) + 1))
    return min(1.0, 2 * tail / 2**m)


@dataclass(frozen=True)
class PairedComparison:
    """Two methods graded on the same ``n`` questions, A against B."""

    n: int
    accuracy_a: float
    accuracy_b: float
    difference: float
    """accuracy_a - accuracy_b."""
    only_a: int
    """Questions A got right and B wrong."""
    only_b: int
    """Questions B got right and A wrong."""
    interval: tuple[float, float]
    """Percentile bootstrap interval of the difference, questions resampled as pairs."""
    p_value: float
    """Exact McNemar test on the discordant pairs (:func:`mcnemar_exact`)."""


def compare_paired(
    a: Sequence[bool],
    b: Sequence[bool],
    *,
    rng: random.Random | None = None,
    resamples: int = 2000,
    confidence: float = 0.95,
) -> PairedComparison:
    """Compare method A's per-question correctness ``a`` with B's ``b`` (same questions, same
    order). The interval resamples questions, keeping each question's pair together, which is
    what makes it narrower than two independent intervals when A and B err on the same
    questions."""
    if len(a) != len(b) or not a:
        raise ValueError(f"need two equally long, non-empty lists, not {len(a)} and {len(b)}")
    diffs = [float(x) - float(y) for x, y in zip(a, b, strict=True)]
    only_a = sum(1 for x, y in zip(a, b, strict=True) if x and not y)
    only_b = sum(1 for x, y in zip(a, b, strict=True) if y and not x)
    n = len(a)
    return PairedComparison(
        n=n,
        accuracy_a=sum(map(bool, a)) / n,
        accuracy_b=sum(map(bool, b)) / n,
        difference=fmean(diffs),
        only_a=only_a,
        only_b=only_b,
        interval=bootstrap(diffs, rng=rng, resamples=resamples, confidence=confidence),
        p_value=mcnemar_exact(only_a, only_b),
    )
