"""Meta-testing: adapt to unseen tasks and report accuracy with a 95% confidence interval."""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import nn

from mamlkit.fast import adapt_tasks, forward_tasks, per_task
from mamlkit.functional import Params, adaptable, check_params
from mamlkit.inner_loop import InnerLR, LossFn, check_inner_loop_args, check_inputs_match, gradient_step
from mamlkit.losses import accuracy
from mamlkit.protocols import check_protocol, query_outputs
from mamlkit.tasks import TaskBatch, as_task_batch


def mean_confidence_interval(values: torch.Tensor) -> tuple[float, float]:
    r"""Mean and half-width of its 95% confidence interval, :math:`1.96\,s/\sqrt{n}`.

    ``s`` is the sample standard deviation (``n - 1`` in the denominator). This is the
    protocol of the MAML paper and its successors: 600 tasks, mean ± 1.96·std/√600.

    Args:
        values: ``(n,)`` one number per task, ``n >= 2``.
    """
    values = values.detach().double().flatten()
    n = values.numel()
    if n < 2:
        raise ValueError(f"a confidence interval needs at least 2 values, got {n}")
    ### BEGIN SOLUTION (Exercise 4.2)
    return values.mean().item(), 1.96 * values.std(unbiased=True).item() / math.sqrt(n)
    ### END SOLUTION


def check_metric(metric, targets: torch.Tensor) -> None:
    """Raise a ValueError when the default metric, accuracy, meets targets that are not class labels.

    :func:`mamlkit.losses.accuracy` compares the highest-scoring class with integer labels; on
    float targets (regression, soft labels) it would return a number per example, not per task.
    """
    if metric is accuracy and targets.is_floating_point():
        raise ValueError(
            f"the metric is classification accuracy by default (mamlkit.losses.accuracy), which needs "
            f"integer class labels, but the query targets are {targets.dtype}: pass metric=..., one "
            "number per task, e.g. metric=mamlkit.losses.mse for regression"
        )


def adaptation_curve(
    model: nn.Module,
    params: Params,
    tasks: TaskBatch,
    loss_fn: LossFn,
    inner_lr: InnerLR,
    max_steps: int,
    metric: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = accuracy,
    protocol: str = "transductive",
) -> torch.Tensor:
    """Per-task query metric after 0, 1, ..., ``max_steps`` inner steps.

    At test time nothing is differentiated through the steps, so the inner loop runs
    first-order: the adapted parameters are the same numbers, without the graph.
    ``protocol`` says how batch norm treats the query images (:mod:`mamlkit.protocols`).

    Works with any ``nn.Module`` (see :func:`mamlkit.fast.forward_tasks`); frozen tensors of
    ``params`` (``requires_grad=False``) stay as they are, and neither ``params`` nor the
    module change.

    Returns:
        ``(max_steps + 1, T)``: row ``s`` holds each task's metric after ``s`` steps.

    Raises:
        TypeError, ValueError: for arguments that do not fit (named in the message).
    """
    check_protocol(protocol)
    tasks = as_task_batch(tasks)
    check_params(model, params)
    if isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 0:
        raise ValueError(f"max_steps must be a non-negative integer, got {max_steps!r}")
    check_inner_loop_args(inner_lr, max_steps, params)
    check_inputs_match(params, tasks.x_support, "tasks.x_support")
    check_metric(metric, tasks.y_query)
    # Fresh leaves with the same flags: nothing here reaches the caller's θ or its .grad.
    params = adaptable({name: p.detach().requires_grad_(p.requires_grad) for name, p in params.items()})
    if isinstance(inner_lr, dict):
        inner_lr = {name: lr.detach() if isinstance(lr, torch.Tensor) else lr for name, lr in inner_lr.items()}
    elif isinstance(inner_lr, torch.Tensor):
        inner_lr = inner_lr.detach()
    rows = []
    with torch.enable_grad():
        adapted = adapt_tasks(model, params, tasks.x_support, tasks.y_support, loss_fn, inner_lr, 0)
        for step in range(max_steps + 1):
            with torch.no_grad():
                outputs = (forward_tasks(model, adapted, tasks.x_query) if protocol == "transductive"
                           else query_outputs(model, adapted, tasks.x_support, tasks.x_query, protocol))
                rows.append(per_task(metric, outputs, tasks.y_query, what="metric"))
            if step < max_steps:
                losses = per_task(loss_fn, forward_tasks(model, adapted, tasks.x_support), tasks.y_support)
                adapted = {n: t.detach().requires_grad_(t.requires_grad) for n, t in
                           gradient_step(losses.sum(), adapted, inner_lr, first_order=True).items()}
    return torch.stack(rows)


