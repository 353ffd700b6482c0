"""Seconds per second-order meta-gradient on the fast path, for two source trees side by side.

A change to the code every forward runs (a check, a hook) must not slow the fast path. This
script times the same meta-gradient with the ``mamlkit`` of each tree given, alternating the
trees round by round in fresh processes, so that a drift of the machine's speed hits both:

    git worktree add /tmp/before <commit>
    python benchmarks/source_trees_ab.py /tmp/before .

Two models: Conv4 (its own ``forward_tasks``) and a plain ``nn.Sequential`` convnet (vmap).
Four tasks of 5-way 1-shot with 5 queries per class, 5 inner steps, one thread; the median of
20 timed repetitions after 5 warm-up ones. Prints each tree's seconds and the ratio to the first.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

_MEASURE = r'''
import json, statistics, sys, time
sys.meta_path = [f for f in sys.meta_path if "editable" not in repr(f).lower()]  # this tree's mamlkit
sys.path.insert(0, sys.argv[1])
import torch
from torch import nn
from mamlkit.fast import meta_loss_batched
from mamlkit.functional import get_params
from mamlkit.losses import cross_entropy
from mamlkit.models import Conv4
from mamlkit.tasks import TaskBatch

torch.manual_seed(0)
torch.set_num_threads(1)
T, N, K, Q = 4, 5, 1, 5
tasks = TaskBatch(torch.randn(T, N * K, 1, 28, 28), torch.arange(N).repeat(T, K),
                  torch.randn(T, N * Q, 1, 28, 28), torch.arange(N).repeat(T, Q))
generic = nn.Sequential(nn.Conv2d(1, 16, 3, 2), nn.ReLU(), nn.Conv2d(16, 16, 3, 2), nn.ReLU(),
                        nn.Flatten(), nn.Linear(16 * 6 * 6, N))
result = {}
for name, model in (("conv4", Conv4(N)), ("generic", generic)):
    params, times = get_params(model), []
    for _ in range(25):
        start = time.perf_counter()
        loss, _ = meta_loss_batched(model, params, tasks, cross_entropy, 0.4, 5)
        torch.autograd.grad(loss, list(params.values()))
        times.append(time.perf_counter() - start)
    result[name] = statistics.median(times[5:])
print(json.dumps(result))
'''


def measure(tree: Path) -> dict[str, float]:
    """``{model: median seconds}`` for the ``mamlkit`` in ``tree``, in a fresh process."""
    if not (tree / "mamlkit/__init__.py").is_file():
        raise SystemExit(f"{tree} holds no mamlkit/ package; give the roots of two checkouts")
    done = subprocess.run([sys.executable, "-c", _MEASURE, str(tree.resolve())], capture_output=True,
                          text=True, check=True, env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("trees", nargs=2, type=Path, help="the two checkouts' roots, the baseline first")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds (default 2)")
    args = parser.parse_args(argv)
    runs = {tree: [] for tree in args.trees}
    for _ in range(args.rounds):
        for tree in args.trees:
            runs[tree].append(measure(tree))
    base = args.trees[0]
    for tree in args.trees:
        cells = []
        for name in runs[tree][0]:
            seconds = statistics.median(run[name] for run in runs[tree])
            ratio = seconds / statistics.median(run[name] for run in runs[base])
            cells.append(f"{name} {seconds:.4f} s (×{ratio:.3f})")
        print(f"{tree}: " + ", ".join(cells))


if __name__ == "__main__":
    main()
