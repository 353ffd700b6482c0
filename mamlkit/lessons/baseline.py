r"""The baseline MAML is compared with: pretrain on all tasks at once, then fine-tune.

"Pretrained on all tasks" (Finn et al. 2017, §5.1) trains the same network by ordinary
regression on the union of many tasks, as if they were one big data set:

.. math::  \theta \leftarrow \theta - \beta \, \nabla_\theta \frac{1}{T} \sum_i L\big(\theta, D_i^{support} \cup D_i^{query}\big)

No inner loop is involved: θ learns to predict well *on average over tasks*. At test time it is
fine-tuned on a new task's support set with exactly the inner loop MAML uses,
:func:`mamlkit.inner_loop.adapt`, with the same α and number of steps, so the comparison
isolates the one thing that differs: how θ was trained.

The paper fine-tunes the baseline "using an automatically tuned step size": MAML's α = 0.01
makes the pretrained network's fine-tuning overshoot on many tasks (the table of
``notebooks/03_outer_loop.ipynb`` counts them). The top curvature of the support loss alone does
not explain it: the notebook measures the largest Hessian eigenvalue at both θ
(:func:`mamlkit.lessons.curvature.top_eigenvalue`), and which θ is steeper depends on how long each was
trained. :func:`choose_inner_lr` picks α from a few candidates on
validation tasks, never on the test tasks.

For sine waves the average over tasks of :math:`A\sin(x - \psi)` is a single smooth bump, and
that is roughly what the pretrained network learns; a few gradient steps from there cannot reach
a particular wave, which is why the paper's baseline stays above 2 in MSE.

Used in ``notebooks/03_outer_loop.ipynb`` and :mod:`mamlkit.lessons.sine_experiment`.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import torch
from torch import nn

from mamlkit.functional import Params, check_params, forward
from mamlkit.inner_loop import InnerLR, LossFn, adapt
from mamlkit.tasks import TaskBatch

__all__ = ["choose_inner_lr", "fine_tune", "pooled_loss", "pretrain"]


def pooled_loss(model: nn.Module, params: Params, tasks: TaskBatch, loss_fn: LossFn) -> torch.Tensor:
    """The loss of θ itself on every example of every task, pooled into one data set.

    Support and query sets are both plain training data here: the baseline has no inner loop,
    so nothing needs to be held out.

    Args:
        tasks: ``T`` tasks; ``x_support`` ``(T, S, *input_shape)``, ``x_query`` ``(T, Q, *input_shape)``.

    Returns:
        A scalar, the loss over all ``T·(S + Q)`` examples.
    """
    x = torch.cat([tasks.x_support, tasks.x_query], dim=1)
    y = torch.cat([tasks.y_support, tasks.y_query], dim=1)
    x = x.reshape(-1, *x.shape[2:])
    y = y.reshape(-1, *y.shape[2:])
    return loss_fn(forward(model, params, x), y)


def pretrain(
    model: nn.Module,
    params: Params,
    sample_tasks: Callable[[], TaskBatch],
    loss_fn: LossFn,
    iterations: int,
    lr: float = 1e-3,
    progress: bool = False,
) -> list[float]:
    """Train ``params`` in place by plain regression on pooled tasks, with Adam.

    Give it the same task sampler and the same number of iterations as the MAML run it is
    compared with: both methods then see exactly as many tasks and points.

    Args:
        model: the architecture (the same as MAML's).
        params: θ, ``{name: leaf tensor}``, e.g. from :func:`mamlkit.functional.get_params`;
            updated in place.
        sample_tasks: ``sample_tasks()`` returns a new :class:`TaskBatch` each call (one
            meta-batch; it owns its random generator).
        loss_fn: ``loss_fn(outputs, targets) -> scalar``; e.g. :func:`mamlkit.losses.mse`.
        iterations: optimiser steps, one meta-batch each.
        lr: Adam's learning rate (MAML's meta_lr, for a fair comparison).
        progress: show a progress bar.

    Returns:
        The pooled training loss at every step, ``iterations`` floats.
    """
    if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 1:
        raise ValueError(f"iterations must be a positive integer, got {iterations!r}")
    check_params(model, params)
    from tqdm.auto import tqdm

    optimizer = torch.optim.Adam(list(params.values()), lr=lr)
    losses = []
    for _ in tqdm(range(iterations), disable=not progress, desc="pretrain", unit="step"):
        optimizer.zero_grad(set_to_none=True)
        loss = pooled_loss(model, params, sample_tasks(), loss_fn)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


def fine_tune(
    model: nn.Module,
    params: Params,
    x_support: torch.Tensor,
    y_support: torch.Tensor,
    loss_fn: LossFn,
    inner_lr: InnerLR,
    inner_steps: int,
) -> Params:
    """Fine-tune pretrained θ on one task: MAML's own inner loop, with nothing to differentiate later.

    This *is* :func:`mamlkit.inner_loop.adapt` (first-order, since no meta-gradient flows
    through it), with the result detached. For many tasks at once use
    :func:`mamlkit.evaluate.adaptation_curve`, which takes the same steps.

    Args:
        x_support: ``(S, *input_shape)``; y_support: ``(S, ...)`` targets.
        inner_lr, inner_steps: α and the number of SGD steps, as in :func:`adapt`.

    Returns:
        The fine-tuned parameters, ``{name: tensor}``, detached.
    """
    params = {name: p.detach().requires_grad_(True) for name, p in params.items()}
    with torch.enable_grad():
        tuned = adapt(model, params, x_support, y_support, loss_fn, inner_lr, inner_steps, first_order=True)
    return {name: p.detach() for name, p in tuned.items()}


def choose_inner_lr(score: Callable[[float], float], candidates: Sequence[float]) -> tuple[float, dict[float, float]]:
    """The step size with the lowest validation score, and every candidate's score.

    Args:
        score: ``score(inner_lr)``, e.g. the mean query loss after fine-tuning on validation
            tasks (not the test tasks: choosing on them would flatter the baseline).
        candidates: the step sizes to try.

    Returns:
        ``(best inner_lr, {inner_lr: score})``. A non-finite score (fine-tuning diverged)
        never wins; ties go to the smaller step size.
    """
    if not candidates:
        raise ValueError("candidates is empty; give at least one step size to try")
    scores = {float(lr): float(score(lr)) for lr in candidates}
    finite = {lr: s for lr, s in scores.items() if math.isfinite(s)}
    if not finite:
        raise ValueError(f"fine-tuning diverged with every candidate step size: {scores}")
    best = min(sorted(finite), key=lambda lr: finite[lr])
    return best, scores
