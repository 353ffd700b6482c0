r"""ANIL, "almost no inner loop" (Raghu et al. 2020, "Rapid Learning or Feature Reuse?", §4).

The inner loop adapts the head alone; the body f (every layer before it) stays at θ:

.. math::  W' = W - \alpha \nabla_W L\big(f_\theta(x^{s}) W^\top + b,\; y^{s}\big)
   \quad\text{(and the same for } b\text{)}, \qquad
   \text{logits}^{q} = f_\theta(x^{q})\, W'^\top + b'

The outer loop still trains body and head (second order through the head's steps, unless
``first_order``). Because the body does not change, its features are computed once per task
and every inner step costs only a linear layer: ANIL equals MAML with the body's inner rate
set to 0, at a fraction of the inner loop's cost (``tests/test_methods.py`` checks both).
"""

from __future__ import annotations

import torch
from torch import nn

from mamlkit.evaluate import works_under_inference_mode
from mamlkit.functional import Params
from mamlkit.inner_loop import InnerLR, LossFn, gradient_step, init_inner_lrs
from mamlkit.losses import accuracy
from mamlkit.methods.base import MetaLearner, Metric, check_implementation
from mamlkit.methods.embedding import (
    check_head_is_last,
    embed,
    embed_tasks,
    expand_tasks,
    head_logits,
    identity_head,
    split_head,
    task_query_outputs,
)
from mamlkit.outer_loop import check_tasks
from mamlkit.protocols import check_protocol
from mamlkit.tasks import TaskBatch


def adapt_head(head: Params, features_support: torch.Tensor, y_support: torch.Tensor,
               loss_fn: LossFn, inner_lr: InnerLR, inner_steps: int,
               first_order: bool = False) -> Params:
    """The head-only inner loop: ``inner_steps`` gradient steps on the head's weight and bias.

    Works for one task or for ``T`` at once (the losses of the tasks are summed: each task's
    head only sees its own gradient).

    Args:
        head: ``{"head.weight": (n_way, C), "head.bias": (n_way,)}``, or with a task axis ``(T, ...)``.
        features_support: the body's features of the support set, ``(S, C)`` or ``(T, S, C)``.
        y_support: ``(S,)`` or ``(T, S)`` labels.
        loss_fn, inner_lr, inner_steps, first_order: as in :func:`mamlkit.inner_loop.adapt`.

    Returns:
        the adapted head, differentiable with respect to the head *and* the body's features.
    """
    ### BEGIN SOLUTION (Exercise 5.2)
    adapted = dict(head)
    for _ in range(inner_steps):
        loss = loss_fn(head_logits(adapted, features_support), y_support).sum()
        adapted = gradient_step(loss, adapted, inner_lr, first_order)
    return adapted
    ### END SOLUTION


class ANIL(MetaLearner):
    """MAML whose inner loop adapts only the last linear layer (``head``)."""

    name = "anil"

    @staticmethod
    def init_rates(params: Params, inner_lr: float, learn: bool):
        """Learned per-tensor rates for the head's two tensors when ``learn``, else ``None``."""
        _, head = split_head(params)
        return init_inner_lrs(head, inner_lr) if learn else None

    def meta_loss(self, model: nn.Module, params: Params, tasks: TaskBatch,
                  implementation: str = "fast") -> tuple[torch.Tensor, torch.Tensor]:
        """Mean query loss after adapting each task's head; ``(loss, (T, Q, n_way) outputs)``."""
        check_implementation(implementation)
        check_tasks(tasks)
        _, head = split_head(params)
        check_head_is_last(model, params, tasks.x_support[0])
        if implementation == "fast":
            body_t = expand_tasks(params, tasks.num_tasks)
            support = embed_tasks(model, body_t, tasks.x_support)
            query = embed_tasks(model, body_t, tasks.x_query)
            adapted = adapt_head(expand_tasks(head, tasks.num_tasks), support, tasks.y_support,
                                 self.loss_fn, self.inner_lr, self.inner_steps, self.first_order)
            outputs = head_logits(adapted, query)
            return self.loss_fn(outputs, tasks.y_query).mean(), outputs.detach()
        losses, outputs = [], []
        for i in range(tasks.num_tasks):
            task = tasks.task(i)
            adapted = adapt_head(head, embed(model, params, task.x_support), task.y_support,
                                 self.loss_fn, self.inner_lr, self.inner_steps, self.first_order)
            out = head_logits(adapted, embed(model, params, task.x_query))
            losses.append(self.loss_fn(out, task.y_query))
            outputs.append(out.detach())
        return torch.stack(losses).mean(), torch.stack(outputs)

    @works_under_inference_mode
    def adaptation_curve(self, model: nn.Module, params: Params, tasks: TaskBatch, max_steps: int,
                         metric: Metric = accuracy, protocol: str = "transductive") -> torch.Tensor:
        """Each task's query metric after 0..``max_steps`` head-only steps: ``(max_steps + 1, T)``.

        The body's features are computed once; the query features follow ``protocol`` (see
        :mod:`mamlkit.protocols`).
        """
        check_protocol(protocol)
        check_head_is_last(model, params, tasks.x_support[0])
        rates = self.inner_lr
        if isinstance(rates, dict):
            rates = {name: r.detach() for name, r in rates.items()}
        with torch.no_grad():
            theta = expand_tasks({n: p.detach() for n, p in params.items()}, tasks.num_tasks)
            support = embed_tasks(model, theta, tasks.x_support)
            query = task_query_outputs(model, identity_head(theta), tasks.x_support, tasks.x_query, protocol)
        _, head = split_head(theta)
        head = {n: h.clone().requires_grad_(True) for n, h in head.items()}
        rows = []
        with torch.enable_grad():
            for step in range(max_steps + 1):
                with torch.no_grad():
                    rows.append(metric(head_logits(head, query), tasks.y_query))
                if step < max_steps:
                    head = adapt_head(head, support, tasks.y_support, self.loss_fn, rates, 1,
                                      first_order=True)
                    head = {n: h.detach().requires_grad_(True) for n, h in head.items()}
        return torch.stack(rows)
