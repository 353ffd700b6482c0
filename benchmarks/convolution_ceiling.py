"""How much faster the fast meta-step could be at most, with PyTorch's convolution kernels.

Every contender of ``python -m mamlkit bench`` computes the conv4's convolutions with the same
oneDNN kernels (``aten::mkldnn_convolution`` forward, ``aten::convolution_backward``). This
script times the benchmark's settings side by side, as ``python -m mamlkit bench`` does (the
fast step in groups of 8 tasks, the groups in threads), then profiles one step of each
contender and reports the share of its wall time spent inside those kernels.

If everything but the convolutions took no time at all, the fast step would take its
convolution seconds; the fastest other contender's time divided by those seconds is then the
largest speed-up within reach without faster convolution kernels (the ``ceiling`` column).

How close those kernels already run to the machine's peak: the convolutions' floating-point
operations are counted once on the per-task loop with ``torch.utils.flop_counter`` (its count
for a *grouped* convolution's backward is too high, so the loop's ordinary convolutions are
counted; every contender computes the same convolutions), divided by each contender's
convolution seconds, and set beside a 2048 × 2048 float32 matrix product on the same threads.

The profiler sees the calling thread only, so the fast step's share is measured on one
thread, one group at a time, and applied to its time with groups in threads: each thread runs
the same operations on its own group. The other contenders run on torch's own threads, which
the profiler's timings of each operator include; they are profiled as timed.

Example::

    python benchmarks/convolution_ceiling.py --threads 2 --rounds 3
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from typing import Optional, Sequence

import torch
from torch.utils.flop_counter import FlopCounterMode

from mamlkit.bench import (
    CONTENDERS,
    FAST,
    LOOP,
    SETTINGS,
    MetaStep,
    build_step,
    contender_available,
    make_problem,
    time_interleaved,
    without_profiler_log,
)

# The kernels themselves and the thin dispatch layers above them (a few microseconds a call).
CONVOLUTION_OPS = ("aten::mkldnn_convolution", "aten::convolution_backward", "aten::convolution",
                   "aten::_convolution", "aten::conv2d")


def convolution_share(step: MetaStep) -> float:
    """Fraction of one profiled run of ``step``'s wall time spent in :data:`CONVOLUTION_OPS`.

    Self times (time in an operator minus its child operators) are summed, so nothing counts
    twice. The profiler slows the step a little; the share is of the profiled wall time.
    """
    with without_profiler_log():
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            start = time.perf_counter()
            step()
            wall_us = (time.perf_counter() - start) * 1e6
    convolution_us = sum(event.self_cpu_time_total for event in prof.key_averages()
                         if event.key in CONVOLUTION_OPS)
    return convolution_us / wall_us


def convolution_flops(step: MetaStep) -> int:
    """Floating-point operations of ``step``'s convolutions (forward and backward), counted."""
    with FlopCounterMode(display=False) as counter:
        step()
    counts = counter.get_flop_counts()["Global"]
    return sum(n for op, n in counts.items() if "convolution" in str(op))


def matmul_gflops(size: int = 2048, repeats: int = 10) -> float:
    """Best-of-``repeats`` GFLOP/s of a ``size`` × ``size`` float32 matrix product."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    for _ in range(3):
        a @ b
    best = min(_timed(lambda: a @ b) for _ in range(repeats))
    return 2 * size ** 3 / best / 1e9


def _timed(function) -> float:
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds after one warm-up (default: 3)")
    parser.add_argument("--settings", nargs="+", choices=sorted(SETTINGS), default=list(SETTINGS),
                        help="benchmark settings to run (default: all three)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(),
                        help="torch.set_num_threads for the timing (default: torch's, here %(default)s)")
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error(f"--rounds must be at least 1, got {args.rounds}")
    if args.threads < 1:
        parser.error(f"--threads must be at least 1, got {args.threads}")
    torch.set_num_threads(args.threads)
    contenders = [name for name in CONTENDERS if contender_available(name)]
    print(f"torch {torch.__version__}, {args.threads} thread(s); median of {args.rounds} interleaved "
          f"rounds; contenders: {', '.join(contenders)}; a 2048² matrix product runs at "
          f"{matmul_gflops():.0f} GFLOP/s\n")
    print("| setting | contender | s per meta-step | in convolutions | convolution s | convolution GFLOP/s |")
    print("|---|---|---|---|---|---|")
    for name in args.settings:
        problem = make_problem(SETTINGS[name])
        steps = {c: build_step(problem, c, 8) if c == FAST else build_step(problem, c)
                 for c in contenders}
        reference = [g.clone() for g in steps[FAST]()]
        times, _ = time_interleaved(steps, reference, args.rounds, 1, torch.device("cpu"))
        medians = {c: statistics.median(t) for c, t in times.items()}
        flops = convolution_flops(build_step(problem, LOOP))
        convolution_seconds = {}
        for c, step in steps.items():
            if c == FAST:
                torch.set_num_threads(1)
                share = convolution_share(build_step(problem, FAST, 8, 1))
                torch.set_num_threads(args.threads)
            else:
                share = convolution_share(step)
            convolution_seconds[c] = share * medians[c]
            print(f"| {name} | {c} | {medians[c]:.3f} | {share:.0%} | {convolution_seconds[c]:.3f} | "
                  f"{flops / convolution_seconds[c] / 1e9:.0f} |")
        others = {c: t for c, t in medians.items() if c != FAST}
        if others:
            fastest = min(others, key=others.get)
            print(f"| {name} | **ratio {others[fastest] / medians[FAST]:.2f}×, ceiling "
                  f"{others[fastest] / convolution_seconds[FAST]:.2f}×** (fastest other: {fastest}; "
                  f"convolutions: {flops / 1e9:.1f} GFLOP) | | | | |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
