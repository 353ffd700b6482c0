"""The fast meta-step: every task of a meta-batch adapted at once.

Same mathematics as :func:`mamlkit.outer_loop.meta_loss`, organised for speed. θ is broadcast
to a leading task axis (``θ.expand(T, ...)``, no copy), and :func:`forward_tasks` evaluates all
``T`` tasks in one call, each with its own parameters. Because the tasks do not interact, the
gradient of the *sum* of the per-task support losses with respect to the broadcast parameters
is every task's own gradient, stacked along the task axis: one backward pass instead of ``T``.

:func:`forward_tasks` uses, in this order:

1. the model's own ``forward_tasks(params, x)`` when it has one (``Conv4``, ``SineMLP``: hand
   written for speed and tested against the module);
2. :func:`torch.func.vmap` over :func:`torch.func.functional_call`, for any other module whose
   examples do not interact;
3. a loop over the tasks otherwise: batch norm on batch statistics (vmap's second-order
   gradient through ``F.batch_norm`` was measured 0.3% off the loop's with torch 2.13), random
   layers such as dropout, or anything vmap cannot run.

The per-task loop stays the reference: ``tests/test_fast.py`` and ``tests/test_any_model.py``
check this module against it and against finite differences.
"""

from __future__ import annotations

import weakref

import torch
from torch import nn
from torch.func import functional_call, vmap

from mamlkit.functional import (
    Params,
    adaptable,
    buffer_copies,
    check_inputs_match,
    check_output,
    check_parameters_swapped,
    forward,
    module_restored,
    run_module,
)
from mamlkit.inner_loop import InnerLR, LossFn, gradient_step
from mamlkit.losses import check_loss_inputs
from mamlkit.tasks import TaskBatch

# Normalisation layers that mix the examples of a batch (batch statistics): vmap is not exact.
_BATCH_STATISTICS = (nn.modules.batchnorm._BatchNorm, nn.modules.instancenorm._InstanceNorm)
# Modules on which vmap failed once; they take the loop from then on.
_VMAP_FAILED: "weakref.WeakSet[nn.Module]" = weakref.WeakSet()


def vmap_is_exact(model: nn.Module) -> bool:
    """Whether :func:`torch.func.vmap` may evaluate ``model`` for many tasks at once.

    False for modules with normalisation on batch statistics (batch norm in training mode or
    without running statistics, instance norm), with dropout in training mode (vmap would need
    ``randomness="different"`` and draws other numbers than the loop), and for modules on which
    vmap has failed before.
    """
    if model in _VMAP_FAILED:
        return False
    for module in model.modules():
        if isinstance(module, _BATCH_STATISTICS) and (module.training or not module.track_running_stats):
            return False
        if isinstance(module, nn.modules.dropout._DropoutNd) and module.training and module.p > 0:
            return False
    return True


def forward_tasks(model: nn.Module, params: Params, x: torch.Tensor) -> torch.Tensor:
    """Evaluate ``T`` tasks at once, each with its own parameters, for any module.

    Args:
        params: every tensor with a leading task axis, ``(T, *shape)``.
        x: ``(T, S, *input_shape)``.

    Returns:
        ``(T, S, *output_shape)``: task ``i``'s outputs are ``model`` run with ``params[·][i]``
        on ``x[i]``.

    Raises:
        TypeError: the module returns something else than one tensor (e.g. a tuple; see
            :class:`mamlkit.functional.SelectOutput`).
    """
    check_inputs_match(params, x, "the input")
    if hasattr(model, "forward_tasks"):
        return check_output(model, model.forward_tasks(params, x))
    if vmap_is_exact(model):
        buffers = buffer_copies(model)

        def one_task(task_params, task_x):
            return functional_call(model, {**task_params, **buffers}, (task_x,))

        try:
            with module_restored(model):  # tied weights: the module gets its own tensors back
                output = run_module(model, lambda: vmap(one_task)(params, x))
        except Exception:
            # Some modules cannot run under vmap (data-dependent control flow, in-place
            # updates of buffers, a forward that returns a tuple, ...). The loop computes the
            # same function; if the module is broken for any input, the loop raises its error
            # without vmap's wrapping.
            _VMAP_FAILED.add(model)
        else:
            output = check_output(model, output)
            if output.grad_fn is not None:
                check_parameters_swapped(model, params, output)
            else:  # no graph: one task's forward with gradients on
                check_parameters_swapped(model, {name: p[0] for name, p in params.items()}, output, probe_x=x[0])
            return output
    per_task = {name: p.unbind(0) for name, p in params.items()}
    return torch.stack([forward(model, {name: p[i] for name, p in per_task.items()}, x[i])
                        for i in range(x.shape[0])])


