r"""The outer loop: learning θ so that one inner loop is enough.

For a batch of tasks, adapt θ to each task's support set (the inner loop), measure the
adapted φᵢ on the task's query set, and move θ against the gradient of the mean query loss:

.. math::  \theta \leftarrow \theta - \beta \, \nabla_\theta \frac{1}{T} \sum_i L\big(\phi_i(\theta), D_i^{query}\big)

:func:`meta_loss` is the plain per-task loop, the version the notebooks teach.
:func:`mamlkit.fast.meta_loss_batched` computes the same numbers for all tasks at once.
:func:`outer_step` runs either and takes one optimiser step.
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from typing import Optional

import torch
from torch import nn

from mamlkit.functional import Params, autocast_enabled, check_params, forward
from mamlkit.inner_loop import InnerLR, LossFn, adapt, check_inner_loop_args, check_inputs_match, shape_checked
from mamlkit.losses import accuracy
from mamlkit.tasks import TaskBatch, as_task_batch


class NonFiniteError(FloatingPointError):
    """A meta-step produced a loss or a meta-gradient that is inf or nan; θ was left as it was."""


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


def all_finite(tensors) -> bool:
    """Whether every element of every tensor is finite (one synchronisation for all of them)."""
    tensors = list(tensors)
    return not tensors or bool(torch.stack([torch.isfinite(t).all() for t in tensors]).all())


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


def nonfinite_guard(params: Params, inner_lr: InnerLR = 0.0):
    """An optimiser step pre-hook that refuses a step whose gradients are not all finite.

    Register it with ``optimizer.register_step_pre_hook(nonfinite_guard(params, inner_lr))``:
    whatever computed the gradients (:func:`outer_step`, another algorithm, a distributed
    step), the hook runs inside ``optimizer.step()`` *before* any tensor or optimiser state
    changes, drops the gradients and raises :class:`NonFiniteError` naming the tensors.
    """
    def refuse_nonfinite(optimizer, args, kwargs):
        with_grads = [p for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        if not all_finite(p.grad for p in with_grads):
            bad = [_name_of(p, params, inner_lr) for p in with_grads if not bool(torch.isfinite(p.grad).all())]
            optimizer.zero_grad(set_to_none=True)
            raise NonFiniteError(refusal(f"the meta-gradient of {bad[:3]}", "inf/nan", inner_lr,
                                         _learning_rate(optimizer)))

    return refuse_nonfinite


def query_metrics(outputs: torch.Tensor, targets: torch.Tensor, loss_fn: LossFn,
                  prefix: str = "query") -> dict[str, float]:
    """Loss (and accuracy, for integer labels) of detached outputs ``(T, Q, out)``."""
    from mamlkit.fast import per_task  # the fast path builds on this module

    metrics = {f"{prefix}_loss": per_task(loss_fn, outputs, targets).mean().item()}
    if not targets.is_floating_point():
        metrics[f"{prefix}_accuracy"] = accuracy(outputs, targets).mean().item()
    return metrics


def parallel_threads(model: nn.Module, params: Params, implementation: str,
                     task_threads: Optional[int] = None) -> int:
    """How many groups of tasks a meta-step computes at the same time (``outer_step``'s ``task_threads``).

    ``None`` means torch's thread count on a CPU and 1 elsewhere. Only the fast implementation
    of a model with its own ``forward_tasks`` (``Conv4``, ``SineMLP``: pure functions of the
    parameters) runs in threads: other modules run through ``functional_call``, which swaps
    tensors into the module itself while it runs, so two threads would race on it; and the
    per-task loop stays the plain reference.

    Raises:
        ValueError: ``task_threads`` is not a positive integer or None.
    """
    if task_threads is not None and (isinstance(task_threads, bool) or not isinstance(task_threads, int)
                                     or task_threads < 1):
        raise ValueError(f"task_threads must be a positive integer or None, got {task_threads!r}")
    if implementation != "fast" or not hasattr(model, "forward_tasks") or autocast_enabled():
        return 1  # autocast is thread-local too: worker threads would compute in full precision
    if task_threads is not None:
        return task_threads
    on_cpu = all(p.device.type == "cpu" for p in params.values())
    return torch.get_num_threads() if on_cpu else 1


def check_grad_enabled(what: str = "outer_step") -> None:
    """Raise a ValueError under ``torch.no_grad()`` or ``torch.inference_mode()``: a meta-step needs gradients."""
    if not torch.is_grad_enabled():
        raise ValueError(f"{what} is running under torch.no_grad() (or torch.inference_mode()): a "
                         "meta-step differentiates the inner loop, so it needs gradients; call it "
                         "outside no_grad (for evaluation, use mamlkit.evaluate)")


def task_pieces(num_tasks: int, chunk: int) -> list[slice]:
    """Consecutive slices of the tasks, as few as allow at most ``chunk`` tasks each.

    Sizes differ by at most one task, so that parallel threads finish together:
    ``task_pieces(32, 8)`` gives four slices of 8, ``task_pieces(10, 8)`` two of 5. A single
    chunk is not split further to feed a second thread: with torch's own two threads on one
    group of 8 tasks the step was as fast (measured on the fast preset's meta-batch).
    """
    count = -(-num_tasks // chunk)
    size, extra = divmod(num_tasks, count)
    starts = [i * size + min(i, extra) for i in range(count + 1)]
    return [slice(a, b) for a, b in zip(starts[:-1], starts[1:])]


def map_in_threads(fn, items: list, threads: int) -> list:
    """``[fn(item) for item in items]``, with up to ``threads`` items at a time.

    Each worker runs torch with a single thread of its own, and torch's thread count is
    restored afterwards. Grad mode is thread-local in torch, so the caller's is passed on.
    """
    if threads <= 1 or len(items) <= 1:
        return [fn(item) for item in items]
    grad_enabled = torch.is_grad_enabled()

    def work(item):
        torch.set_num_threads(1)
        with torch.set_grad_enabled(grad_enabled):
            return fn(item)

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with ThreadPoolExecutor(max_workers=min(threads, len(items))) as pool:
            return list(pool.map(work, items))
    finally:
        torch.set_num_threads(previous)


def accumulate_meta_gradient(loss_of, tasks: TaskBatch, optimizer: torch.optim.Optimizer,
                             task_chunk_size: Optional[int], threads: int = 1
                             ) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Set the gradients of the optimiser's tensors to ∇ of the mean meta-loss over all tasks.

    The tasks are cut into consecutive pieces of at most ``task_chunk_size`` (``None``: all at
    once; see :func:`task_pieces`), up to ``threads`` pieces are computed at a time
    (:func:`map_in_threads`), and each piece's gradient, weighted by its share of the tasks, is
    summed in task order: the same numbers whatever order the threads finish in.

    Args:
        loss_of: ``loss_of(part) -> (mean loss over the part's tasks, detached outputs (T_part, ...))``.

    Returns:
        ``(losses, outputs)``: each piece's mean loss, and the outputs of all tasks in order.

    Raises:
        ValueError: ``task_chunk_size`` is not a positive integer or None.
    """
    num_tasks = tasks.num_tasks
    chunk = num_tasks if task_chunk_size is None else task_chunk_size
    if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1:
        raise ValueError(f"task_chunk_size must be a positive integer or None, got {task_chunk_size!r}")
    trained = [p for group in optimizer.param_groups for p in group["params"] if p.requires_grad]

    def loss_and_gradient(piece: slice):
        part = TaskBatch(*(t[piece] for t in tasks))
        loss, part_outputs = loss_of(part)
        # Weight each piece by its share of the tasks, so the sum is the mean over all tasks.
        grads = torch.autograd.grad(loss * (part.num_tasks / num_tasks), trained, allow_unused=True)
        return loss, part_outputs, grads

    results = map_in_threads(loss_and_gradient, task_pieces(num_tasks, chunk), threads)
    optimizer.zero_grad(set_to_none=True)
    for i, tensor in enumerate(trained):
        pieces = [grads[i] for _, _, grads in results if grads[i] is not None]
        if pieces:  # summed in task order, whatever order the threads finished in
            tensor.grad = sum(pieces[1:], pieces[0])
    return [loss for loss, _, _ in results], torch.cat([outputs for _, outputs, _ in results])


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
    from mamlkit.fast import meta_loss_batched  # the fast path builds on this module

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
    threads = parallel_threads(model, params, method, task_threads)
    compute = meta_loss_batched if method == "fast" else meta_loss

    losses, outputs = accumulate_meta_gradient(
        lambda part: compute(model, params, part, loss_fn, inner_lr, inner_steps, first_order),
        tasks, optimizer, task_chunk_size, threads)
    for loss in losses:
        if not bool(torch.isfinite(loss)):
            optimizer.zero_grad(set_to_none=True)
            raise NonFiniteError(refusal("the query loss after adaptation", loss.item(), inner_lr,
                                         _learning_rate(optimizer)))
    nonfinite_guard(params, inner_lr)(optimizer, (), {})  # raises before θ or the state change
    metrics = {}
    if metrics_before:
        # Before the update, so that "before" and "after" adaptation describe the same θ; after the
        # meta-gradient, so that random layers (dropout) draw the same masks for it either way.
        with torch.no_grad():
            before = torch.stack([forward(model, params, x) for x in tasks.x_query])
        metrics.update(query_metrics(before, tasks.y_query, loss_fn, prefix="query_before"))
    optimizer.step()

    return {**query_metrics(outputs, tasks.y_query, loss_fn), **metrics}


def _name_of(tensor: torch.Tensor, params: Params, inner_lr: InnerLR) -> str:
    """The name a tensor of the optimiser has in ``params`` or ``inner_lr``, for messages."""
    for prefix, named in (("", params), ("inner_lr:", inner_lr if isinstance(inner_lr, dict) else {})):
        for name, t in named.items():
            if t is tensor:
                return prefix + name
    return f"tensor of shape {tuple(tensor.shape)}"


# Beyond these a learning rate is far outside any published MAML setting (Adam's meta_lr:
# 1e-4 to 1e-2, and Adam moves every weight by about meta_lr per step; inner_lr: 0.01 to 0.4).
TOO_LARGE_META_LR = 0.1
TOO_LARGE_INNER_LR = 1.0


def refusal(quantity: str, value, inner_lr: InnerLR, meta_lr=None) -> str:
    """The message of a refused meta-step: what was not finite, that θ is unchanged, the likely cause.

    The cause named is the learning rate that is actually extreme (``meta_lr``, the optimiser's
    ``lr``, above :data:`TOO_LARGE_META_LR`; a fixed ``inner_lr`` or a learned rate above
    :data:`TOO_LARGE_INNER_LR`); when neither is, the message says so and names the others.
    """
    if isinstance(inner_lr, dict):
        largest = max((float(t.detach().abs().max()) for t in inner_lr.values()), default=0.0)
        rate, inner = "learned inner rates", largest
    else:
        rate, inner = f"inner_lr={inner_lr!r}", float(inner_lr)
    causes = []
    if meta_lr is not None and float(meta_lr) > TOO_LARGE_META_LR:
        causes.append(f"meta_lr={float(meta_lr)!r} is too large (Adam moves every weight by about "
                      "meta_lr each step; published runs use 1e-4 to 1e-2)")
    if inner > TOO_LARGE_INNER_LR:
        causes.append(f"{rate} too large: the inner steps diverge (published runs use 0.01 to 0.4; "
                      "try a smaller inner_lr or fewer inner_steps)")
    if not causes:
        shown = rate + ("" if meta_lr is None else f", meta_lr={float(meta_lr)!r}")
        causes.append(f"no learning rate is extreme ({shown}), so either the inner steps diverge "
                      "for this model (try a smaller inner_lr or fewer inner_steps) or the data "
                      "or the loss gives inf/nan")
    return (f"{quantity} is {value}: outer_step refused the update, θ and the optimizer state are "
            f"unchanged. Likely cause: {'; and '.join(causes)}")


def _learning_rate(optimizer) -> Optional[float]:
    """The optimiser's (first group's) ``lr``, for messages; None if it has none."""
    lr = optimizer.param_groups[0].get("lr") if optimizer.param_groups else None
    return None if lr is None else float(lr)
