"""The fast meta-step: every task of a meta-batch adapted at once.

Same mathematics as :func:`mamlkit.outer_loop.meta_loss`, organised for speed. θ is broadcast
to a leading task axis (``θ.expand(T, ...)``, no copy), and the model's ``forward_tasks``
evaluates all ``T`` tasks in one call, each with its own parameters. Because the tasks do not
interact, the gradient of the *sum* of the per-task support losses with respect to the
broadcast parameters is every task's own gradient, stacked along the task axis: one backward
pass instead of ``T``.

The per-task loop stays the reference: ``tests/test_fast.py`` checks this module against it and
against finite differences.
"""

from __future__ import annotations

import torch
from torch import nn

from mamlkit.functional import Params
from mamlkit.inner_loop import InnerLR, LossFn, gradient_step
from mamlkit.tasks import TaskBatch


def adapt_tasks(
    model: nn.Module,
    params: Params,
    x_support: torch.Tensor,
    y_support: torch.Tensor,
    loss_fn: LossFn,
    inner_lr: InnerLR,
    inner_steps: int,
    first_order: bool = False,
) -> Params:
    """Adapt θ to ``T`` tasks at once.

    Args:
        params: θ, shapes as in the model (no task axis).
        x_support: ``(T, S, ...)``; y_support: ``(T, S)`` or ``(T, S, D)``.

    Returns:
        φ for every task: ``{name: (T, *shape)}``.
    """
    num_tasks = x_support.shape[0]
    adapted = {name: p.expand(num_tasks, *p.shape) for name, p in params.items()}
    for _ in range(inner_steps):
        losses = loss_fn(model.forward_tasks(adapted, x_support), y_support)  # (T,)
        adapted = gradient_step(losses.sum(), adapted, inner_lr, first_order)
    return adapted


def meta_loss_batched(
    model: nn.Module,
    params: Params,
    tasks: TaskBatch,
    loss_fn: LossFn,
    inner_lr: InnerLR,
    inner_steps: int,
    first_order: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean query loss after adaptation, all tasks at once; see :func:`mamlkit.outer_loop.meta_loss`."""
    if not hasattr(model, "forward_tasks"):
        raise TypeError(
            f"{type(model).__name__} has no forward_tasks(params, x); use method='loop' "
            "or give the model a task-batched forward"
        )
    adapted = adapt_tasks(model, params, tasks.x_support, tasks.y_support, loss_fn,
                          inner_lr, inner_steps, first_order)
    query_outputs = model.forward_tasks(adapted, tasks.x_query)
    return loss_fn(query_outputs, tasks.y_query).mean(), query_outputs.detach()
