"""The interface every meta-learning algorithm offers, and the outer step built on it.

An algorithm is an object that knows its own hyperparameters (inner learning rate, steps,
first or second order) and owns the tensors it learns besides θ (learned inner rates, for
instance). Training, evaluation and the command line use only these members, so they never
ask which algorithm they are running:

- ``meta_loss(model, params, tasks, implementation)`` → ``(loss, query_outputs)``: the mean
  query loss over tasks, differentiable with respect to θ and :meth:`trainable`, and the
  query outputs ``(T, Q, n_way)``, detached, for metrics;
- ``adaptation_curve(model, params, tasks, max_steps, metric, protocol)`` → ``(steps + 1, T)``:
  each test task's query metric after 0..``max_steps`` steps of adaptation (one row for an
  algorithm without an inner loop);
- ``trainable()`` → ``{name: tensor}``, the extra tensors the outer optimiser updates, saved
  in checkpoints as ``inner_lrs``.
"""

from __future__ import annotations

from typing import Callable, Optional

import torch
from torch import nn

from mamlkit.functional import Params, check_params
from mamlkit.losses import accuracy, cross_entropy
from mamlkit.meta_step import check_grad_enabled, meta_update, parallel_threads
from mamlkit.outer_loop import check_tasks
from mamlkit.tasks import TaskBatch

IMPLEMENTATIONS = ("fast", "loop")
Metric = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def check_implementation(implementation: str) -> None:
    """Raise a ValueError unless ``implementation`` is ``"fast"`` or ``"loop"``."""
    if implementation not in IMPLEMENTATIONS:
        raise ValueError(f"implementation must be 'fast' (all tasks at once) or 'loop' "
                         f"(one task at a time), got {implementation!r}")


class MetaLearner:
    """Base class: hyperparameters, learned tensors and the two methods every algorithm has.

    Args:
        inner_lr: α, the inner step size (ignored by algorithms without an inner loop).
        inner_steps: inner steps during meta-training.
        first_order: treat inner gradients as constants (see :mod:`mamlkit.inner_loop`).
        learned_rates: ``{name: tensor}`` inner rates the outer loop learns, or ``None``.
        loss_fn: ``loss_fn(outputs, labels) -> (...)`` per-task loss.
    """

    #: The name used by ``TrainConfig.algorithm`` and the command line.
    name = "base"
    #: Whether the algorithm adapts parameters to a task (False: ProtoNet).
    has_inner_loop = True

    def __init__(self, inner_lr: float = 0.4, inner_steps: int = 1, first_order: bool = False,
                 learned_rates: Optional[dict[str, torch.Tensor]] = None,
                 loss_fn: Callable = cross_entropy):
        if isinstance(inner_lr, bool) or not isinstance(inner_lr, (int, float)) or inner_lr < 0:
            raise ValueError(f"inner_lr must be a non-negative number, got {inner_lr!r}")
        if isinstance(inner_steps, bool) or not isinstance(inner_steps, int) or inner_steps < 0:
            raise ValueError(f"inner_steps must be a non-negative integer, got {inner_steps!r}")
        self.base_inner_lr = float(inner_lr)
        self.inner_steps = inner_steps
        self.first_order = bool(first_order)
        self.learned_rates = learned_rates
        self.loss_fn = loss_fn

    @property
    def inner_lr(self):
        """α as :func:`mamlkit.inner_loop.gradient_step` takes it: a number or learned rates."""
        return self.learned_rates if self.learned_rates is not None else self.base_inner_lr

    def trainable(self) -> dict[str, torch.Tensor]:
        """Tensors besides θ that the outer optimiser updates (empty by default)."""
        return dict(self.learned_rates or {})

    def meta_loss(self, model: nn.Module, params: Params, tasks: TaskBatch,
                  implementation: str = "fast") -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def adaptation_curve(self, model: nn.Module, params: Params, tasks: TaskBatch, max_steps: int,
                         metric: Metric = accuracy, protocol: str = "transductive") -> torch.Tensor:
        raise NotImplementedError

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(inner_lr={self.base_inner_lr}, inner_steps={self.inner_steps}, "
                f"first_order={self.first_order}, learned_rates={self.learned_rates is not None})")


def outer_step(
    method: MetaLearner,
    model: nn.Module,
    params: Params,
    tasks: TaskBatch,
    optimizer: torch.optim.Optimizer,
    implementation: str = "fast",
    task_chunk_size: Optional[int] = None,
    metrics_before: bool = False,
    task_threads: Optional[int] = None,
) -> dict[str, float]:
    """One meta-update of θ and of the algorithm's learned tensors; any algorithm.

    The same update as :func:`mamlkit.outer_loop.outer_step` (which it equals for MAML),
    computed through ``method.meta_loss``; both are :func:`mamlkit.meta_step.meta_update`.

    Args:
        method: the algorithm.
        optimizer: the outer optimiser over θ and ``method.trainable()``.
        implementation: ``"fast"`` (all tasks of a chunk at once) or ``"loop"`` (per task).
        task_chunk_size: tasks per ``meta_loss`` call, gradients accumulated; ``None``: all.
        metrics_before: also report the query metrics of θ itself, before adaptation
            (algorithms with an inner loop only).
        task_threads: groups of tasks computed at the same time, each in a thread of its own
            (see :func:`mamlkit.outer_loop.outer_step`); ``None``: torch's thread count on a CPU.

    Returns:
        ``query_loss``, ``query_accuracy`` (means over tasks), and the ``query_before_*``
        metrics when asked.
    """
    check_implementation(implementation)
    check_grad_enabled()
    check_params(model, params)
    check_tasks(tasks)
    return meta_update(lambda part: method.meta_loss(model, params, part, implementation),
                       model, params, tasks, optimizer, method.loss_fn, method.inner_lr,
                       task_chunk_size=task_chunk_size,
                       threads=parallel_threads(model, params, implementation, task_threads),
                       metrics_before=metrics_before and method.has_inner_loop)
