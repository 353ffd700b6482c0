r"""Confidence intervals for an accuracy near 100%: Wilson's score interval and the bootstrap.

The interval of Exercise 4.2, :func:`mamlkit.evaluate.mean_confidence_interval`, is the normal
("Wald") interval :math:`\bar a \pm z\,s/\sqrt n`. When every task of a set scores 100%, the
sample standard deviation :math:`s` is 0 and it reads :math:`100\% \pm 0.0\%`: certainty that a
finite sample cannot give. The percentile bootstrap over tasks does no better there: every
resample of all-perfect tasks is all perfect.

**Wilson's score interval** (E. B. Wilson, "Probable inference, the law of succession, and
statistical inference", *Journal of the American Statistical Association* 22, 209–212, 1927)
inverts the score test: it is the set of success probabilities :math:`p` for which the observed
share :math:`\hat p = x / n` lies within :math:`z` standard errors *computed at p*,
:math:`|\hat p - p| \le z\sqrt{p(1-p)/n}`. Solving that quadratic in :math:`p` gives

.. math::

    \frac{\hat p + \dfrac{z^2}{2n}}{1 + \dfrac{z^2}{n}}
    \;\pm\; \frac{z}{1 + \dfrac{z^2}{n}}\sqrt{\frac{\hat p(1-\hat p)}{n} + \frac{z^2}{4n^2}},

always inside [0, 1] and of positive width for every :math:`x`; at :math:`x = n` it is
:math:`[\,n/(n+z^2),\ 1\,]`. Brown, Cai & DasGupta (2001, "Interval estimation for a binomial
proportion", *Statistical Science* 16, 101–133) recommend it over the normal interval, whose
coverage collapses near 0 and 1; Newcombe (1998, *Statistics in Medicine* 17, 857–872) tables it.

Two ways to apply it to few-shot evaluation:

- :func:`wilson_interval` with ``x`` correctly classified query images out of ``n``: that
  treats the query images as independent trials, although the queries of one task share one
  adaptation (optimistic where tasks differ in difficulty);
- :func:`task_wilson_interval`, one "trial" per task with the task's accuracy as its share of a
  success: the mean of values in [0, 1] has variance at most :math:`\mu(1-\mu)/n`, so this is
  the conservative choice, never narrower than the normal interval over tasks.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch

__all__ = ["wilson_interval", "task_wilson_interval", "bootstrap_interval"]


def _wilson(p_hat: float, n: float, z: float) -> tuple[float, float]:
    denominator = 1 + z * z / n
    centre = (p_hat + z * z / (2 * n)) / denominator
    half = z / denominator * math.sqrt(max(p_hat * (1 - p_hat), 0.0) / n + z * z / (4 * n * n))
    low, high = centre - half, centre + half
    # Exact at the edges (x = 0: low = 0; x = n: high = 1); rounding must not move them.
    if p_hat <= 0.0:
        low = 0.0
    if p_hat >= 1.0:
        high = 1.0
    return max(0.0, low), min(1.0, high)


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson's (1927) score interval for a proportion ``successes / n``: ``(low, high)`` in [0, 1].

    Args:
        successes: ``x``, e.g. correctly classified query images, ``0 ≤ x ≤ n``.
        n: trials, e.g. all query images; at least 1.
        z: the normal quantile; 1.96 for a 95% interval.

    Returns:
        ``(low, high)``; for ``x = n`` it is ``(n / (n + z²), 1)``, for ``x = 0`` ``(0, z² / (n + z²))``.
    """
    if isinstance(n, bool) or int(n) != n or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    if isinstance(successes, bool) or int(successes) != successes or not 0 <= successes <= n:
        raise ValueError(f"successes must be an integer in 0..{n}, got {successes!r}")
    if not z > 0:
        raise ValueError(f"z must be positive, got {z!r}")
    return _wilson(successes / n, float(n), z)


def task_wilson_interval(per_task: torch.Tensor | Sequence[float], z: float = 1.96) -> tuple[float, float]:
    """Wilson's interval with one trial per task: ``p̂`` the mean accuracy, ``n`` the number of tasks.

    Args:
        per_task: ``(n,)`` accuracies in [0, 1], e.g. ``evaluate(...)["per_task"]``.

    Returns:
        ``(low, high)``; 20 tasks all at 100% give ``(20 / (20 + z²), 1) ≈ (0.839, 1)``.
    """
    a = torch.as_tensor(per_task, dtype=torch.float64).flatten()
    if a.numel() < 1:
        raise ValueError("per_task is empty; give at least one task's accuracy")
    if bool(((a < 0) | (a > 1)).any()):
        raise ValueError("per-task accuracies must lie in [0, 1]")
    if not z > 0:
        raise ValueError(f"z must be positive, got {z!r}")
    return _wilson(a.mean().item(), float(a.numel()), z)


def bootstrap_interval(per_task: torch.Tensor | Sequence[float], num_resamples: int = 2000,
                       level: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """The percentile bootstrap (Efron 1979) of the mean over tasks: ``(low, high)``.

    Resamples the tasks with replacement ``num_resamples`` times (a seeded generator, so the
    same input gives the same interval) and returns the ``(1 − level)/2`` and ``(1 + level)/2``
    quantiles of the resampled means. All-perfect tasks give ``(1.0, 1.0)``: the bootstrap
    cannot see variation the sample does not have.
    """
    a = torch.as_tensor(per_task, dtype=torch.float64).flatten()
    if a.numel() < 2:
        raise ValueError(f"need at least 2 tasks for a bootstrap interval, got {a.numel()}")
    if isinstance(num_resamples, bool) or int(num_resamples) != num_resamples or num_resamples < 1:
        raise ValueError(f"num_resamples must be a positive integer, got {num_resamples!r}")
    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1), got {level!r}")
    generator = torch.Generator().manual_seed(seed)
    index = torch.randint(0, a.numel(), (int(num_resamples), a.numel()), generator=generator)
    means = a[index].mean(dim=1)
    q = torch.tensor([(1 - level) / 2, (1 + level) / 2], dtype=torch.float64)
    low, high = torch.quantile(means, q).tolist()
    return low, high
