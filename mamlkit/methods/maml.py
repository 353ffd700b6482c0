r"""MAML (Finn et al. 2017) and first-order MAML, behind the common interface.

.. math::  \min_\theta \frac{1}{T}\sum_i L\big(\theta - \alpha\nabla_\theta L(\theta, D_i^{s}),\, D_i^{q}\big)

(one inner step shown). The mathematics lives in :mod:`mamlkit.inner_loop`,
:mod:`mamlkit.outer_loop` (the per-task loop) and :mod:`mamlkit.fast` (all tasks at once);
this class only chooses between them. ``first_order=True`` is first-order MAML (§5.2 of the
paper): the inner gradient is treated as a constant. ``learned_rates`` (one scalar per
parameter tensor, :func:`mamlkit.inner_loop.init_inner_lrs`) are CS330's learned inner rates.
"""

from __future__ import annotations

import torch
from torch import nn

from mamlkit.evaluate import adaptation_curve, works_under_inference_mode
from mamlkit.fast import meta_loss_batched
from mamlkit.functional import Params
from mamlkit.inner_loop import init_inner_lrs
from mamlkit.losses import accuracy
from mamlkit.methods.base import MetaLearner, Metric, check_implementation
from mamlkit.outer_loop import meta_loss
from mamlkit.tasks import TaskBatch


class MAML(MetaLearner):
    """Model-agnostic meta-learning: every parameter adapts in the inner loop."""

    name = "maml"

    @staticmethod
    def init_rates(params: Params, inner_lr: float, learn: bool):
        """Learned per-tensor rates starting at α when ``learn``, else ``None`` (fixed α)."""
        return init_inner_lrs(params, inner_lr) if learn else None

    def meta_loss(self, model: nn.Module, params: Params, tasks: TaskBatch,
                  implementation: str = "fast") -> tuple[torch.Tensor, torch.Tensor]:
        """Mean query loss after adaptation; see :func:`mamlkit.outer_loop.meta_loss`."""
        check_implementation(implementation)
        compute = meta_loss_batched if implementation == "fast" else meta_loss
        return compute(model, params, tasks, self.loss_fn, self.inner_lr, self.inner_steps,
                       self.first_order)

    @works_under_inference_mode
    def adaptation_curve(self, model: nn.Module, params: Params, tasks: TaskBatch, max_steps: int,
                         metric: Metric = accuracy, protocol: str = "transductive") -> torch.Tensor:
        """``(max_steps + 1, T)``; see :func:`mamlkit.evaluate.adaptation_curve`."""
        return adaptation_curve(model, params, tasks, self.loss_fn, self.inner_lr, max_steps,
                                metric, protocol=protocol)
