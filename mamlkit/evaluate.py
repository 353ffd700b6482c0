"""Meta-testing: adapt to unseen tasks and report accuracy with a 95% confidence interval."""

from __future__ import annotations

import contextlib
import functools
import math
from typing import Callable

import torch
from torch import nn
from torch.nn.utils import parametrizations

from mamlkit.fast import _BATCH_STATISTICS, adapt_tasks, forward_tasks, per_task
from mamlkit.functional import Params, adaptable, check_params, forward
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


@contextlib.contextmanager
def evaluation_mode(model: nn.Module, eval_mode: bool = True):
    """Run the body with ``model`` in eval mode (``eval_mode=True``), then restore every module's mode.

    Eval mode switches dropout (and any layer that reads ``self.training``) off. Layers whose
    eval mode reads state that training updates in place keep their mode, since mamlkit never
    updates buffers (see :func:`mamlkit.functional.buffer_copies`) and that state would still
    hold its initial values:

    - normalisation on batch statistics: MAML's batch norm normalises each task with its own
      statistics at test time as in training (its running statistics were never updated);
    - ``torch.nn.utils.parametrizations.spectral_norm``: in eval mode it divides by σ from its
      stored power-iteration vectors, which were never updated; in training mode every forward
      runs its power iteration on the weight it is given, as training did.

    ``eval_mode=False`` leaves the model as it is.
    """
    modes = [(module, module.training) for module in model.modules()]
    if eval_mode:
        for module, _ in modes:
            module.training = isinstance(module, _KEEP_THEIR_MODE) and module.training
    try:
        yield
    finally:
        for module, training in modes:
            module.training = training


# Layers that evaluation_mode leaves in their mode (see its docstring).
_KEEP_THEIR_MODE = (*_BATCH_STATISTICS, parametrizations._SpectralNorm)


def usable_outside_inference_mode(tensor: torch.Tensor) -> torch.Tensor:
    """``tensor``, or a normal copy of it when it was made under ``torch.inference_mode()``.

    The inner loop differentiates, and autograd refuses to save inference tensors for backward;
    a copy made outside inference mode is an ordinary tensor with the same numbers.
    """
    return tensor.clone() if isinstance(tensor, torch.Tensor) and tensor.is_inference() else tensor


def _outside_inference_mode(value):
    """``value`` with every inference tensor in it (alone, in a tuple or in a dict) copied out."""
    if isinstance(value, torch.Tensor):
        return usable_outside_inference_mode(value)
    if isinstance(value, dict):
        return {key: _outside_inference_mode(item) for key, item in value.items()}
    if isinstance(value, (tuple, list)):
        items = [_outside_inference_mode(item) for item in value]
        return type(value)(*items) if hasattr(value, "_fields") else type(value)(items)
    return value


def _holds_inference_tensor(value) -> bool:
    if isinstance(value, torch.Tensor):
        return value.is_inference()
    if isinstance(value, dict):
        value = list(value.values())
    return isinstance(value, (tuple, list)) and any(_holds_inference_tensor(item) for item in value)


def works_under_inference_mode(function: Callable) -> Callable:
    """Decorator for a test-time function whose inner loop differentiates: it leaves
    ``torch.inference_mode()`` for its own work and gives the same numbers as outside it.

    Under inference mode autograd records nothing, and tensors made there cannot be saved for
    backward; so the call runs with inference mode off, on normal copies of the inference
    tensors among its arguments (tensors, task batches, dicts of tensors). Used by
    :func:`adaptation_curve` and by every algorithm's ``adaptation_curve``.
    """
    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        if torch.is_inference_mode_enabled() or any(map(_holds_inference_tensor, (*args, *kwargs.values()))):
            with torch.inference_mode(False):
                return function(*map(_outside_inference_mode, args),
                                **{key: _outside_inference_mode(value) for key, value in kwargs.items()})
        return function(*args, **kwargs)
    return wrapper


