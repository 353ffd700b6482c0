r"""Meta-training over several processes: each adapts a share of the tasks, all take one step.

The tasks of a meta-batch are adapted independently, so ``P`` processes (ranks) can share
them: rank ``r`` adapts its shard of ``T_r`` tasks and computes the gradient of its part of the
mean query loss,

.. math::  g_r = \nabla_\theta \frac{1}{T} \sum_{i \in \text{shard}_r} L_i, \qquad
           \sum_r g_r = \nabla_\theta \frac{1}{T} \sum_{i=1}^{T} L_i ,

and one ``all_reduce`` (a sum) gives every rank the single-process meta-gradient, whatever
``P`` and however unevenly ``T`` divides. Every rank then takes the same optimiser step from the
same state, so θ, the learned inner rates and the optimiser state stay identical everywhere
without ever being sent. Metrics (means over a shard) are weighted by ``T_r / T`` and summed
the same way.

Why not ``torch.nn.parallel.DistributedDataParallel``: it averages gradients from hooks on
one backward pass and does not support the double backward that second-order MAML needs
(pytorch/pytorch#47562). The explicit all-reduce here is all MAML needs.

Every rank samples the *whole* meta-batch from the same generator and keeps its shard, so the
tasks, and therefore the run, do not depend on the number of processes: a run on 1, 2 or 4
processes takes the same steps (up to the order of floating-point sums), and a checkpoint
made with one number of processes resumes with another.

Processes are started by ``torchrun``, which sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``MASTER_ADDR`` and ``MASTER_PORT``; :func:`init_from_env` reads them. Without them (a plain
``python -m mamlkit train``) everything here reduces to the single-process case.
"""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any, Callable, Optional

import torch
import torch.distributed as dist
from torch import nn

from mamlkit.errors import ConfigError
from mamlkit.functional import Params, check_params
from mamlkit.meta_step import accumulate_meta_gradient, meta_update
from mamlkit.methods.base import check_implementation
from mamlkit.outer_loop import check_tasks
from mamlkit.tasks import TaskBatch


# -- the process group -----------------------------------------------------------------------
def init_from_env(device: str = "cpu", timeout_s: Optional[float] = None) -> bool:
    """Join the process group that ``torchrun`` describes in the environment, if any.

    Backend: gloo for ``device="cpu"``, NCCL for ``"cuda"``; with CUDA each rank takes the GPU
    ``LOCAL_RANK`` (one GPU per process on each machine), so ``"cuda"`` then means that GPU.
    ``timeout_s``: how long a collective waits for a missing rank before raising (default:
    PyTorch's, 10 to 30 minutes depending on the backend).

    Returns:
        True when this process is one of several ranks, False when it runs alone (no
        ``WORLD_SIZE`` in the environment, or ``WORLD_SIZE=1``).

    Raises:
        ConfigError: (a ValueError) ``device`` is neither cpu nor cuda, names a GPU
            (``"cuda:1"``) when there are several processes, or CUDA has fewer GPUs than
            ``LOCAL_RANK`` needs.
    """
    kind = torch.device(device).type
    if kind not in ("cpu", "cuda"):
        raise ConfigError(f"device must be 'cpu' or 'cuda' for distributed training, got {device!r}")
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or dist.is_initialized():
        return dist.is_initialized()
    if torch.device(device).index is not None:
        raise ConfigError(f"device must be 'cuda' without a number under torchrun, got {device!r}: "
                         "each process takes the GPU numbered by its LOCAL_RANK")
    if kind == "cuda":
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        if local_rank >= torch.cuda.device_count():
            raise ConfigError(f"LOCAL_RANK={local_rank} needs GPU {local_rank}, but this machine has "
                             f"{torch.cuda.device_count()}; start at most that many processes per node")
        torch.cuda.set_device(local_rank)
    dist.init_process_group(backend="nccl" if kind == "cuda" else "gloo",
                            timeout=None if timeout_s is None else timedelta(seconds=timeout_s))
    return True


def shutdown() -> None:
    """Leave the process group (a no-op when running alone)."""
    if dist.is_initialized():
        dist.destroy_process_group()


def world_size() -> int:
    """Number of processes sharing the meta-batch (1 when running alone)."""
    return dist.get_world_size() if dist.is_initialized() else 1


def rank() -> int:
    """This process's rank, 0 … world_size − 1 (0 when running alone)."""
    return dist.get_rank() if dist.is_initialized() else 0


def is_main_process() -> bool:
    """True on rank 0, the one process that writes logs, plots and checkpoints."""
    return rank() == 0


def shard(num_tasks: int, rank: int, world_size: int) -> slice:
    """The tasks rank ``rank`` adapts: a contiguous slice, shard sizes differing by at most one.

    E.g. 5 tasks on 2 ranks: ``slice(0, 3)`` and ``slice(3, 5)``.

    Raises:
        ConfigError: (a ValueError) fewer tasks than ranks: a rank with nothing to do would
            leave its parameters without gradients and the ranks out of step.
        ValueError: a rank out of range.
    """
    if not 0 <= rank < world_size:
        raise ValueError(f"rank must be in 0..{world_size - 1}, got {rank}")
    if num_tasks < world_size:
        raise ConfigError(f"meta_batch_size ({num_tasks}) must be at least the number of "
                          f"processes ({world_size}): every process adapts at least one task")
    base, extra = divmod(num_tasks, world_size)
    start = rank * base + min(rank, extra)
    return slice(start, start + base + (rank < extra))


