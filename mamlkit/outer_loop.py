r"""The outer loop: learning θ so that one inner loop is enough.

For a batch of tasks, adapt θ to each task's support set (the inner loop), measure the
adapted φᵢ on the task's query set, and move θ against the gradient of the mean query loss:

.. math::  \theta \leftarrow \theta - \beta \, \nabla_\theta \frac{1}{T} \sum_i L\big(\phi_i(\theta), D_i^{query}\big)

:func:`meta_loss` is the plain per-task loop, the version the notebooks teach.
:func:`mamlkit.fast.meta_loss_batched` computes the same numbers for all tasks at once.
:func:`outer_step` runs either and takes one optimiser step.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from mamlkit.functional import Params, check_params, forward
from mamlkit.inner_loop import InnerLR, LossFn, adapt, check_inner_loop_args, check_task
from mamlkit.losses import accuracy
from mamlkit.tasks import TaskBatch


def check_tasks(tasks: TaskBatch) -> None:
    """Raise a ValueError unless every part of the batch holds the same number of tasks."""
    sizes = {name: t.shape[0] for name, t in zip(TaskBatch._fields, tasks)}
    if len(set(sizes.values())) != 1:
        raise ValueError(f"every part of a TaskBatch needs the same number of tasks, got {sizes}")
    check_task(tasks.x_support[0], tasks.y_support[0], "support")
    check_task(tasks.x_query[0], tasks.y_query[0], "query")


def meta_loss(
    model: nn.Module,
    params: Params,
    tasks: TaskBatch,
    loss_fn: LossFn,
    inner_lr: InnerLR,
    inner_steps: int,
    first_order: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean query loss after adaptation, one task at a time.

    Args:
        model, params, loss_fn, inner_lr, inner_steps, first_order: as in
            :func:`mamlkit.inner_loop.adapt`.
        tasks: ``T`` tasks; ``x_support`` ``(T, S, ...)``, ``x_query`` ``(T, Q, ...)``.

    Returns:
        ``(loss, query_outputs)``: the scalar mean query loss over tasks, differentiable with
        respect to θ (and learned inner rates), and the adapted model's query outputs
        ``(T, Q, out)``, detached, for metrics.
    """
    check_tasks(tasks)
    losses, outputs = [], []
    for i in range(tasks.num_tasks):
        task = tasks.task(i)
        ### BEGIN SOLUTION (Exercise 3.1)
        adapted = adapt(model, params, task.x_support, task.y_support, loss_fn,
                        inner_lr, inner_steps, first_order)
        query_outputs = forward(model, adapted, task.x_query)
        losses.append(loss_fn(query_outputs, task.y_query))
        ### END SOLUTION
        outputs.append(query_outputs.detach())
    return torch.stack(losses).mean(), torch.stack(outputs)


def query_metrics(outputs: torch.Tensor, targets: torch.Tensor, loss_fn: LossFn,
                  prefix: str = "query") -> dict[str, float]:
    """Loss (and accuracy, for integer labels) of detached outputs ``(T, Q, out)``."""
    metrics = {f"{prefix}_loss": loss_fn(outputs, targets).mean().item()}
    if not targets.is_floating_point():
        metrics[f"{prefix}_accuracy"] = accuracy(outputs, targets).mean().item()
    return metrics


def outer_step(
    model: nn.Module,
    params: Params,
    tasks: TaskBatch,
    optimizer: torch.optim.Optimizer,
    loss_fn: LossFn,
    inner_lr: InnerLR,
    inner_steps: int,
    first_order: bool = False,
    method: str = "fast",
    task_chunk_size: Optional[int] = None,
    metrics_before: bool = False,
) -> dict[str, float]:
    """One meta-update of θ (and of learned inner rates, if the optimiser holds them).

    Args:
        model, params, tasks, loss_fn, inner_lr, inner_steps, first_order: as in :func:`meta_loss`.
        optimizer: the outer optimiser over θ's tensors (e.g. Adam with lr β).
        method: ``"fast"`` (all tasks at once, :mod:`mamlkit.fast`) or ``"loop"`` (per task).
        task_chunk_size: adapt at most this many tasks at a time and accumulate their
            gradients: the same update with less memory (second-order graphs grow with
            ``inner_steps`` × tasks), for some extra time.
        metrics_before: also report the query loss/accuracy of θ itself, before adaptation.

    Returns:
        ``query_loss`` and, for classification, ``query_accuracy`` after adaptation (means over
        tasks), plus ``query_loss_before``/``query_accuracy_before`` when asked.
    """
    from mamlkit.fast import meta_loss_batched  # the fast path builds on this module

    if method not in ("fast", "loop"):
        raise ValueError(f"method must be 'fast' or 'loop', got {method!r}")
    check_params(model, params)
    check_inner_loop_args(inner_lr, inner_steps, params)
    check_tasks(tasks)
    num_tasks = tasks.num_tasks
    chunk = num_tasks if task_chunk_size is None else task_chunk_size
    if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1:
        raise ValueError(f"task_chunk_size must be a positive integer or None, got {task_chunk_size!r}")
    compute = meta_loss_batched if method == "fast" else meta_loss

    optimizer.zero_grad(set_to_none=True)
    outputs = []
    for start in range(0, num_tasks, chunk):
        part = TaskBatch(*(t[start:start + chunk] for t in tasks))
        loss, part_outputs = compute(model, params, part, loss_fn, inner_lr, inner_steps, first_order)
        # Weight each chunk by its share of the tasks, so the sum is the mean over all tasks.
        (loss * (part.num_tasks / num_tasks)).backward()
        outputs.append(part_outputs)
    optimizer.step()

    metrics = query_metrics(torch.cat(outputs), tasks.y_query, loss_fn)
    if metrics_before:
        with torch.no_grad():
            before = torch.stack([forward(model, params, x) for x in tasks.x_query])
        metrics.update(query_metrics(before, tasks.y_query, loss_fn, prefix="query_before"))
    return metrics
