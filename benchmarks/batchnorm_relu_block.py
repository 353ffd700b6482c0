"""Forward, backward and double backward of batch norm + ReLU: PyTorch's composition against
``mamlkit.models.batchnorm_relu``, side by side, on the activations of the fast path's first block.

The default shape is the first block of the 20-way benchmark setting with 8 tasks at a time:
20 images, 8 tasks × 64 channels, 14×14 pixels. The timed work is what second-order MAML asks of
the block: the output, the gradient with ``create_graph=True``, and the gradient of that.

Example::

    python benchmarks/batchnorm_relu_block.py --threads 1 --layout channels_first
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from bench import require_positive

from mamlkit.models.batchnorm_relu import batch_norm_relu


def pytorch_block(x, weight, bias):
    return torch.relu(F.batch_norm(x, None, None, weight, bias, training=True))


def second_order(block, x, weight, bias, v, u):
    """The block's output, its gradient with create_graph=True, and the gradient of that."""
    y = block(x, weight, bias)
    gx, gw, gb = torch.autograd.grad((y * v).sum(), (x, weight, bias), create_graph=True)
    return torch.autograd.grad((gx * u).sum() + gw.sum() + gb.sum(), (x, weight, bias))


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].replace("\n", " "))
    parser.add_argument("--shape", type=int, nargs=4, default=[20, 512, 14, 14], metavar=("N", "C", "H", "W"))
    parser.add_argument("--layout", choices=["channels_first", "channels_last"], default="channels_last",
                        help="memory layout of the activations (the fast path uses channels_last)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args(argv)
    require_positive(parser, args, "threads", "repeats")
    if min(args.shape) < 1:
        parser.error(f"--shape must be four positive sizes, got {args.shape}")
    if args.threads:
        torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(0)
    layout = torch.channels_last if args.layout == "channels_last" else torch.contiguous_format
    x0 = torch.randn(args.shape, generator=g).contiguous(memory_format=layout)
    v, u = torch.randn_like(x0), torch.randn_like(x0)
    channels = args.shape[1]
    times = {}
    for name, block in (("PyTorch", pytorch_block), ("mamlkit", batch_norm_relu)):
        x = x0.clone().requires_grad_()
        weight = (torch.rand(channels, generator=g) + 0.5).requires_grad_()
        bias = torch.randn(channels, generator=g).requires_grad_()

        second_order(block, x, weight, bias, v, u)  # warm-up
        runs = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            second_order(block, x, weight, bias, v, u)
            runs.append(time.perf_counter() - start)
        times[name] = statistics.median(runs)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; shape {tuple(args.shape)}, "
          f"{args.layout}; median of {args.repeats}")
    for name, seconds in times.items():
        print(f"{name}: {seconds * 1e3:.1f} ms")
    print(f"mamlkit's block: {times['PyTorch'] / times['mamlkit']:.2f}× faster")
    return 0


if __name__ == "__main__":
    sys.exit(main())
