r"""The sine-wave task family of the MAML paper's regression experiments (Finn et al. 2017, §5.1).

Every task is one sine wave

.. math::  y = A \sin(x - \psi), \qquad A \sim U[0.1, 5.0], \quad \psi \sim U[0, \pi],

observed at inputs :math:`x \sim U[-5, 5]`. (The paper varies amplitude and phase without naming a symbol for
the phase; the course writes ψ, since φ names the adapted parameters.) A learner sees ``k_support`` points of a new wave
and must predict the rest of it. For evaluation the query set is usually not random points but
an evenly spaced grid over :math:`[-5, 5]` (:func:`dense_grid`), so that the MSE measures the fit
of the whole curve.

Used in ``notebooks/02_inner_loop.ipynb``, ``notebooks/03_outer_loop.ipynb`` and
:mod:`mamlkit.lessons.sine_experiment`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch

from mamlkit.tasks import TaskBatch

__all__ = [
    "AMPLITUDE_RANGE",
    "PHASE_RANGE",
    "X_RANGE",
    "SinusoidTasks",
    "dense_grid",
    "sample_sinusoid_tasks",
    "sinusoid",
    "sinusoid_sampler",
]

#: The ranges of the paper: amplitude A, phase ψ, and the inputs x.
AMPLITUDE_RANGE = (0.1, 5.0)
PHASE_RANGE = (0.0, math.pi)
X_RANGE = (-5.0, 5.0)


def sinusoid(x: torch.Tensor, amplitude: torch.Tensor, phase: torch.Tensor) -> torch.Tensor:
    r""":math:`A \sin(x - \psi)` for every task at its own inputs.

    Args:
        x: ``(T, N, 1)`` inputs.
        amplitude: ``(T,)`` amplitudes A.
        phase: ``(T,)`` phases ψ.

    Returns:
        ``(T, N, 1)`` targets.
    """
    return amplitude.view(-1, 1, 1) * torch.sin(x - phase.view(-1, 1, 1))


def dense_grid(num_points: int = 100, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``num_points`` evenly spaced inputs covering :data:`X_RANGE`, ends included: ``(num_points, 1)``."""
    _check_positive(num_points=num_points)
    return torch.linspace(*X_RANGE, num_points, dtype=dtype).unsqueeze(-1)


@dataclass(frozen=True)
class SinusoidTasks:
    """A batch of sine-wave tasks together with the waves they were drawn from.

    Attributes:
        batch: the support and query sets, ``x_*`` and ``y_*`` all ``(T, K, 1)``, as every loop
            of the course consumes them.
        amplitude: ``(T,)`` the amplitude A of each task.
        phase: ``(T,)`` the phase ψ of each task.
    """

    batch: TaskBatch
    amplitude: torch.Tensor
    phase: torch.Tensor

    @property
    def num_tasks(self) -> int:
        return self.amplitude.shape[0]

    def target(self, x: torch.Tensor) -> torch.Tensor:
        """Every task's true curve at the inputs ``x``: ``(N, 1)`` (shared) or ``(T, N, 1)`` → ``(T, N, 1)``."""
        if x.dim() == 2:
            x = x.expand(self.num_tasks, *x.shape)
        return sinusoid(x, self.amplitude, self.phase)

    def task(self, i: int) -> "SinusoidTasks":
        """The ``i``-th task alone, still with a task axis of length one."""
        return SinusoidTasks(TaskBatch(*(t[i:i + 1] for t in self.batch)),
                             self.amplitude[i:i + 1], self.phase[i:i + 1])


def _check_positive(**sizes: object) -> None:
    for name, value in sizes.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")


def sample_sinusoid_tasks(
    num_tasks: int,
    k_support: int,
    k_query: int,
    generator: torch.Generator,
    query_grid: bool = False,
    dtype: torch.dtype = torch.float32,
) -> SinusoidTasks:
    """Draw ``num_tasks`` sine waves and their support and query points.

    The draws come in a fixed order (amplitudes, phases, support inputs, query inputs), so the
    same generator state always gives the same tasks.

    Args:
        num_tasks: T, how many waves.
        k_support: K, points per wave in the support set (10 for meta-training, 5 or 10 or 20
            at test time in the paper).
        k_query: points per wave in the query set; with ``query_grid=True``, the number of
            grid points (100 for evaluation) instead of random points.
        generator: the source of randomness, e.g. ``torch.Generator().manual_seed(0)``.
        query_grid: query on :func:`dense_grid` (``k_query`` evenly spaced points over
            [-5, 5], the same for every task) rather than on random points.
        dtype: of every tensor; float32 for training, float64 for gradient checks.

    Returns:
        A :class:`SinusoidTasks`; ``.batch`` holds ``x_support``/``y_support`` ``(T, k_support, 1)``
        and ``x_query``/``y_query`` ``(T, k_query, 1)``.

    Raises:
        ValueError: a size is not a positive integer.
    """
    _check_positive(num_tasks=num_tasks, k_support=k_support, k_query=k_query)

    def uniform(shape: tuple[int, ...], low: float, high: float) -> torch.Tensor:
        return low + (high - low) * torch.rand(shape, generator=generator, dtype=dtype)

    amplitude = uniform((num_tasks,), *AMPLITUDE_RANGE)
    phase = uniform((num_tasks,), *PHASE_RANGE)
    x_support = uniform((num_tasks, k_support, 1), *X_RANGE)
    if query_grid:
        x_query = dense_grid(k_query, dtype).expand(num_tasks, k_query, 1)
    else:
        x_query = uniform((num_tasks, k_query, 1), *X_RANGE)
    batch = TaskBatch(x_support, sinusoid(x_support, amplitude, phase),
                      x_query, sinusoid(x_query, amplitude, phase))
    return SinusoidTasks(batch, amplitude, phase)


def sinusoid_sampler(
    k_support: int,
    k_query: int,
    generator: torch.Generator,
    query_grid: bool = False,
) -> Callable[[int], TaskBatch]:
    """``sample(n) -> TaskBatch`` of ``n`` new sine tasks, the form :func:`mamlkit.evaluate.evaluate` takes."""
    _check_positive(k_support=k_support, k_query=k_query)
    return lambda n: sample_sinusoid_tasks(n, k_support, k_query, generator, query_grid).batch
