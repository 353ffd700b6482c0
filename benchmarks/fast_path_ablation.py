"""What each hand-written derivative of the fast path buys: the benchmark's meta-step with the
convolution, the batch norm, or both, switched back to PyTorch's own, side by side.

``Conv4.forward_tasks`` computes its blocks with :func:`mamlkit.models.grouped_conv.grouped_conv2d`
and :func:`mamlkit.models.batchnorm_relu.batch_norm_relu`. This script swaps either for PyTorch's
``F.conv2d`` / ``relu(F.batch_norm(...))`` (same numbers, PyTorch's second derivatives) and times
the second-order meta-step of ``python -m mamlkit bench``'s settings, all variants interleaved
in one process (the benchmark's own ``time_interleaved``), one group of 8 tasks at a time.

Example::

    python benchmarks/fast_path_ablation.py --threads 1 --rounds 3
"""

from __future__ import annotations

import argparse
import statistics
import sys
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from bench import FAST, SETTINGS, MetaStep, build_step, make_problem, require_positive, time_interleaved

import mamlkit.models
from mamlkit.models.batchnorm_relu import batch_norm_relu
from mamlkit.models.grouped_conv import grouped_conv2d


def pytorch_conv(x, weight, groups, stride=1, padding=0):
    return F.conv2d(x, weight, stride=stride, padding=padding, groups=groups)


def pytorch_batch_norm_relu(x, weight, bias):
    return torch.relu(F.batch_norm(x, None, None, weight, bias, training=True))


VARIANTS = {
    "as shipped": (grouped_conv2d, batch_norm_relu),
    "PyTorch's convolution": (pytorch_conv, batch_norm_relu),
    "PyTorch's batch norm": (grouped_conv2d, pytorch_batch_norm_relu),
    "PyTorch's both": (pytorch_conv, pytorch_batch_norm_relu),
}


def with_blocks(step: MetaStep, conv, block) -> MetaStep:
    """``step`` run with ``Conv4.forward_tasks`` computing its blocks by ``conv`` and ``block``."""
    def run() -> None:
        mamlkit.models.grouped_conv2d, mamlkit.models.batch_norm_relu = conv, block
        step.run()
    return MetaStep(run, step.leaves)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].replace("\n", " "))
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds after one warm-up (default: 3)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    args = parser.parse_args(argv)
    require_positive(parser, args, "rounds", "threads")
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; median of {args.rounds} "
          "interleaved rounds; seconds per meta-step (× slower than as shipped)\n")
    print("| setting | " + " | ".join(VARIANTS) + " | largest float32 gradient difference |")
    print("|---" * (len(VARIANTS) + 2) + "|")
    try:
        for setting in SETTINGS.values():
            base = build_step(make_problem(setting), FAST, 8, 1)
            steps = {name: with_blocks(base, conv, block) for name, (conv, block) in VARIANTS.items()}
            reference = [g.clone() for g in steps["as shipped"]()]
            times, errors = time_interleaved(steps, reference, args.rounds, 1, torch.device("cpu"))
            medians = {name: statistics.median(t) for name, t in times.items()}
            shipped = medians["as shipped"]
            print(f"| {setting.name} | " + " | ".join(
                f"{m:.3f} s" + ("" if name == "as shipped" else f" ({m / shipped:.2f}×)")
                for name, m in medians.items()) + f" | {max(errors.values()):.1e} |", flush=True)
    finally:
        mamlkit.models.grouped_conv2d, mamlkit.models.batch_norm_relu = grouped_conv2d, batch_norm_relu
    return 0


if __name__ == "__main__":
    sys.exit(main())
