"""Seconds per meta-step of the fast path with and without its task threads, side by side.

``outer_step`` hands groups of at most ``task_chunk_size`` tasks to as many threads as torch
has, each running torch with one thread (``task_threads``). This script times the three
settings of ``python -m mamlkit bench`` and the fast preset's meta-batch three ways, interleaved
in one process (the benchmark's own ``time_interleaved``): one group at a time on torch's own
threads (``task_threads=1``), groups in threads (the default), and, for comparison, smaller
groups in threads. All three compute the same meta-gradient, up to float32 rounding, which
depends on how the work is split into threads; the largest difference is shown.

Example::

    python benchmarks/task_threads.py --rounds 5
"""

from __future__ import annotations

import argparse
import statistics
import sys
from typing import Optional, Sequence

import torch
from bench import FAST, SETTINGS, Setting, build_step, make_problem, require_positive, time_interleaved

# The fast preset's training meta-batch (mamlkit/run/presets.py), second order.
PRESET = Setting("fast-preset", n_way=5, k_shot=1, n_query=5, meta_batch_size=8, inner_steps=1, inner_lr=0.4)
# name: (task_chunk_size, task_threads); None threads = outer_step's default, torch's count.
WAYS = {"one at a time": (8, 1), "8 in threads": (8, None), "4 in threads": (4, None)}


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds after one warm-up (default: 5)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    args = parser.parse_args(argv)
    require_positive(parser, args, "rounds", "threads")
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; median of {args.rounds} "
          "interleaved rounds\n")
    print("| setting | one group at a time (task_threads=1) | groups of 8 in threads | groups of 4 in threads "
          "| largest float32 gradient difference |")
    print("|---|---|---|---|---|")
    for setting in [*SETTINGS.values(), PRESET]:
        problem = make_problem(setting)
        steps = {name: build_step(problem, FAST, chunk, threads) for name, (chunk, threads) in WAYS.items()}
        reference = [g.clone() for g in steps["one at a time"]()]
        times, errors = time_interleaved(steps, reference, args.rounds, 1, torch.device("cpu"))
        medians = {name: statistics.median(t) for name, t in times.items()}
        base = medians["one at a time"]
        print(f"| {setting.name} ({setting.meta_batch_size} tasks) | {base:.3f} s | "
              + " | ".join(f"{medians[n]:.3f} s ({base / medians[n]:.2f}×)" for n in ("8 in threads", "4 in threads"))
              + f" | {max(errors.values()):.1e} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
