"""massgen.evalstats against published values, brute force, and properties."""

from __future__ import annotations

import math
import random
from fractions import Fraction
from statistics import NormalDist, median

import pytest
from hypothesis import given
from hypothesis import strategies as st

from massgen.evalstats import (
    Z95,
    bootstrap,
    compare_paired,
    mcnemar_exact,
    wilson,
    z_for,
)

# Newcombe (1998), "Two-sided confidence intervals for the single proportion", Stat. Med. 17,
# Table I, method 3 (score interval without continuity correction), and the common 7/10.
PUBLISHED = [
    (81, 263, 0.2553, 0.3662),
    (15, 148, 0.0624, 0.1605),
    (0, 20, 0.0, 0.1611),
    (1, 29, 0.0061, 0.1718),
    (7, 10, 0.3968, 0.8922),
    (0, 10, 0.0, 0.2775),
    (10, 10, 0.7225, 1.0),
]


@pytest.mark.parametrize(("k", "n", "low", "high"), PUBLISHED)
def test_wilson_matches_published_intervals(k: int, n: int, low: float, high: float) -> None:
    got = wilson(k, n)
    assert got[0] == pytest.approx(low, abs=5e-5)
    assert got[1] == pytest.approx(high, abs=5e-5)


def test_wilson_is_exactly_zero_and_one_at_the_ends() -> None:
    assert wilson(0, 10)[0] == 0.0
    assert wilson(10, 10)[1] == 1.0
    assert wilson(0, 0) == (0.0, 1.0)  # nothing known


def test_wilson_takes_any_z() -> None:
    assert z_for(0.95) == pytest.approx(1.959964, abs=1e-6)
    assert z_for(0.95) == pytest.approx(Z95)
    assert z_for(0.99) == pytest.approx(2.575829, abs=1e-6)
    low, high = wilson(7, 10, z=z_for(0.99))
    low95, high95 = wilson(7, 10)
    assert low < low95 and high95 < high  # 99 % holds the 95 % interval
    # z = 1: centre (0.7 + 0.05) / 1.1, half sqrt(0.021 + 0.0025) / 1.1
    assert wilson(7, 10, z=1.0) == pytest.approx(
        ((0.75 - math.sqrt(0.0235)) / 1.1, (0.75 + math.sqrt(0.0235)) / 1.1)
    )


@pytest.mark.parametrize(
    ("args", "kwargs"),
    [((11, 10), {}), ((-1, 10), {}), ((0, -1), {}), ((3, 10), {"z": 0.0})],
)
def test_wilson_refuses_impossible_counts(args: tuple[int, int], kwargs: dict) -> None:
    with pytest.raises(ValueError):
        wilson(*args, **kwargs)


@pytest.mark.parametrize("confidence", [0.0, 1.0, 1.5, -0.1])
def test_z_for_refuses_a_confidence_outside_zero_one(confidence: float) -> None:
    with pytest.raises(ValueError):
        z_for(confidence)


@given(st.integers(1, 5000).flatmap(lambda n: st.tuples(st.integers(0, n), st.just(n))))
def test_wilson_holds_the_estimate_inside_zero_one(kn: tuple[int, int]) -> None:
    k, n = kn
    low, high = wilson(k, n)
    assert 0.0 <= low <= k / n <= high <= 1.0
    assert low < high


@given(st.integers(0, 50), st.integers(1, 50), st.integers(2, 20))
def test_wilson_narrows_as_n_grows(k: int, extra: int, factor: int) -> None:
    n = k + extra
    low, high = wilson(k, n)
    low2, high2 = wilson(k * factor, n * factor)  # the same proportion, more questions
    assert high2 - low2 < high - low


@given(st.integers(0, 30), st.integers(0, 30))
def test_wilson_is_symmetric_in_successes_and_failures(k: int, f: int) -> None:
    if k + f == 0:
        return
    low, high = wilson(k, k + f)
    low_f, high_f = wilson(f, k + f)
    assert low == pytest.approx(1 - high_f, abs=1e-12)
    assert high == pytest.approx(1 - low_f, abs=1e-12)


# -- McNemar ---------------------------------------------------------------------------------


def test_mcnemar_exact_matches_the_binomial_by_hand() -> None:
    assert mcnemar_exact(1, 8) == pytest.approx(0.0390625)  # 2 * (1 + 9) / 512
    assert mcnemar_exact(8, 1) == mcnemar_exact(1, 8)
    assert mcnemar_exact(0, 5) == 0.0625  # 2 / 32
    assert mcnemar_exact(0, 10) == pytest.approx(2 / 1024)
    assert mcnemar_exact(2, 12) == pytest.approx(0.01293945, abs=1e-8)  # 2 * 106 / 16384


@pytest.mark.parametrize("b", [0, 1, 4, 50])
def test_mcnemar_exact_is_one_without_imbalance(b: int) -> None:
    assert mcnemar_exact(b, b) == 1.0  # b = c, and b + c = 0 at b = 0
    assert mcnemar_exact(b, b + 1) == 1.0


def test_mcnemar_exact_handles_many_discordant_pairs() -> None:
    p = mcnemar_exact(4000, 4300)  # 2**8300 does not fit a float; the ratio does
    # close to the normal approximation with continuity correction, at this size
    z = (300 - 1) / math.sqrt(8300)
    assert p == pytest.approx(2 * (1 - NormalDist().cdf(z)), rel=0.05)
    assert 0.0 <= mcnemar_exact(0, 2000) < 1e-300  # 2 / 2**2000 underflows, no error


