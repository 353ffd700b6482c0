r"""Learning to initialise, in two dimensions: quadratic tasks, pretraining's θ and MAML's θ.

Each task :math:`i` is a bowl in the plane,

.. math::  L_i(\theta) = \tfrac12 (\theta - c_i)^\top A_i (\theta - c_i),

with its optimum :math:`c_i` and a symmetric positive-definite curvature :math:`A_i`. Two ways to
choose one starting point for all tasks have closed forms here:

- **pretraining** minimises the loss *of θ itself* over tasks,
  :math:`\theta_{\text{pretrain}} = \arg\min \sum_i L_i(\theta) = (\sum_i A_i)^{-1} \sum_i A_i c_i`;
- **MAML** (Finn et al. 2017, eq. 1) minimises the loss *after one gradient step*,
  :math:`\sum_i L_i(\theta - \alpha\nabla L_i(\theta))`. Since
  :math:`\theta - \alpha A_i(\theta - c_i) - c_i = (I - \alpha A_i)(\theta - c_i)`, each term is
  again a bowl, with curvature :math:`B_i = (I - \alpha A_i) A_i (I - \alpha A_i)`, so
  :math:`\theta_{\text{MAML}} = (\sum_i B_i)^{-1} \sum_i B_i c_i`.

At α = 0, :math:`B_i = A_i` and MAML is pretraining. For α > 0 MAML weighs each task by how much
its optimum is still missed *after* the step: tasks whose steep directions the step already
fixes count less, and θ moves to where one step serves every task.

The first-order Taylor view (Nichol et al. 2018, §5) explains what the meta-gradient rewards:
for a support loss :math:`L_S` and a query loss :math:`L_Q` of the same task,

.. math::  L_Q(\theta - \alpha\nabla L_S) = L_Q(\theta) - \alpha\langle \nabla L_Q, \nabla L_S\rangle + O(\alpha^2),

so minimising it pushes towards a θ where support and query gradients *agree*. For quadratics
the remainder is exactly :math:`\tfrac{\alpha^2}2 \nabla L_S^\top A_Q \nabla L_S`
(:func:`taylor_terms`).

Used in ``notebooks/03_outer_loop.ipynb``.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

__all__ = ["QuadraticTasks", "example_tasks", "maml_loss", "maml_solution", "one_step", "pretrain_loss",
           "pretrain_solution", "taylor_terms"]


class QuadraticTasks(NamedTuple):
    """``n`` quadratic tasks in ``d`` dimensions.

    Attributes:
        centres: ``(n, d)``, each task's optimum :math:`c_i`.
        curvatures: ``(n, d, d)``, each task's symmetric positive-definite Hessian :math:`A_i`.
    """

    centres: torch.Tensor
    curvatures: torch.Tensor

    def losses(self, theta: torch.Tensor) -> torch.Tensor:
        """``(n,)``: every task's loss at ``theta`` ``(d,)``."""
        diff = theta - self.centres
        return 0.5 * torch.einsum("ni,nij,nj->n", diff, self.curvatures, diff)

    def gradients(self, theta: torch.Tensor) -> torch.Tensor:
        """``(n, d)``: every task's gradient :math:`A_i(\\theta - c_i)` at ``theta``."""
        return torch.einsum("nij,nj->ni", self.curvatures, theta - self.centres)


def _check(tasks: QuadraticTasks, inner_lr: float = 0.0) -> None:
    n, d = tasks.centres.shape
    if tasks.curvatures.shape != (n, d, d):
        raise ValueError(f"curvatures must be (n, d, d) = {(n, d, d)}, got {tuple(tasks.curvatures.shape)}")
    if not torch.allclose(tasks.curvatures, tasks.curvatures.transpose(1, 2)):
        raise ValueError("curvatures must be symmetric matrices")
    if not isinstance(inner_lr, (int, float)) or isinstance(inner_lr, bool) or inner_lr < 0:
        raise ValueError(f"inner_lr must be a non-negative number, got {inner_lr!r}")


def example_tasks(dtype: torch.dtype = torch.float64) -> QuadraticTasks:
    """Three tasks in the plane with different optima and differently tilted, elongated bowls."""
    centres = torch.tensor([[-2.0, 1.0], [2.0, 1.5], [0.5, -2.0]], dtype=dtype)
    curvatures = []
    for angle, steep, shallow in ((0.3, 4.0, 0.3), (-0.9, 3.0, 0.5), (1.4, 1.5, 0.2)):
        c, s = torch.cos(torch.tensor(angle, dtype=dtype)), torch.sin(torch.tensor(angle, dtype=dtype))
        rotation = torch.stack([torch.stack([c, -s]), torch.stack([s, c])])
        curvatures.append(rotation @ torch.diag(torch.tensor([steep, shallow], dtype=dtype)) @ rotation.T)
    return QuadraticTasks(centres, torch.stack(curvatures))


