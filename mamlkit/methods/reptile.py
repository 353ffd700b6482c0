r"""Reptile (Nichol, Achiam & Schulman 2018, "On First-Order Meta-Learning Algorithms", Alg. 2).

Each task's inner loop takes ``inner_steps`` steps of plain SGD on its support set,
:math:`\phi_i = U^k_{\tau_i}(\theta)`, and θ moves towards the adapted weights:

.. math::  \theta \leftarrow \theta + \epsilon\,\frac{1}{T}\sum_i (\phi_i - \theta)

No gradient flows through the inner loop. Behind the common interface the update is written
as a gradient: :meth:`Reptile.meta_loss` returns a loss whose *value* is the mean query loss
after adaptation (what every method reports) and whose *gradient* with respect to θ is
:math:`\frac{1}{T}\sum_i (\theta - \phi_i)`. One step of plain SGD with learning rate ε on it
is the update above; with Adam (as ``Trainer`` uses), the direction θ − φ is treated as a
gradient, as Nichol et al. §3 suggest ("plug it into an adaptive algorithm such as Adam").

With one inner step, :math:`\theta - \phi_i = \alpha\nabla L_{S_i}(\theta)`: Reptile then
follows the gradient of the support loss at θ, the first-order direction without the query
set (Nichol et al. §5.1; ``tests/test_reptile.py`` checks both in float64). Reptile is first
order by construction: ``first_order`` changes nothing, and learned inner rates cannot be
learned (no gradient reaches them), so they are refused.
"""

from __future__ import annotations

import torch
from torch import nn

from mamlkit.evaluate import adaptation_curve, works_under_inference_mode
from mamlkit.fast import adapt_tasks, forward_tasks, per_task
from mamlkit.functional import Params, forward
from mamlkit.inner_loop import adapt
from mamlkit.losses import accuracy
from mamlkit.methods.base import MetaLearner, Metric, check_implementation
from mamlkit.outer_loop import check_tasks
from mamlkit.tasks import TaskBatch


def reptile_direction_loss(params: Params, adapted: Params, query_loss: torch.Tensor) -> torch.Tensor:
    r"""A loss with the value of ``query_loss`` and the gradient :math:`\frac1T\sum_i(\theta - \phi_i)`.

    Args:
        params: θ, no task axis.
        adapted: φ for every task, ``{name: (T, *shape)}`` (detached inside).
        query_loss: the mean query loss after adaptation (its value is kept, its graph dropped).
    """
    surrogate = sum((0.5 * (p.unsqueeze(0) - adapted[n].detach()) ** 2).sum() / adapted[n].shape[0]
                    for n, p in params.items())
    return query_loss.detach() + surrogate - surrogate.detach()


class Reptile(MetaLearner):
    """Reptile: move θ towards the weights that plain SGD on each task's support set reaches."""

    name = "reptile"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.learned_rates is not None:
            raise ValueError("Reptile cannot learn inner rates: no gradient flows through its inner "
                             "loop (use learn_inner_lrs=False)")

    @staticmethod
    def init_rates(params: Params, inner_lr: float, learn: bool):
        """``None``: Reptile's inner loop is plain SGD with a fixed α.

        Raises:
            ValueError: when asked to learn rates, which Reptile's update cannot reach.
        """
        if learn:
            raise ValueError("Reptile cannot learn inner rates: no gradient flows through its inner "
                             "loop (use learn_inner_lrs=False)")
        return None

    def meta_loss(self, model: nn.Module, params: Params, tasks: TaskBatch,
                  implementation: str = "fast") -> tuple[torch.Tensor, torch.Tensor]:
        """``(loss, (T, Q, n_way) query outputs after adaptation)``; see :func:`reptile_direction_loss`."""
        check_implementation(implementation)
        check_tasks(tasks)
        if implementation == "fast":
            adapted = adapt_tasks(model, params, tasks.x_support, tasks.y_support, self.loss_fn,
                                  self.base_inner_lr, self.inner_steps, first_order=True)
            adapted = {n: a.detach() for n, a in adapted.items()}
            with torch.no_grad():
                outputs = forward_tasks(model, adapted, tasks.x_query)
                query_loss = per_task(self.loss_fn, outputs, tasks.y_query).mean()
        else:
            per_task_phi, outputs, losses = [], [], []
            for i in range(tasks.num_tasks):
                task = tasks.task(i)
                phi = adapt(model, params, task.x_support, task.y_support, self.loss_fn,
                            self.base_inner_lr, self.inner_steps, first_order=True)
                phi = {n: a.detach() for n, a in phi.items()}
                per_task_phi.append(phi)
                with torch.no_grad():
                    out = forward(model, phi, task.x_query)
                    losses.append(self.loss_fn(out, task.y_query))
                outputs.append(out)
            adapted = {n: torch.stack([phi[n] for phi in per_task_phi]) for n in params}
            outputs, query_loss = torch.stack(outputs), torch.stack(losses).mean()
        return reptile_direction_loss(params, adapted, query_loss), outputs.detach()

    @works_under_inference_mode
    def adaptation_curve(self, model: nn.Module, params: Params, tasks: TaskBatch, max_steps: int,
                         metric: Metric = accuracy, protocol: str = "transductive") -> torch.Tensor:
        """``(max_steps + 1, T)``: plain SGD with α from θ, as MAML evaluates (:func:`mamlkit.evaluate.adaptation_curve`)."""
        return adaptation_curve(model, params, tasks, self.loss_fn, self.base_inner_lr, max_steps,
                                metric, protocol=protocol)
