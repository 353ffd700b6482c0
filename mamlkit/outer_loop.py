r"""The outer loop: learning θ so that one inner loop is enough.

For a batch of tasks, adapt θ to each task's support set (the inner loop), measure the
adapted φᵢ on the task's query set, and move θ against the gradient of the mean query loss:

.. math::  \theta \leftarrow \theta - \beta \, \nabla_\theta \frac{1}{T} \sum_i L\big(\phi_i(\theta), D_i^{query}\big)

:func:`meta_loss` is the plain per-task loop, the version the notebooks teach.
:func:`mamlkit.fast.meta_loss_batched` computes the same numbers for all tasks at once.
:func:`outer_step` runs either and takes one optimiser step, through
:func:`mamlkit.meta_step.meta_update`, the update every algorithm shares.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
from torch import nn

from mamlkit.fast import meta_loss_batched
from mamlkit.functional import Params, check_params, forward
from mamlkit.inner_loop import InnerLR, LossFn, adapt, check_inner_loop_args, check_inputs_match, shape_checked
from mamlkit.meta_step import (  # noqa: F401  (NonFiniteError, query_metrics, ...: also imported from here)
    NonFiniteError,
    accumulate_meta_gradient,
    all_finite,
    check_grad_enabled,
    map_in_threads,
    meta_update,
    nonfinite_guard,
    parallel_threads,
    query_metrics,
    refusal,
    task_pieces,
)
from mamlkit.tasks import TaskBatch, as_task_batch


def check_tasks(tasks: TaskBatch) -> TaskBatch:
    """``tasks`` as a checked :class:`TaskBatch`; raise a ValueError/TypeError if its parts do not fit.

    See :func:`mamlkit.tasks.as_task_batch`; inputs must also be finite numbers.
    """
    tasks = as_task_batch(tasks)
    for name in ("x_support", "x_query"):
        x = getattr(tasks, name)
        if x.is_floating_point() and not bool(torch.isfinite(x).all()):
            raise ValueError(f"tasks.{name} contains inf or nan; check the data (or its normalisation)")
    return tasks


def check_optimizer(optimizer, params: Params, inner_lr: InnerLR) -> None:
    """Raise unless ``optimizer`` holds every trainable tensor of θ (and learned rates), by identity.

    ``Adam(model.parameters())`` next to ``params = get_params(model)`` holds the *module's*
    tensors, not θ's copies: every step would compute a meta-gradient and move nothing.
    """
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(f"optimizer must be a torch.optim.Optimizer, e.g. torch.optim.Adam(params.values()), "
                        f"got {type(optimizer).__name__}")
    held = {id(p) for group in optimizer.param_groups for p in group["params"]}
    missing = [name for name, p in params.items() if p.requires_grad and id(p) not in held]
    if missing:
        raise ValueError(
            f"the optimizer does not hold params {missing[:3]}{'...' if len(missing) > 3 else ''}, so "
            "outer_step would compute meta-gradients and never apply them. Build it from the very "
            "tensors of params: torch.optim.Adam(params.values(), lr=meta_lr), not from "
            "model.parameters() (get_params makes copies)"
        )
    rates = inner_lr.items() if isinstance(inner_lr, dict) else [("", inner_lr)]
    unheld = [name for name, r in rates
              if isinstance(r, torch.Tensor) and r.requires_grad and id(r) not in held]
    if unheld:
        raise ValueError(
            "inner_lr holds learned rates (requires_grad=True) that the optimizer does not hold, so "
            "they would never change; build the optimizer over both: "
            "torch.optim.Adam([*params.values(), *inner_lr.values()], lr=meta_lr), or detach the "
            "rates to keep them fixed"
        )
    for i, group in enumerate(optimizer.param_groups):
        lr = group.get("lr")
        if lr is not None and not math.isfinite(float(lr)):
            raise ValueError(f"the optimizer's learning rate (param group {i}) is {float(lr)}; "
                             "meta_lr must be a finite number")


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
    tasks = check_tasks(tasks)
    loss_fn = shape_checked(loss_fn)  # float targets of another shape than the outputs: refused
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


def frozen_everywhere(model: nn.Module) -> str:
    """Why no tensor of θ requires grad: the module is frozen throughout, or θ was built by hand."""
    if not any(p.requires_grad for p in model.parameters()):
        return ("every parameter of the model is frozen (requires_grad=False), so there is nothing to "
                "meta-train: unfreeze the layers to train, e.g. model.requires_grad_(True) or "
                "model[-1].requires_grad_(True), before get_params(model)")
    return ("no tensor of params requires grad, so there is nothing to meta-train; build params with "
            "get_params(model) (frozen layers keep requires_grad=False, the others True), not from "
            "model.state_dict() or detached tensors")


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
    task_threads: Optional[int] = None,
) -> dict[str, float]:
    """One meta-update of θ (and of learned inner rates, if the optimiser holds them).

    Any ``nn.Module`` works with either method. Frozen tensors of θ (``requires_grad=False``)
    are used but never moved; the module itself, its buffers and ``tasks`` are never changed.

    Args:
        model, params, tasks, loss_fn, inner_lr, inner_steps, first_order: as in :func:`meta_loss`.
        optimizer: the outer optimiser over θ's tensors, e.g. ``torch.optim.Adam(params.values(),
            lr=meta_lr)``; it must hold the trainable tensors of ``params`` themselves.
        method: ``"fast"`` (all tasks at once, :mod:`mamlkit.fast`) or ``"loop"`` (per task).
        task_chunk_size: adapt at most this many tasks at a time and accumulate their
            gradients: the same update with less memory (second-order graphs grow with
            ``inner_steps`` × tasks); on a CPU often faster too (a smaller working set, and the
            groups run in threads). ``None``: all tasks at once, one group.
        metrics_before: also report the query loss/accuracy of θ itself, before adaptation
            (the same θ as the "after" metrics, before this step's update).
        task_threads: with ``method="fast"`` on a CPU and a model with its own
            ``forward_tasks`` (``Conv4``, ``SineMLP``), adapt this many groups of tasks at the
            same time, each in its own thread with one thread of torch's own (there are
            groups only when ``task_chunk_size`` is below the number of tasks; training uses 8,
            ``TrainConfig.task_chunk_size``). Tasks are independent until their gradients
            are summed, so this parallel work needs no synchronisation, while torch's threads
            have to meet after every small operation.
            ``None``: ``torch.get_num_threads()`` on a CPU, 1 elsewhere. The result does not
            depend on how the threads are scheduled (the gradients are summed in task order).

    Returns:
        ``query_loss`` and, for classification, ``query_accuracy`` after adaptation (means over
        tasks), plus ``query_before_loss``/``query_before_accuracy`` when asked.

    Raises:
        TypeError, ValueError: an argument does not fit (the message names it), e.g. an
            optimiser that does not hold θ's tensors, or a non-finite learning rate.
        NonFiniteError: the query loss or the meta-gradient is inf or nan. The update is
            refused before θ or the optimiser's state change.
    """
    if method not in ("fast", "loop"):
        raise ValueError(f"method must be 'fast' or 'loop', got {method!r}")
    check_grad_enabled()
    check_params(model, params)
    check_inner_loop_args(inner_lr, inner_steps, params)
    tasks = check_tasks(tasks)
    check_inputs_match(params, tasks.x_support, "tasks.x_support")
    if not any(p.requires_grad for p in params.values()):
        raise ValueError(frozen_everywhere(model))
    check_optimizer(optimizer, params, inner_lr)
    if not all_finite(params.values()):
        bad = [n for n, p in params.items() if not bool(torch.isfinite(p).all())]
        raise ValueError(f"params {bad} already contain inf or nan; restart from a good checkpoint")
    compute = meta_loss_batched if method == "fast" else meta_loss
    return meta_update(lambda part: compute(model, params, part, loss_fn, inner_lr, inner_steps, first_order),
                       model, params, tasks, optimizer, loss_fn, inner_lr, task_chunk_size=task_chunk_size,
                       threads=parallel_threads(model, params, method, task_threads),
                       metrics_before=metrics_before)

