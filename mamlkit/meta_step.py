r"""One meta-update, shared by every outer step: MAML's, any algorithm's and the distributed one.

:func:`meta_update` takes a function that gives the mean query loss of some tasks (the only thing
the algorithms differ in) and does the rest, the same way for all of them:

1. cut the meta-batch into chunks of tasks, computed in threads (:func:`task_pieces`,
   :func:`map_in_threads`), and sum the chunks' gradients in task order
   (:func:`accumulate_meta_gradient`), weighted so that the sum is the gradient of the mean over
   all ``T`` tasks;
2. on several processes, sum the gradients over them (the distributed trainer's all-reduce);
3. refuse an update whose loss or gradient is inf or nan before θ changes (:func:`nonfinite_guard`);
4. take the optimiser step and report the query metrics.

:func:`mamlkit.outer_loop.outer_step` (MAML), :func:`mamlkit.methods.outer_step` (every
algorithm) and :func:`mamlkit.run.distributed.outer_step` (many processes) are each a few lines
around it.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Optional

import torch
from torch import nn

from mamlkit.fast import per_task
from mamlkit.functional import Params, autocast_enabled, forward
from mamlkit.inner_loop import InnerLR, LossFn
from mamlkit.losses import accuracy
from mamlkit.tasks import TaskBatch


class NonFiniteError(FloatingPointError):
    """A meta-step produced a loss or a meta-gradient that is inf or nan; θ was left as it was."""


def all_finite(tensors) -> bool:
    """Whether every element of every tensor is finite (one synchronisation for all of them)."""
    tensors = list(tensors)
    return not tensors or bool(torch.stack([torch.isfinite(t).all() for t in tensors]).all())


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


def _name_of(tensor: torch.Tensor, params: Params, inner_lr: InnerLR) -> str:
    """The name a tensor of the optimiser has in ``params`` or ``inner_lr``, for messages."""
    for prefix, named in (("", params), ("inner_lr:", inner_lr if isinstance(inner_lr, dict) else {})):
        for name, t in named.items():
            if t is tensor:
                return prefix + name
    return f"tensor of shape {tuple(tensor.shape)}"


def _learning_rate(optimizer) -> Optional[float]:
    """The optimiser's (first group's) ``lr``, for messages; None if it has none."""
    lr = optimizer.param_groups[0].get("lr") if optimizer.param_groups else None
    return None if lr is None else float(lr)


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


def check_grad_enabled(what: str = "outer_step") -> None:
    """Raise a ValueError under ``torch.no_grad()`` or ``torch.inference_mode()``: a meta-step needs gradients."""
    if not torch.is_grad_enabled():
        raise ValueError(f"{what} is running under torch.no_grad() (or torch.inference_mode()): a "
                         "meta-step differentiates the inner loop, so it needs gradients; call it "
                         "outside no_grad (for evaluation, use mamlkit.evaluate)")


def query_metrics(outputs: torch.Tensor, targets: torch.Tensor, loss_fn: LossFn,
                  prefix: str = "query") -> dict[str, float]:
    """Loss (and accuracy, for integer labels) of detached outputs ``(T, Q, out)``."""
    metrics = {f"{prefix}_loss": per_task(loss_fn, outputs, targets).mean().item()}
    if not targets.is_floating_point():
        metrics[f"{prefix}_accuracy"] = accuracy(outputs, targets).mean().item()
    return metrics


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


def accumulate_meta_gradient(loss_of: Callable[[TaskBatch], tuple[torch.Tensor, torch.Tensor]],
                             tasks: TaskBatch, trained: list[torch.Tensor], task_chunk_size: Optional[int],
                             threads: int = 1, total_tasks: Optional[int] = None,
                             ) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Set ``.grad`` of each tensor in ``trained`` to ∇ of the mean meta-loss over ``total_tasks`` tasks.

    The tasks are cut into consecutive pieces of at most ``task_chunk_size`` (``None``: all at
    once; see :func:`task_pieces`), up to ``threads`` pieces are computed at a time
    (:func:`map_in_threads`), and each piece's gradient, weighted by its share of the tasks, is
    summed in task order: the same numbers whatever order the threads finish in. A tensor that
    no piece's graph reaches is left with ``.grad = None``.

    Args:
        loss_of: ``loss_of(part) -> (mean loss over the part's tasks, detached outputs (T_part, ...))``.
        tasks: the tasks this process computes, ``T_here`` of them.
        trained: the tensors the optimiser updates.
        total_tasks: the tasks of the whole meta-batch (more than ``T_here`` when other processes
            compute the rest); ``None``: ``T_here``.

    Returns:
        ``(losses, outputs)``: each piece's mean loss, and the outputs of all tasks in order.

    Raises:
        ValueError: ``task_chunk_size`` is not a positive integer or None.
    """
    num_tasks = tasks.num_tasks
    total = num_tasks if total_tasks is None else total_tasks
    chunk = num_tasks if task_chunk_size is None else task_chunk_size
    if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1:
        raise ValueError(f"task_chunk_size must be a positive integer or None, got {task_chunk_size!r}")
    trained = [p for p in trained if p.requires_grad]

    def loss_and_gradient(piece: slice):
        part = TaskBatch(*(t[piece] for t in tasks))
        loss, part_outputs = loss_of(part)
        # Weight each piece by its share of all the tasks, so the sum is the mean over all tasks.
        grads = torch.autograd.grad(loss * (part.num_tasks / total), trained, allow_unused=True)
        return loss, part_outputs, grads

    results = map_in_threads(loss_and_gradient, task_pieces(num_tasks, chunk), threads)
    for i, tensor in enumerate(trained):
        pieces = [grads[i] for _, _, grads in results if grads[i] is not None]
        # summed in task order, whatever order the threads finished in
        tensor.grad = sum(pieces[1:], pieces[0]) if pieces else None
    return [loss for loss, _, _ in results], torch.cat([outputs for _, outputs, _ in results])