def evaluate(
    model: nn.Module,
    params: Params,
    sample_tasks: Callable[[int], TaskBatch],
    loss_fn: LossFn,
    inner_lr: InnerLR,
    inner_steps: int,
    num_tasks: int = 600,
    batch_size: int = 50,
    metric: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = accuracy,
    device: str | torch.device = "cpu",
    method=None,
    protocol: str = "transductive",
) -> dict:
    """Adapt to ``num_tasks`` new tasks and summarise the query metric after each step.

    Args:
        sample_tasks: ``sample_tasks(n)`` returns a :class:`TaskBatch` of ``n`` new tasks.
        inner_steps: steps of adaptation at test time.
        num_tasks: how many tasks to average over (600 in the literature).
        batch_size: tasks adapted at once (memory, not results, depends on it).
        metric: ``metric(outputs, targets)``, one number per task; default: classification
            accuracy, which needs integer labels (for regression pass e.g. ``mamlkit.losses.mse``).
        method: an algorithm from :mod:`mamlkit.methods`; it adapts and predicts instead of
            plain MAML with ``inner_lr`` (``loss_fn`` and ``inner_lr`` are then its own).
        protocol: ``"transductive"`` or ``"support-stats"``: which statistics batch norm
            uses for the query images (:mod:`mamlkit.protocols`).

    Returns:
        ``{"mean", "ci95", "per_step_mean", "per_step_ci95", "per_task", "num_tasks"}`` where
        ``mean ± ci95`` is the metric after ``inner_steps`` steps and ``per_step_*`` list it
        after 0..inner_steps steps.
    """
    for name, value, least in (("num_tasks", num_tasks, 2), ("batch_size", batch_size, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise ValueError(f"{name} must be an integer, at least {least}"
                             f"{' for a confidence interval' if name == 'num_tasks' else ''}, got {value!r}")
    if not callable(sample_tasks):
        raise TypeError(f"sample_tasks must be a function n -> TaskBatch of n new tasks, got "
                        f"{type(sample_tasks).__name__}; for a sampler object pass its method, e.g. "
                        "lambda n: sampler.sample(n, generator)")
    curves = []
    remaining = num_tasks
    while remaining > 0:
        asked = min(batch_size, remaining)
        tasks = as_task_batch(sample_tasks(asked), what="sample_tasks(n)")
        if not 1 <= tasks.num_tasks <= asked:
            raise ValueError(f"sample_tasks({asked}) returned {tasks.num_tasks} tasks; it must return "
                             f"between 1 and {asked}")
        tasks = tasks.to(device)
        check_metric(metric, tasks.y_query)
        if method is not None:
            curves.append(method.adaptation_curve(model, params, tasks, inner_steps, metric, protocol))
        else:
            curves.append(adaptation_curve(model, params, tasks, loss_fn, inner_lr, inner_steps, metric,
                                           protocol))
        remaining -= tasks.num_tasks
    curve = torch.cat(curves, dim=1)  # (inner_steps + 1, num_tasks)
    per_step = [mean_confidence_interval(row) for row in curve]
    return {
        "mean": per_step[-1][0],
        "ci95": per_step[-1][1],
        "per_step_mean": [m for m, _ in per_step],
        "per_step_ci95": [c for _, c in per_step],
        "per_task": curve[-1].tolist(),
        "num_tasks": num_tasks,
    }