def _collective_device() -> torch.device:
    """Where small tensors for a collective must live: NCCL reduces GPU tensors only."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def any_rank(flag: bool) -> bool:
    """True on every rank if ``flag`` is true on any rank (e.g. "Ctrl-C was pressed")."""
    if not dist.is_initialized():
        return flag
    value = torch.tensor([float(flag)], device=_collective_device())
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


def broadcast_from_main(make: Callable[[], Any]) -> Any:
    """``make()`` evaluated on rank 0 and sent to every rank (e.g. a checkpoint only rank 0 can read).

    With several machines, only rank 0 needs the run folder: the others receive its contents.
    """
    if not dist.is_initialized():
        return make()
    box = [make() if is_main_process() else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


# -- the all-reduce ----------------------------------------------------------------------------
def all_reduce_sum_(tensors: list[torch.Tensor]) -> None:
    """Replace each tensor by its sum over ranks, in place, in one collective call.

    All tensors must share a dtype and device; they are packed into one flat buffer so that a
    meta-step costs one round of communication, not one per parameter.
    """
    if not dist.is_initialized() or not tensors:
        return
    flat = torch.cat([t.reshape(-1) for t in tensors])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    offset = 0
    for t in tensors:
        t.copy_(flat[offset:offset + t.numel()].view_as(t))
        offset += t.numel()


def all_reduce_metrics(metrics: dict[str, float], weight: float) -> dict[str, float]:
    """``Σ_r weight_r · metrics_r`` over ranks: with weights ``T_r / T``, the mean over all tasks."""
    if not dist.is_initialized():
        return dict(metrics)
    names = sorted(metrics)
    values = torch.tensor([metrics[n] * weight for n in names], dtype=torch.float64,
                          device=_collective_device())
    dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return dict(zip(names, values.tolist()))


# -- one distributed meta-step ---------------------------------------------------------------
def meta_gradient(
    meta_loss: Callable[[TaskBatch], tuple[torch.Tensor, torch.Tensor]],
    tasks: TaskBatch,
    trainable: list[torch.Tensor],
    task_chunk_size: Optional[int] = None,
) -> torch.Tensor:
    r"""Leave the meta-gradient of the mean query loss over *all* ``T`` tasks in ``.grad``.

    This rank evaluates ``meta_loss`` on its :func:`shard` of ``tasks`` only
    (``task_chunk_size`` tasks at a time), back-propagates each chunk's mean loss weighted by
    ``chunk / T``, then sums the gradients of ``trainable`` over ranks
    (:func:`all_reduce_sum_`). Afterwards every rank holds the gradient one process would
    compute for the whole batch (the equation is in the module docstring).

    Args:
        meta_loss: ``meta_loss(tasks) -> (loss, query_outputs)``, the mean query loss over the
            given tasks and their detached query outputs, e.g.
            ``lambda t: method.meta_loss(model, params, t, "fast")``.
        tasks: the whole meta-batch, identical on every rank; ``x_support`` ``(T, S, ...)``.
        trainable: the tensors the optimiser updates (θ's tensors, learned inner rates); their
            ``.grad`` must be cleared (None or zero) before the call.
        task_chunk_size: tasks per ``meta_loss`` call on this rank (None: the whole shard).

    Returns:
        This rank's query outputs ``(T_r, Q, out)``, detached, for metrics.

    Raises:
        ValueError: a bad ``task_chunk_size``, or fewer tasks than ranks.
    """
    tasks = check_tasks(tasks)
    mine = TaskBatch(*(t[shard(tasks.num_tasks, rank(), world_size())] for t in tasks))
    _, outputs = accumulate_meta_gradient(meta_loss, mine, trainable, task_chunk_size, total_tasks=tasks.num_tasks)
    all_reduce_sum_([t.grad for t in trainable if t.grad is not None])
    return outputs


def outer_step(
    method,
    model: nn.Module,
    params: Params,
    tasks: TaskBatch,
    optimizer: torch.optim.Optimizer,
    implementation: str = "fast",
    task_chunk_size: Optional[int] = None,
    metrics_before: bool = False,
) -> dict[str, float]:
    """:func:`mamlkit.methods.outer_step` shared by the ranks: same arguments, same update.

    Every rank calls it with the same whole meta-batch; each adapts its shard, the gradients and
    metrics are summed over ranks, and every rank takes the same optimiser step. Running alone,
    it computes what :func:`mamlkit.methods.outer_step` computes.

    Args:
        method: the algorithm (a :class:`mamlkit.methods.MetaLearner`: ``meta_loss``,
            ``loss_fn``, ``inner_lr``, ``has_inner_loop``).
        model, params, tasks, optimizer, implementation, task_chunk_size, metrics_before: as in
            :func:`mamlkit.methods.outer_step`; ``tasks`` is the whole meta-batch.

    Returns:
        ``query_loss`` (and ``query_accuracy`` for classification), means over all ``T`` tasks,
        the same on every rank; ``query_before_*`` when asked.

    Raises:
        NonFiniteError: the summed meta-gradient holds NaN or ±inf. The check runs after the
            all-reduce, on the same numbers on every rank, so all ranks raise together and none
            is left waiting in a collective; θ and the optimiser state are left unchanged.
    """
    check_implementation(implementation)
    check_params(model, params)
    tasks = check_tasks(tasks)
    mine = shard(tasks.num_tasks, rank(), world_size())
    metrics = meta_update(lambda part: method.meta_loss(model, params, part, implementation),
                          model, params, tasks, optimizer, method.loss_fn, method.inner_lr,
                          task_chunk_size=task_chunk_size, metrics_before=metrics_before and method.has_inner_loop,
                          mine=mine, sum_over_processes=all_reduce_sum_)
    return all_reduce_metrics(metrics, (mine.stop - mine.start) / tasks.num_tasks)