def meta_update(
    loss_of: Callable[[TaskBatch], tuple[torch.Tensor, torch.Tensor]],
    model: nn.Module,
    params: Params,
    tasks: TaskBatch,
    optimizer: torch.optim.Optimizer,
    loss_fn: LossFn,
    inner_lr: InnerLR,
    *,
    task_chunk_size: Optional[int] = None,
    threads: int = 1,
    metrics_before: bool = False,
    mine: slice = slice(None),
    sum_over_processes: Optional[Callable[[list[torch.Tensor]], None]] = None,
) -> dict[str, float]:
    r"""One meta-update of the optimiser's tensors: :math:`\theta \leftarrow \theta - \beta\,\nabla_\theta
    \frac{1}{T}\sum_i L(\phi_i(\theta), D_i^{query})` (Finn et al. 2017, Algorithm 1, line 10), with Adam
    or whichever optimiser is given.

    Args:
        loss_of: ``loss_of(part) -> (mean query loss over the part's tasks, detached query
            outputs (T_part, Q, out))``, differentiable with respect to the optimiser's tensors:
            the algorithm (e.g. ``lambda part: meta_loss(model, params, part, ...)``).
        model, params: the network and θ ``{name: tensor}`` (for the metrics of θ before
            adaptation, and for naming tensors in messages).
        tasks: the whole meta-batch of ``T`` tasks; ``x_query`` ``(T, Q, ...)``.
        optimizer: the outer optimiser; it holds θ's trainable tensors (and learned rates).
        loss_fn: the per-task loss, for the reported metrics.
        inner_lr: the inner rates, named in the message of a refused update.
        task_chunk_size, threads: see :func:`accumulate_meta_gradient`.
        metrics_before: also report the query loss/accuracy of θ itself, before adaptation.
        mine: the tasks this process computes (all; a shard on one of several processes).
        sum_over_processes: on several processes, sums a list of gradient tensors over them in
            place (an all-reduce); ``None`` on one.

    Returns:
        ``query_loss`` (and ``query_accuracy`` for integer labels) over this process's tasks,
        and ``query_before_*`` when asked.

    Raises:
        NonFiniteError: the query loss or the meta-gradient is inf or nan; θ and the optimiser
            state are unchanged. On several processes the summed gradients are checked, the same
            numbers everywhere, so all processes raise together and none waits in a collective.
    """
    here = TaskBatch(*(t[mine] for t in tasks))
    trained = [p for group in optimizer.param_groups for p in group["params"]]
    optimizer.zero_grad(set_to_none=True)
    losses, outputs = accumulate_meta_gradient(loss_of, here, trained, task_chunk_size, threads,
                                               total_tasks=tasks.num_tasks)
    if sum_over_processes is not None:
        # A tensor no graph reaches has no gradient on any process alike (they build the same graph).
        sum_over_processes([p.grad for p in trained if p.grad is not None])
    else:
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
            before = torch.stack([forward(model, params, x) for x in here.x_query])
        metrics.update(query_metrics(before, here.y_query, loss_fn, prefix="query_before"))
    optimizer.step()
    return {**query_metrics(outputs, here.y_query, loss_fn), **metrics}