def test_mcnemar_exact_refuses_negative_counts() -> None:
    with pytest.raises(ValueError):
        mcnemar_exact(-1, 3)


@given(st.integers(0, 60), st.integers(0, 60))
def test_mcnemar_exact_is_the_two_sided_binomial_tail(b: int, c: int) -> None:
    m = b + c
    # The two-sided p-value by its definition: the probability of a table at most as likely.
    probs = [Fraction(math.comb(m, i), 2**m) for i in range(m + 1)]
    observed = probs[b]
    p = sum(q for q in probs if q <= observed)
    assert mcnemar_exact(b, c) == pytest.approx(float(min(Fraction(1), p)), rel=1e-12)


@given(st.integers(0, 40), st.integers(0, 40))
def test_mcnemar_exact_falls_as_the_imbalance_grows(b: int, c: int) -> None:
    assert 0.0 < mcnemar_exact(b, c) <= 1.0
    assert mcnemar_exact(b, c + 1) <= mcnemar_exact(b, c) or c < b


# -- bootstrap ---------------------------------------------------------------------------------


def test_bootstrap_is_reproducible_with_a_seed() -> None:
    values = [1.0] * 70 + [0.0] * 30
    first = bootstrap(values, rng=random.Random(7))
    assert first == bootstrap(values, rng=random.Random(7))
    assert bootstrap(values) == bootstrap(values)  # Random(0) when none is given
    assert first != bootstrap(values, rng=random.Random(8))


def test_bootstrap_of_a_mean_is_close_to_wilson_for_large_n() -> None:
    values = [1.0] * 700 + [0.0] * 300
    low, high = bootstrap(values, rng=random.Random(1), resamples=4000)
    w_low, w_high = wilson(700, 1000)
    assert low == pytest.approx(w_low, abs=0.006)
    assert high == pytest.approx(w_high, abs=0.006)


def test_bootstrap_takes_another_statistic_and_confidence() -> None:
    values = [float(i) for i in range(101)]
    low, high = bootstrap(values, median, rng=random.Random(3))
    assert low < 50 < high
    narrow = bootstrap(values, median, rng=random.Random(3), confidence=0.5)
    assert low <= narrow[0] <= narrow[1] <= high


def test_bootstrap_of_constant_values_is_a_point() -> None:
    assert bootstrap([1.0] * 20) == (1.0, 1.0)  # the caveat the docstring states


@pytest.mark.parametrize(
    "kwargs",
    [{"values": []}, {"values": [1.0], "resamples": 0}, {"values": [1.0], "confidence": 1}],
)
def test_bootstrap_refuses_what_it_cannot_do(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        bootstrap(**kwargs)


@given(st.lists(st.floats(-1e6, 1e6), min_size=1, max_size=40), st.integers(0, 2**32))
def test_bootstrap_interval_lies_within_the_values(values: list[float], seed: int) -> None:
    low, high = bootstrap(values, rng=random.Random(seed), resamples=200)
    assert min(values) - 1e-6 <= low <= high <= max(values) + 1e-6


# -- paired comparison ---------------------------------------------------------------------------


def test_compare_paired_counts_the_discordant_pairs() -> None:
    # A right on 9 the B got wrong, B right on 1 A got wrong, both right on 80, both wrong on 10.
    a = [True] * 9 + [False] * 1 + [True] * 80 + [False] * 10
    b = [False] * 9 + [True] * 1 + [True] * 80 + [False] * 10
    result = compare_paired(a, b, rng=random.Random(0))
    assert (result.n, result.only_a, result.only_b) == (100, 9, 1)
    assert (result.accuracy_a, result.accuracy_b) == (0.89, 0.81)
    assert result.difference == pytest.approx(0.08)
    assert result.p_value == pytest.approx(mcnemar_exact(9, 1))
    assert result.p_value == pytest.approx(0.021484375)  # 2 * 11 / 1024
    low, high = result.interval
    assert 0 < low < 0.08 < high < 0.2


def test_compare_paired_of_one_method_with_itself_is_no_difference() -> None:
    a = [True, False, True, True, False]
    result = compare_paired(a, a)
    assert result.difference == 0.0 and result.interval == (0.0, 0.0) and result.p_value == 1.0


def test_compare_paired_is_narrower_than_two_independent_intervals() -> None:
    rng = random.Random(5)
    base = [rng.random() < 0.7 for _ in range(400)]
    a = [x or rng.random() < 0.1 for x in base]  # A mostly errs where B errs
    paired = compare_paired(a, base, rng=random.Random(0))
    wa, wb = wilson(sum(a), 400), wilson(sum(base), 400)
    unpaired_width = math.hypot(wa[1] - wa[0], wb[1] - wb[0])
    assert paired.interval[1] - paired.interval[0] < unpaired_width / 2


@pytest.mark.parametrize(("a", "b"), [([], []), ([True], [True, False])])
def test_compare_paired_refuses_unpaired_lists(a: list[bool], b: list[bool]) -> None:
    with pytest.raises(ValueError):
        compare_paired(a, b)
