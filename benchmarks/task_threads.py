"""Seconds per meta-step of the fast path with and without its task threads, side by side.

``outer_step`` hands groups of at most ``task_chunk_size`` tasks to as many threads as torch
has, each running torch with one thread (``task_threads``). This script times the three
settings of ``python -m mamlkit bench`` and the fast preset's meta-batch three ways, interleaved
in one process: one group at a time on torch's own threads (``task_threads=1``), groups in
threads (the default), and, for comparison, smaller groups in threads.

Example::

    python benchmarks/task_threads.py --rounds 5
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from typing import Optional, Sequence

import torch

from mamlkit.bench import SETTINGS, Setting, make_problem
from mamlkit.losses import cross_entropy
from mamlkit.outer_loop import outer_step

# The fast preset's training meta-batch (mamlkit/presets.py), second order.
PRESET = Setting("fast-preset", n_way=5, k_shot=1, n_query=5, meta_batch_size=8, inner_steps=1, inner_lr=0.4)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds after one warm-up (default: 5)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    if args.threads:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()
    print(f"torch {torch.__version__}, {threads} threads; median of {args.rounds} interleaved rounds\n")
    print("| setting | one group at a time (task_threads=1) | groups of 8 in threads | groups of 4 in threads |")
    print("|---|---|---|---|")
    for setting in [*SETTINGS.values(), PRESET]:
        problem = make_problem(setting)
        optimizer = torch.optim.SGD(list(problem.params.values()), lr=0.0)  # θ stays as it is
        ways = {"one at a time": (8, 1), "8 in threads": (8, None), "4 in threads": (4, None)}
        times = {name: [] for name in ways}
        for round_ in range(args.rounds + 1):
            for name, (chunk, task_threads) in ways.items():
                start = time.perf_counter()
                outer_step(problem.model, problem.params, problem.tasks, optimizer, cross_entropy,
                           setting.inner_lr, setting.inner_steps, task_chunk_size=chunk,
                           task_threads=task_threads)
                if round_:  # the first round warms up
                    times[name].append(time.perf_counter() - start)
        medians = {name: statistics.median(t) for name, t in times.items()}
        base = medians["one at a time"]
        print(f"| {setting.name} ({setting.meta_batch_size} tasks) | {base:.3f} s | "
              + " | ".join(f"{medians[n]:.3f} s ({base / medians[n]:.2f}×)" for n in ("8 in threads", "4 in threads"))
              + " |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
