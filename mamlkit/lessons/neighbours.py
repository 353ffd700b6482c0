"""Notebook 05's helpers: published numbers, the cost of one meta-step, and the results table.

Used in ``notebooks/05_maml_neighbours.ipynb`` and in the table of methods of docs/results.md.
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path
from typing import Optional

import torch
from torch import nn

from mamlkit.functional import Params
from mamlkit.methods.base import MetaLearner
from mamlkit.tasks import TaskBatch

#: Omniglot 5-way 1-shot test accuracy (%) ± 95% CI as published (None: not reported).
PUBLISHED = {
    "maml": ("98.7 ± 0.4", "Finn et al. 2017, Table 1"),
    "fomaml": ("98.3 ± 0.5", "first-order MAML as tabled by Nichol et al. 2018"),
    "anil": ("–", "Raghu et al. 2020 report 20-way only (1-shot 96.2 ± 0.5)"),
    "metasgd": ("99.53 ± 0.26", "Li et al. 2017"),
    "protonet": ("98.8", "Snell et al. 2017"),
    "reptile": ("97.68 ± 0.04", "Nichol et al. 2018, Table 1, with transduction (95.39 ± 0.09 without)"),
}

#: The rows of the table: (key, label, asset stem).
ROWS = (
    ("maml", "MAML (second order)", "omniglot_5w1s_maml"),
    ("fomaml", "first-order MAML", "omniglot_5w1s_fomaml"),
    ("anil", "ANIL (head-only inner loop)", "omniglot_5w1s_anil"),
    ("metasgd", "Meta-SGD (per-element rates)", "omniglot_5w1s_metasgd"),
    ("protonet", "Prototypical Networks", "omniglot_5w1s_protonet"),
    ("reptile", "Reptile (5 SGD steps; 400 steps of 8 tasks)", "omniglot_5w1s_reptile"),
)

#: key -> (algorithm, first_order, inner steps) of each row, for the cost of one meta-step.
VARIANTS = {"maml": ("maml", False, 1), "fomaml": ("maml", True, 1), "anil": ("anil", False, 1),
            "metasgd": ("metasgd", False, 1), "protonet": ("protonet", False, 1),
            "reptile": ("reptile", True, 5)}


def meta_step_cost(method: MetaLearner, model: nn.Module, params: Params, tasks: TaskBatch,
                   repeats: int = 3, task_chunk_size: Optional[int] = 8,
                   implementation: str = "fast") -> dict:
    """Seconds per meta-step (median of ``repeats``) and peak memory of one, for ``method``.

    A meta-step here is the meta-loss and its gradient with respect to θ and the method's
    learned tensors, ``task_chunk_size`` tasks at a time, as in training (no optimiser step,
    so θ stays as it is). Peak memory is the largest total of live tensor bytes allocated
    during one step (``torch.profiler``; see :func:`mamlkit.lessons.memory_cost.profiled_peak`).

    Returns:
        ``{"seconds": float, "peak_bytes": int, "repeats": int}``.
    """
    from mamlkit.lessons.memory_cost import profiled_peak

    wrt = list(params.values()) + list(method.trainable().values())
    chunk = tasks.num_tasks if task_chunk_size is None else task_chunk_size

    def step():
        grads = [torch.zeros_like(t) for t in wrt]
        for start in range(0, tasks.num_tasks, chunk):
            part = TaskBatch(*(t[start:start + chunk] for t in tasks))
            loss, _ = method.meta_loss(model, params, part, implementation)
            parts = torch.autograd.grad(loss * part.num_tasks / tasks.num_tasks, wrt, allow_unused=True)
            grads = [g + p if p is not None else g for g, p in zip(grads, parts)]
        return grads

    step()  # warm-up: first calls allocate caches
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        seconds.append(time.perf_counter() - start)
    peak, _ = profiled_peak(step)
    return {"seconds": statistics.median(seconds), "peak_bytes": int(peak), "repeats": repeats}


def load_results(path: str | Path) -> dict:
    """The measured results file (``assets/neighbours_5w1s_results.json``)."""
    return json.loads(Path(path).read_text())


def _pm(mean: float, ci: float) -> str:
    return f"{100 * mean:.1f} ± {100 * ci:.1f}"


def results_table(results: dict) -> str:
    """A Markdown table: accuracy under both protocols and query sizes, cost, published number.

    Args:
        results: ``{"methods": {key: {"label", "steps", "accuracy": {"q1_transductive":
            [mean, ci95], ...}, "seconds_per_step", "peak_mib"}}}`` as written by the
            measurement script the results file names.
    """
    lines = [
        "| method | meta-steps | transductive, 1 query/class | transductive, 15 | support-stats, 1 | "
        "support-stats, 15 | s / meta-step | peak MiB | published |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for key, row in results["methods"].items():
        acc = row["accuracy"]
        cells = [_pm(*acc[k]) if k in acc else "–" for k in
                 ("q1_transductive", "q15_transductive", "q1_support-stats", "q15_support-stats")]
        seconds = f"{row['seconds_per_step']:.2f}" if row.get("seconds_per_step") is not None else "–"
        peak = f"{row['peak_mib']:.0f}" if row.get("peak_mib") is not None else "–"
        published = PUBLISHED.get(row.get("published_key", key), ("–", ""))[0]
        lines.append(f"| {row['label']} | {row['steps']:,} | " + " | ".join(cells)
                     + f" | {seconds} | {peak} | {published} |")
    return "\n".join(lines)
