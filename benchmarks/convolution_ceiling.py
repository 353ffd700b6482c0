"""How much faster the fast meta-step could be at most, with PyTorch's convolution kernels.

Every contender of ``python -m mamlkit bench`` computes the conv4's convolutions with the same
oneDNN kernels. This script times the benchmark's settings side by side, as the benchmark
does (the course's step in groups of 8 tasks, the groups in threads; the others on torch's own
threads), then profiles each step and measures the seconds it spends in convolutions: the
outermost convolution operators (``aten::conv2d``, ``aten::convolution``,
``aten::convolution_backward``, ...) with everything they call, layout copies included.

If everything but the convolutions took no time at all, the course's step would take its
convolution seconds; the fastest other contender's time divided by those seconds is then the
largest speed-up within reach without faster convolution kernels (the ``ceiling``).

The profiler sees the calling thread only. The other contenders run on torch's own threads,
whose work falls inside each operator's time, so they are profiled as timed. The course's
step runs its groups in worker threads that the profiler does not see, so its convolution
seconds are measured on one thread, one group at a time, and divided by the number of
threads (marked ``*``): the convolutions split perfectly over every thread, the best case for
any scheduling, so the ceiling stays an upper bound.

How close the kernels already run to the machine's peak: each step's convolution
floating-point operations are counted with ``torch.utils.flop_counter`` (the course's step
with one task per group, i.e. ordinary convolutions, because the counter over-counts the
weight gradient of a *grouped* convolution), divided by its convolution seconds, and set
beside a 2048 × 2048 float32 matrix product on the same threads (for the course's step, that
rate assumes the perfect split above; run ``--threads 1`` for rates measured as they are).

Gradients are not checked here: ``python -m mamlkit bench`` checks every contender's.

Example::

    python benchmarks/convolution_ceiling.py --threads 2 --rounds 5
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from typing import Callable, Optional, Sequence

import torch
from bench import (
    CONTENDERS,
    FAST,
    SETTINGS,
    TRAINING_CHUNK,
    MetaStep,
    build_step,
    contender_available,
    make_problem,
    require_positive,
    time_interleaved,
    without_profiler_log,
)
from torch.utils.flop_counter import FlopCounterMode

WARMUP = 2  # as python -m mamlkit bench

# Convolution operators at every level of PyTorch's dispatch: the outermost one on a call
# stack is counted with everything below it, so a convolution counts once, whichever it is.
CONVOLUTION_OPS = frozenset({"aten::conv2d", "aten::convolution", "aten::_convolution",
                             "aten::mkldnn_convolution", "aten::convolution_backward",
                             "aten::_convolution_double_backward"})


def convolution_seconds(step: MetaStep, rounds: int) -> float:
    """Median over ``rounds`` profiled runs of the seconds ``step`` spends in convolutions.

    Sums the total time of each outermost :data:`CONVOLUTION_OPS` event, children (layout
    copies, the kernels) included; events on other threads than the caller's are not seen.
    """
    seconds = []
    for _ in range(rounds):
        with without_profiler_log():
            with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
                step()
        total_us = 0.0
        for event in prof.events():
            if event.name not in CONVOLUTION_OPS:
                continue
            parent = event.cpu_parent
            while parent is not None and parent.name not in CONVOLUTION_OPS:
                parent = parent.cpu_parent
            if parent is None:
                total_us += event.cpu_time_total
        seconds.append(total_us / 1e6)
    return statistics.median(seconds)


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


def _timed(function: Callable[[], object]) -> float:
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def _on_threads(threads: int, function: Callable[..., float], *args) -> float:
    """``function(*args)`` with torch on ``threads`` threads, the previous count restored after."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return function(*args)
    finally:
        torch.set_num_threads(before)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3,
                        help=f"timed rounds after {WARMUP} warm-ups, and profiled rounds (default: 3)")
    parser.add_argument("--settings", nargs="+", choices=sorted(SETTINGS), default=list(SETTINGS),
                        help="benchmark settings to run (default: all three)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(),
                        help="torch.set_num_threads for the timing (default: torch's, here %(default)s)")
    args = parser.parse_args(argv)
    require_positive(parser, args, "rounds", "threads")
    settings = list(dict.fromkeys(args.settings))
    torch.set_num_threads(args.threads)
    contenders = [name for name in CONTENDERS if contender_available(name)]
    print(f"torch {torch.__version__}, {args.threads} thread(s); median of {args.rounds} interleaved "
          f"rounds; contenders: {', '.join(contenders)}; a 2048² float32 matrix product runs at "
          f"{matmul_gflops():.0f} GFLOP/s\n")
    print("| setting | contender | s per meta-step | convolution s | share | convolution GFLOP | GFLOP/s |")
    print("|---|---|---|---|---|---|---|")
    summaries = []
    for name in settings:
        problem = make_problem(SETTINGS[name])
        steps = {c: build_step(problem, c, TRAINING_CHUNK) if c == FAST else build_step(problem, c)
                 for c in contenders}
        reference = [g.clone() for g in steps[FAST]()]
        times, _ = time_interleaved(steps, reference, args.rounds, WARMUP, torch.device("cpu"))
        medians = {c: statistics.median(t) for c, t in times.items()}
        conv_seconds, flops = {}, {}
        for c, step in steps.items():
            if c == FAST:
                one_group_at_a_time = build_step(problem, FAST, TRAINING_CHUNK, 1)
                conv_seconds[c] = _on_threads(1, convolution_seconds, one_group_at_a_time,
                                              args.rounds) / args.threads
                flops[c] = convolution_flops(build_step(problem, FAST, 1, 1))
            else:
                conv_seconds[c] = convolution_seconds(step, args.rounds)
                flops[c] = convolution_flops(step)
            mark = "*" if c == FAST and args.threads > 1 else ""
            print(f"| {name} | {c} | {medians[c]:.3f} | {conv_seconds[c]:.3f}{mark} | "
                  f"{conv_seconds[c] / medians[c]:.0%} | {flops[c] / 1e9:.1f} | "
                  f"{flops[c] / conv_seconds[c] / 1e9:.0f} |", flush=True)
        others = {c: t for c, t in medians.items() if c != FAST}
        if others:
            fastest = min(others, key=others.get)
            summaries.append(f"{name}: ratio {others[fastest] / medians[FAST]:.2f}×, ceiling "
                             f"{others[fastest] / conv_seconds[FAST]:.2f}× (fastest other: {fastest}, "
                             f"{others[fastest]:.3f} s)")
    if args.threads > 1:
        print(f"\n* measured on one thread, one group of tasks at a time, divided by {args.threads} "
              "threads (a perfect split)")
    print("\nmamlkit-fast against the fastest other contender, and at most with these convolutions:")
    for line in summaries:
        print(f"  {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
