"""Seconds per meta-step of the training presets, measured side by side on real Omniglot tasks.

Time to accuracy is steps × seconds per step. Steps to accuracy come from training runs; their
seconds are only comparable on a quiet machine. This script times the steps of every preset
in one process, interleaved (a few steps of one preset, then of the next, and so on), so the
*ratio* of their costs holds even while other work shares the cores.

Example::

    python benchmarks/preset_step_time.py --threads 2 --rounds 10 --steps 5
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from typing import Optional, Sequence

import torch
from bench import require_positive

from mamlkit.run.config import omniglot_task_samplers
from mamlkit.run.presets import PRESETS, preset_config
from mamlkit.run.train import Trainer


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", choices=sorted(PRESETS), default=["paper", "fast"])
    parser.add_argument("--rounds", type=int, default=10, help="rounds of interleaving (default: 10)")
    parser.add_argument("--steps", type=int, default=5, help="steps per preset per round (default: 5)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    args = parser.parse_args(argv)
    require_positive(parser, args, "rounds", "steps", "threads")
    if args.threads:
        torch.set_num_threads(args.threads)
    configs = {name: preset_config(name) for name in args.presets}
    # Each preset's own samplers: the fast preset trains with 5 query images per class.
    samplers = {name: omniglot_task_samplers(c) for name, c in configs.items()}
    with tempfile.TemporaryDirectory(prefix="mamlkit-presets-") as folder:
        trainers = {}
        for name, c in configs.items():
            trainers[name] = Trainer(c, f"{folder}/{name}", samplers[name])
            if 0 < c.first_order_steps < c.iterations:
                # A preset with first-order warm-up steps: time its second-order phase too.
                later = Trainer(c, f"{folder}/{name}-late", samplers[name])
                later.iteration = c.first_order_steps
                trainers[f"{name}, after step {c.first_order_steps}"] = later
        started = {name: trainer.iteration for name, trainer in trainers.items()}
        for trainer in trainers.values():  # warm-up, untimed
            trainer.step()
        per_step = {name: [] for name in trainers}
        for _ in range(args.rounds):
            for name, trainer in trainers.items():
                start = time.perf_counter()
                for _ in range(args.steps):
                    trainer.step()
                per_step[name].append((time.perf_counter() - start) / args.steps)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; "
          f"median of {args.rounds} rounds of {args.steps} steps")
    medians = {name: statistics.median(times) for name, times in per_step.items()}
    base = medians[args.presets[0]]
    for name, times in per_step.items():
        trainer = trainers[name]
        c = trainer.config
        first = c.first_order or started[name] + args.rounds * args.steps < c.first_order_steps
        order = "first" if first else "second"
        print(f"{name}: {medians[name]:.3f} s per meta-step ({c.meta_batch_size} tasks, {order} order), "
              f"{medians[name] / base:.2f}× {args.presets[0]}'s; all rounds: "
              + " ".join(f"{t:.3f}" for t in times))
    print("\nwhole runs at these rates (training seconds, validation not included):")
    for name, c in configs.items():
        late = medians.get(f"{name}, after step {c.first_order_steps}", medians[name])
        warm = min(c.first_order_steps, c.iterations)
        total = warm * medians[name] + (c.iterations - warm) * late
        print(f"{name}: {c.iterations} steps, {total:.0f} s ({total / (c.iterations * base):.2f}× "
              f"the time of as many {args.presets[0]} steps)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