def one_step(tasks: QuadraticTasks, theta: torch.Tensor, inner_lr: float) -> torch.Tensor:
    """``(n, d)``: where one gradient step of size α on each task lands from ``theta``."""
    return theta - inner_lr * tasks.gradients(theta)


def pretrain_loss(tasks: QuadraticTasks, theta: torch.Tensor) -> torch.Tensor:
    """The mean over tasks of :math:`L_i(\\theta)`: what pretraining minimises (a scalar)."""
    return tasks.losses(theta).mean()


def maml_loss(tasks: QuadraticTasks, theta: torch.Tensor, inner_lr: float) -> torch.Tensor:
    """The mean over tasks of :math:`L_i(\\theta - \\alpha\\nabla L_i(\\theta))`: MAML's objective.

    Written with autograd-friendly operations, so ``torch.autograd.grad`` gives the
    meta-gradient (second order included).
    """
    return _losses_at(tasks, one_step(tasks, theta, inner_lr)).mean()


def _weighted_centre(curvatures: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
    total = curvatures.sum(dim=0)
    if torch.linalg.matrix_rank(total) < total.shape[0]:
        raise ValueError("the summed curvature is singular: no unique minimiser (is α = 1/λ for every task?)")
    return torch.linalg.solve(total, torch.einsum("nij,nj->i", curvatures, centres))


def pretrain_solution(tasks: QuadraticTasks) -> torch.Tensor:
    """:math:`\\theta_{\\text{pretrain}} = (\\sum A_i)^{-1}\\sum A_i c_i`, ``(d,)``."""
    _check(tasks)
    return _weighted_centre(tasks.curvatures, tasks.centres)


def maml_solution(tasks: QuadraticTasks, inner_lr: float) -> torch.Tensor:
    """:math:`\\theta_{\\text{MAML}} = (\\sum B_i)^{-1}\\sum B_i c_i` with
    :math:`B_i = (I - \\alpha A_i) A_i (I - \\alpha A_i)`, ``(d,)``.

    Raises:
        ValueError: ``inner_lr`` negative, or :math:`\\sum B_i` singular.
    """
    _check(tasks, inner_lr)
    eye = torch.eye(tasks.centres.shape[1], dtype=tasks.centres.dtype)
    shrink = eye - inner_lr * tasks.curvatures
    return _weighted_centre(shrink @ tasks.curvatures @ shrink, tasks.centres)


def taylor_terms(support: QuadraticTasks, query: QuadraticTasks, theta: torch.Tensor, inner_lr: float) -> dict:
    r"""Both sides of :math:`L_Q(\theta - \alpha g_S) \approx L_Q(\theta) - \alpha\langle g_Q, g_S\rangle`.

    Args:
        support, query: the support and query losses of the same ``n`` tasks.
        theta: ``(d,)``.

    Returns:
        ``{"exact", "first_order", "alignment", "remainder"}``, each ``(n,)``: the query loss after
        one support step; :math:`L_Q(\theta) - \alpha\langle g_Q, g_S\rangle`; the inner product
        :math:`\langle g_Q, g_S\rangle`; and the exact remainder
        :math:`\tfrac{\alpha^2}2 g_S^\top A_Q g_S`.
    """
    g_s, g_q = support.gradients(theta), query.gradients(theta)
    alignment = (g_q * g_s).sum(dim=-1)
    exact = _losses_at(query, theta - inner_lr * g_s)
    return {
        "exact": exact,
        "first_order": query.losses(theta) - inner_lr * alignment,
        "alignment": alignment,
        "remainder": 0.5 * inner_lr**2 * torch.einsum("ni,nij,nj->n", g_s, query.curvatures, g_s),
    }


def _losses_at(tasks: QuadraticTasks, points: torch.Tensor) -> torch.Tensor:
    """``(n,)``: task ``i``'s loss at its own point ``points[i]``."""
    diff = points - tasks.centres
    return 0.5 * torch.einsum("ni,nij,nj->n", diff, tasks.curvatures, diff)
