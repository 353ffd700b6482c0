r"""What a meta-step keeps in memory, and how long it takes, against the number of inner steps.

Second-order MAML differentiates through every inner step, so the backward pass needs what
every step's forward *and* backward computed: each gradient is taken with
``create_graph=True``, which records the backward pass as a graph of its own and keeps its
intermediate tensors alive until the outer ``backward`` has used them. The memory held by the
autograd graph therefore grows linearly with ``inner_steps``. First-order MAML takes each inner
gradient as a constant: a step's graph is freed as soon as its gradient is computed, and the
memory stays flat. (Finn et al. 2017, §5.2, on the cost; the remedies are listed in
``notebooks/03_outer_loop.ipynb``.)

:func:`graph_memory` measures the bytes the graph holds with
:func:`torch.autograd.graph.saved_tensors_hooks`: every tensor autograd saves for the backward
pass goes through a hook, is counted once per storage while it is alive, and the peak is
recorded. This counts exactly the memory that ``create_graph`` keeps, is the same on every
machine, and needs no profiler.

Used in ``notebooks/03_outer_loop.ipynb``.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import sys
import tempfile
import time
from typing import Callable, Sequence

import torch
from torch import nn

from mamlkit.functional import Params
from mamlkit.inner_loop import LossFn
from mamlkit.outer_loop import meta_loss
from mamlkit.tasks import TaskBatch

__all__ = ["graph_memory", "meta_step_cost"]


class _LiveBytes:
    """Bytes of the distinct storages currently saved for backward, and their peak."""

    def __init__(self) -> None:
        self.refcount: dict[int, int] = {}
        self.live = 0
        self.peak = 0

    def add(self, key: int, nbytes: int) -> None:
        count = self.refcount.get(key, 0)
        if count == 0:
            self.live += nbytes
            self.peak = max(self.peak, self.live)
        self.refcount[key] = count + 1

    def remove(self, key: int, nbytes: int) -> None:
        self.refcount[key] -= 1
        if self.refcount[key] == 0:
            del self.refcount[key]
            self.live -= nbytes


class _Saved:
    """What the graph holds instead of a saved tensor: the tensor, counted while it lives."""

    __slots__ = ("tensor", "key", "nbytes", "counter")

    def __init__(self, tensor: torch.Tensor, counter: _LiveBytes) -> None:
        storage = tensor.untyped_storage()
        self.tensor, self.key, self.nbytes, self.counter = tensor, storage.data_ptr(), storage.nbytes(), counter
        counter.add(self.key, self.nbytes)

    def __del__(self) -> None:
        self.counter.remove(self.key, self.nbytes)


def graph_memory(fn: Callable[[], object]) -> int:
    """The peak number of bytes that autograd holds for backward while ``fn()`` runs.

    Every tensor saved for a backward pass is counted once per storage (a weight saved by
    several operations counts once) from when it is saved until the graph releases it.

    Args:
        fn: runs a forward and, typically, a backward pass (e.g. one meta-step).

    Returns:
        Peak bytes (an ``int``).
    """
    counter = _LiveBytes()
    with torch.autograd.graph.saved_tensors_hooks(lambda t: _Saved(t, counter), lambda saved: saved.tensor):
        fn()
    return counter.peak


def meta_step_cost(
    model: nn.Module,
    params: Params,
    tasks: TaskBatch,
    loss_fn: LossFn,
    inner_lr: float,
    inner_steps_list: Sequence[int],
    first_order: bool = False,
    repeats: int = 3,
) -> list[dict]:
    """Graph memory and time of one meta-gradient (forward and backward), for each step count.

    The meta-loss is :func:`mamlkit.outer_loop.meta_loss` (the per-task reference), and the
    meta-gradient is its ``torch.autograd.grad`` with respect to θ.

    Args:
        inner_steps_list: the numbers of inner steps to measure, e.g. ``[1, 2, 4, 8]``.
        first_order: measure first-order MAML instead.
        repeats: timed runs per setting; the median is reported.

    Returns:
        One ``{"inner_steps", "graph_bytes", "seconds"}`` per entry of ``inner_steps_list``.
    """
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"repeats must be a positive integer, got {repeats!r}")
    leaves = {n: p.detach().requires_grad_(True) for n, p in params.items()}

    def step(inner_steps: int) -> Callable[[], object]:
        def run():
            loss = meta_loss(model, leaves, tasks, loss_fn, inner_lr, inner_steps, first_order)[0]
            return torch.autograd.grad(loss, list(leaves.values()))
        return run

    rows = []
    for inner_steps in inner_steps_list:
        if isinstance(inner_steps, bool) or not isinstance(inner_steps, int) or inner_steps < 1:
            raise ValueError(f"inner_steps_list must hold positive integers, got {inner_steps!r}")
        run = step(inner_steps)
        nbytes = graph_memory(run)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            run()
            times.append(time.perf_counter() - start)
        rows.append({"inner_steps": inner_steps, "graph_bytes": nbytes, "seconds": statistics.median(times)})
    return rows


@contextlib.contextmanager
def without_profiler_log():
    """Drop the "USDT: ... profiler_start/stop" lines that the profiler's C++ side writes to fd 2."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            for line in capture.read().decode(errors="replace").splitlines():
                if not line.startswith("USDT:"):
                    print(line, file=sys.stderr)


def profiled_peak(step: Callable[[], list]) -> tuple[int, list]:
    """Run ``step`` under ``torch.profiler`` and return the peak of live tensor bytes it allocated.

    Tensors that existed before the call do not count; the result is the CPU analogue of
    ``torch.cuda.max_memory_allocated`` growth, unaffected by what the process did earlier.

    Returns:
        ``(peak_bytes, meta_gradient)``.
    """
    with without_profiler_log():
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU],
                                    profile_memory=True) as prof:
            grads = step()
    # Every allocation and free, in time order (the per-operator summary merges them away).
    try:
        raw = prof.profiler.kineto_results.events()
    except AttributeError as error:
        raise RuntimeError("this torch's profiler has no kineto_results; use --memory-method rss") from error
    events = sorted((e.start_ns(), e.nbytes()) for e in raw if e.name() == "[memory]")
    live = peak = 0
    for _, nbytes in events:
        live += nbytes
        peak = max(peak, live)
    return peak, grads