def per_task(fn, outputs: torch.Tensor, targets: torch.Tensor, what: str = "loss_fn") -> torch.Tensor:
    """``fn`` (a loss or a metric) of each task's outputs and targets: ``(T,)``.

    The course's losses (:mod:`mamlkit.losses`) keep leading axes, so one call serves all
    tasks. Other functions (``torch.nn.functional.cross_entropy``, ``nn.MSELoss()``) reduce
    over everything or read axis 1 as classes: called on ``(T, S, C)`` they fail, or worse,
    return a number for all tasks together. Whatever does not return one value per task is
    therefore called task by task, the way :func:`mamlkit.inner_loop.adapt` calls it.

    Raises:
        ValueError: ``fn`` does not return a single number for one task, or float targets
            ``(T, S, ...)`` do not have the outputs' shape (see :func:`mamlkit.losses.check_loss_inputs`).
    """
    num_tasks = outputs.shape[0]
    check_loss_inputs(outputs[0], targets[0], what)  # the same shapes for every task
    try:
        values = fn(outputs, targets)
        if isinstance(values, torch.Tensor) and values.shape == (num_tasks,):
            return values
    except Exception:
        pass  # the task-by-task calls below raise the learner's own error, if there is one
    values = [fn(o, t) for o, t in zip(outputs, targets)]
    for value in values:
        if not isinstance(value, torch.Tensor) or value.dim() != 0:
            shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
            raise ValueError(f"{what} must return one number per task (a scalar tensor for one task's "
                             f"outputs and targets), got {shape}; reduce over the examples, "
                             "e.g. reduction='mean' rather than 'none'")
    return torch.stack(values)


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
    params = adaptable(params)  # weights loaded from a file have no requires_grad: adapt them all
    start = {name: p.expand(num_tasks, *p.shape) for name, p in params.items()}
    return adapt_tasks_from(model, start, x_support, y_support, loss_fn, inner_lr, inner_steps, first_order)


def adapt_tasks_from(
    model: nn.Module,
    start: Params,
    x_support: torch.Tensor,
    y_support: torch.Tensor,
    loss_fn: LossFn,
    inner_lr: InnerLR,
    inner_steps: int,
    first_order: bool = False,
) -> Params:
    """``inner_steps`` steps for ``T`` tasks at once from per-task starting weights.

    Args:
        start: ``{name: (T, *shape)}``, one starting point per task (θ expanded, or, in
            ProtoMAML, θ with each task's prototype head).
        x_support: ``(T, S, ...)``; y_support: ``(T, S)`` or ``(T, S, D)``.

    Returns:
        φ for every task: ``{name: (T, *shape)}``.
    """
    adapted = dict(start)
    for _ in range(inner_steps):
        losses = per_task(loss_fn, forward_tasks(model, adapted, x_support), y_support)  # (T,)
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
    """Mean query loss after adaptation, all tasks at once; see :func:`mamlkit.outer_loop.meta_loss`.

    Any ``nn.Module`` works (see :func:`forward_tasks`); the model's own ``forward_tasks`` is
    used when it has one.
    """
    adapted = adapt_tasks(model, params, tasks.x_support, tasks.y_support, loss_fn,
                          inner_lr, inner_steps, first_order)
    query_outputs = forward_tasks(model, adapted, tasks.x_query)
    return per_task(loss_fn, query_outputs, tasks.y_query).mean(), query_outputs.detach()
