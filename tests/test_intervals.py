"""Intervals near 100%: the Wilson score interval and the percentile bootstrap."""

import math

import pytest
import torch

from mamlkit.evaluate import mean_confidence_interval
from mamlkit.lessons.intervals import bootstrap_interval, task_wilson_interval, wilson_interval


def test_wilson_interval_matches_its_formula_and_a_published_value():
    # Newcombe (1998), Table I: 81 successes of 263, Wilson 95% interval 0.2553 to 0.3662.
    low, high = wilson_interval(81, 263)
    assert low == pytest.approx(0.2553, abs=1e-4) and high == pytest.approx(0.3662, abs=1e-4)
    # All successes: the upper end is 1, the lower n / (n + z²), never the point 1.
    low, high = wilson_interval(20, 20)
    assert high == 1.0 and low == pytest.approx(20 / (20 + 1.96**2))
    low, high = wilson_interval(0, 10)
    assert low == 0.0 and high == pytest.approx(1.96**2 / (10 + 1.96**2))


def test_wilson_interval_rejects_impossible_counts():
    with pytest.raises(ValueError, match="n must"):
        wilson_interval(1, 0)
    with pytest.raises(ValueError, match="successes"):
        wilson_interval(5, 4)
    with pytest.raises(ValueError, match="z must"):
        wilson_interval(1, 4, z=0)


@pytest.mark.ex4_2  # mean_confidence_interval, Exercise 4.2
def test_a_perfect_task_set_gets_a_point_from_the_normal_interval_and_the_bootstrap_but_not_from_wilson():
    perfect = torch.ones(20)
    mean, ci95 = mean_confidence_interval(perfect)
    assert (mean, ci95) == (1.0, 0.0)
    assert bootstrap_interval(perfect) == (1.0, 1.0)
    low, high = task_wilson_interval(perfect)
    assert high == 1.0 and 0.8 < low < 0.85


@pytest.mark.ex4_2  # mean_confidence_interval, Exercise 4.2
def test_task_wilson_interval_is_at_least_as_wide_as_the_normal_interval_of_accuracies_in_0_1():
    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        per_task = (torch.rand(50, generator=g) < 0.9).float() * 0.8 + 0.2 * torch.rand(50, generator=g)
        mean, ci95 = mean_confidence_interval(per_task)
        low, high = task_wilson_interval(per_task)
        # Var ≤ μ(1 − μ) for values in [0, 1]: the Wilson interval (one trial per task) is wider.
        assert high - low >= 2 * ci95 * math.sqrt((len(per_task) - 1) / len(per_task)) - 1e-9
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        task_wilson_interval(torch.tensor([0.5, 1.5]))


@pytest.mark.ex4_2  # mean_confidence_interval, Exercise 4.2
def test_bootstrap_interval_is_seeded_and_close_to_the_normal_interval_away_from_the_edges():
    g = torch.Generator().manual_seed(1)
    per_task = torch.rand(400, generator=g) * 0.6 + 0.2
    mean, ci95 = mean_confidence_interval(per_task)
    low, high = bootstrap_interval(per_task, num_resamples=4000)
    assert low == pytest.approx(mean - ci95, abs=0.004) and high == pytest.approx(mean + ci95, abs=0.004)
    assert bootstrap_interval(per_task) == bootstrap_interval(per_task)
    with pytest.raises(ValueError, match="at least 2"):
        bootstrap_interval(torch.tensor([1.0]))


def test_wilson_interval_against_a_hand_computation():
    # x = 8 of n = 10, z = 1.96: z² = 3.8416, 1 + z²/n = 1.38416,
    # centre = (0.8 + 0.19208) / 1.38416 = 0.71674, half = (1.96 / 1.38416) · √(0.016 + 0.009604) = 0.22658.
    low, high = wilson_interval(8, 10)
    assert low == pytest.approx(0.71674 - 0.22658, abs=1e-4) and high == pytest.approx(0.71674 + 0.22658, abs=1e-4)
    # 100 of 100: n / (n + z²) = 100 / 103.8416.
    assert wilson_interval(100, 100) == (pytest.approx(0.963005, abs=1e-6), 1.0)


def _exact_coverage(p, n, interval):
    """The probability that the interval of a Binomial(n, p) count contains p, summed over every count."""
    total = 0.0
    for x in range(n + 1):
        low, high = interval(x, n)
        if low <= p <= high:
            total += math.comb(n, x) * p**x * (1 - p) ** (n - x)
    return total


def _normal(x, n, z=1.96):
    p = x / n
    half = z * math.sqrt(p * (1 - p) / n)
    return p - half, p + half


@pytest.mark.parametrize("n", [20, 100])
def test_wilson_covers_about_95_percent_near_100_where_the_normal_interval_does_not(n):
    # Averaged over true accuracies between 90% and 99.9%, Wilson's interval holds about 95% of the
    # time (Brown, Cai & DasGupta 2001, Fig. 5); the normal interval far less (its width is 0 at x = n).
    ps = [0.9 + 0.099 * i / 99 for i in range(100)]
    wilson = sum(_exact_coverage(p, n, wilson_interval) for p in ps) / len(ps)
    normal = sum(_exact_coverage(p, n, _normal) for p in ps) / len(ps)
    assert 0.93 < wilson < 0.97, wilson
    assert normal < 0.9, normal


def test_wilson_coverage_on_simulated_binomials():
    g = torch.Generator().manual_seed(0)
    p, n, repeats = 0.99, 100, 4000
    counts = (torch.rand(repeats, n, generator=g) < p).sum(dim=1).tolist()
    wilson = sum(lo <= p <= hi for lo, hi in (wilson_interval(x, n) for x in counts)) / repeats
    normal = sum(lo <= p <= hi for lo, hi in (_normal(x, n) for x in counts)) / repeats
    assert wilson > 0.9, wilson  # exact coverage here: 0.921
    assert normal < 0.7, normal  # exact coverage here: 0.633
