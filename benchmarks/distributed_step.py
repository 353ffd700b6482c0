"""Time the training meta-step with one process or several (torchrun), side by side.

The meta-step is the one ``python -m mamlkit train`` takes (``Trainer.step``: sample, adapt,
meta-gradient, all-reduce, Adam), with the paper's 5-way 1-shot settings by default (conv4 with
64 filters, 28×28 images, 32 tasks, 1 query per class, 1 inner step, second order). The images
are random: a step costs the same on random pixels as on Omniglot, and no data is needed.

Compare 1 process × 1 thread, 1 process × 2 threads and 2 processes × 1 thread (each layout in
turn, ``--rounds`` times, so that a change in the machine's load hits all alike)::

    python benchmarks/distributed_step.py --compare "1x1,1x2,2x1" --steps 20 --rounds 3

One layout by hand (what ``--compare`` runs for "2x1")::

    OMP_NUM_THREADS=1 torchrun --standalone --nproc_per_node 2 benchmarks/distributed_step.py --steps 20

With GPUs, one per process: ``torchrun --standalone --nproc_per_node 2 benchmarks/distributed_step.py --device cuda``.
Rank 0 prints one JSON line: the median, min and max seconds per meta-step after ``--warmup``
steps.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import torch


class RandomImageTasks:
    """``sample(T, generator)``: ``T`` tasks of random ``size``×``size`` images, labels in blocks."""

    def __init__(self, n_way: int, k_shot: int, n_query: int, size: int = 28):
        self.n_way, self.k_shot, self.n_query, self.size = n_way, k_shot, n_query, size

    def sample(self, meta_batch_size: int, generator: torch.Generator):
        from mamlkit.tasks import TaskBatch

        T, N, K, Q, S = meta_batch_size, self.n_way, self.k_shot, self.n_query, self.size
        labels = torch.arange(N)
        return TaskBatch(torch.rand(T, N * K, 1, S, S, generator=generator),
                         labels.repeat_interleave(K).expand(T, N * K).clone(),
                         torch.rand(T, N * Q, 1, S, S, generator=generator),
                         labels.repeat_interleave(Q).expand(T, N * Q).clone())


def time_steps(args: argparse.Namespace) -> dict:
    """Seconds per ``Trainer.step`` on this process (rank 0's clock when under torchrun)."""
    import tempfile

    from mamlkit.run import distributed
    from mamlkit.run.config import TrainConfig
    from mamlkit.run.train import Trainer

    distributed.init_from_env(args.device)
    try:
        config = TrainConfig(n_way=args.n_way, k_shot=args.k_shot, n_query=args.n_query,
                             meta_batch_size=args.meta_batch_size, inner_steps=args.inner_steps,
                             device=args.device, iterations=args.warmup + args.steps)
        tasks = RandomImageTasks(args.n_way, args.k_shot, args.n_query)
        with tempfile.TemporaryDirectory() as run_dir:
            trainer = Trainer(config, run_dir, {"train": tasks, "val": tasks})
            seconds = []
            for i in range(args.warmup + args.steps):
                start = time.perf_counter()
                trainer.step()
                if args.device == "cuda":
                    torch.cuda.synchronize()
                if i >= args.warmup:
                    seconds.append(time.perf_counter() - start)
        return {"processes": distributed.world_size(), "threads_per_process": torch.get_num_threads(),
                "device": args.device, "meta_batch_size": args.meta_batch_size, "steps": args.steps,
                "median_s": round(statistics.median(seconds), 4),
                "min_s": round(min(seconds), 4), "max_s": round(max(seconds), 4)}
    finally:
        distributed.shutdown()


def compare(args: argparse.Namespace) -> list[dict]:
    """Run each ``PxT`` layout (P processes × T threads) in turn, ``--rounds`` times."""
    layouts = [tuple(int(n) for n in item.split("x")) for item in args.compare.split(",")]
    passed = [f"--{k.replace('_', '-')}={v}" for k, v in vars(args).items()
              if k not in ("compare", "rounds") and v is not None]
    results = []
    for round_ in range(args.rounds):
        for processes, threads in layouts:
            env = dict(os.environ, OMP_NUM_THREADS=str(threads))
            launcher = ([sys.executable] if processes == 1 else
                        [sys.executable, "-m", "torch.distributed.run", "--standalone",
                         f"--nproc_per_node={processes}"])
            run = subprocess.run(launcher + [__file__] + passed, env=env, capture_output=True, text=True,
                                 check=False)
            if run.returncode != 0:
                sys.exit(f"{processes}x{threads} failed:\n{run.stderr}")
            result = json.loads(run.stdout.strip().splitlines()[-1])
            result["round"] = round_ + 1
            print(json.dumps(result), flush=True)
            results.append(result)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--compare", help='layouts "PxT,..." (P processes × T threads) to run in turn')
    parser.add_argument("--rounds", type=int, default=3, help="with --compare: times to run each layout")
    parser.add_argument("--steps", type=int, default=20, help="timed meta-steps")
    parser.add_argument("--warmup", type=int, default=3, help="untimed meta-steps first")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--n-way", type=int, default=5)
    parser.add_argument("--k-shot", type=int, default=1)
    parser.add_argument("--n-query", type=int, default=1)
    parser.add_argument("--meta-batch-size", type=int, default=32)
    parser.add_argument("--inner-steps", type=int, default=1)
    args = parser.parse_args()
    if args.compare:
        compare(args)
        return
    result = time_steps(args)
    if int(os.environ.get("RANK", "0")) == 0:
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