def fewer_ways(params: Params, n_way: int, head: str = "head") -> Params:
    """θ of an ``N``-way network cut down to its first ``n_way`` classes, to evaluate on ``n_way``-way tasks.

    The head's weight ``(N, C)`` and bias ``(N,)`` keep their first ``n_way`` rows; every other
    tensor is the same. In MAML the labels of a task are a random assignment of its classes,
    so the rows of the head are interchangeable and any ``n_way`` of them form an ``n_way``-way
    initialisation. Evaluate the result with an ``n_way``-way copy of the network, e.g.
    ``evaluate(Conv4(3), fewer_ways(params, 3), ...)``.

    Raises:
        ValueError: there is no ``head.weight``/``head.bias``, or ``n_way`` is not between 2 and N.
    """
    names = (f"{head}.weight", f"{head}.bias")
    if any(name not in params for name in names):
        raise ValueError(f"fewer_ways needs a linear output layer named {head!r} ({names[0]}, {names[1]}); "
                         f"params has no such tensors")
    ways = params[names[0]].shape[0]
    if isinstance(n_way, bool) or not isinstance(n_way, int) or not 2 <= n_way <= ways:
        raise ValueError(f"n_way must be an integer from 2 to the head's {ways} classes, got {n_way!r}")
    return {**params, **{name: params[name][:n_way] for name in names}}


def check_ways(num_outputs: int, labels: torch.Tensor, where: str = "evaluate") -> None:
    """Raise a ValueError when a classifier with ``num_outputs`` classes meets tasks with fewer.

    A 5-way θ on 3-way tasks would be scored as a 5-class classifier (chance 20%, not 33%),
    a number that means neither.

    Args:
        num_outputs: the classes the model scores (its output width).
        labels: integer labels of some tasks, ``(T, S)``; the tasks are ``labels.max() + 1``-way.
    """
    n_way = int(labels.max()) + 1
    if n_way < num_outputs:
        raise ValueError(
            f"{where}: the model has {num_outputs} outputs but these tasks are {n_way}-way (labels 0..{n_way - 1}), "
            f"so it would be scored as a {num_outputs}-class classifier; use {num_outputs}-way tasks, or "
            f"evaluate on {n_way} ways with an {n_way}-way copy of the network and "
            f"mamlkit.evaluate.fewer_ways(params, {n_way}) (the head's first {n_way} rows)")


def output_width(model: nn.Module, params: Params, tasks: TaskBatch, method=None) -> int:
    """How many classes the model scores: the head's rows for ANIL/ProtoNet, else the output width."""
    if method is not None and not getattr(method, "has_inner_loop", True) and "head.weight" in params:
        return params["head.weight"].shape[0]  # ProtoNet: one prototype per row of the head
    with torch.no_grad():
        return forward(model, {n: p.detach() for n, p in params.items()}, tasks.x_support[0]).shape[-1]


@works_under_inference_mode
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
    module change. The model runs in the mode it is in (:func:`evaluate` switches to eval
    mode first). Under ``torch.inference_mode()`` it leaves inference mode for its own work
    (the inner loop needs autograd) and gives the same numbers.

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
    eval_mode: bool = True,
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
        eval_mode: evaluate with the model in eval mode (default): dropout off; batch norm on
            batch statistics keeps normalising each task with its own (see
            :func:`evaluation_mode`). Every module's mode is restored afterwards. False: the
            model as it is (dropout then draws from torch's global generator).

    Works under ``torch.inference_mode()`` (it leaves inference mode inside: the inner loop
    needs autograd), with the same numbers.

    Returns:
        ``{"mean", "ci95", "per_step_mean", "per_step_ci95", "per_task", "num_tasks"}`` where
        ``mean ± ci95`` is the metric after ``inner_steps`` steps and ``per_step_*`` list it
        after 0..inner_steps steps.

    Raises:
        ValueError: for classification, a model with more outputs than the tasks have classes
            (a 5-way θ on 3-way tasks; :func:`fewer_ways` says how to evaluate on fewer), and
            arguments that do not fit (named in the message).
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
    # The inner loop needs autograd: out of inference mode, with normal copies of its tensors.
    with torch.inference_mode(False), evaluation_mode(model, eval_mode):
        params = {n: usable_outside_inference_mode(p) for n, p in params.items()}
        while remaining > 0:
            asked = min(batch_size, remaining)
            tasks = as_task_batch(sample_tasks(asked), what="sample_tasks(n)")
            if not 1 <= tasks.num_tasks <= asked:
                raise ValueError(f"sample_tasks({asked}) returned {tasks.num_tasks} tasks; it must return "
                                 f"between 1 and {asked}")
            tasks = TaskBatch(*(usable_outside_inference_mode(t) for t in tasks.to(device)))
            check_metric(metric, tasks.y_query)
            if remaining == num_tasks and not tasks.y_support.is_floating_point():
                check_params(model, params)
                check_ways(output_width(model, params, tasks, method), tasks.y_support)
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
