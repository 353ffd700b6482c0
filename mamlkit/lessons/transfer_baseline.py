r"""The transfer baseline for few-shot classification: pretrain a classifier, fit a new head.

Chen et al. (2019, "A Closer Look at Few-shot Classification", §3.1, "Baseline") ask what
meta-learning buys over plain transfer learning. Their baseline has two stages:

1. **Pretraining.** Train the network as an ordinary classifier over *all* training classes at
   once, with the cross-entropy, on mini-batches of images.
2. **Fine-tuning.** For each new task, keep the feature extractor fixed, put a fresh linear
   head with ``n_way`` outputs on top of it, and train that head alone on the task's support
   set; then classify the query set.

Here the network is :class:`mamlkit.models.Conv4` (the same blocks as MAML's), and every
training character in each of its four rotations is a class of its own (4 × 1100 = 4400
classes for the MAML split), so that the rotated characters of the test tasks are the kind of
class the features were trained to tell apart. By default, as in MAML's evaluation, batch norm
uses the statistics of the batch at hand: a task's support images are normalised together, and
so are its query images. Pretraining normalised 128-image batches, however, so
:func:`batch_norm_statistics` gives the population statistics of the training images (what
running averages estimate) for :func:`features` to normalise with instead, as a standard
classifier is evaluated.

Used in ``notebooks/04_omniglot_maml.ipynb``; ``python -m mamlkit.lessons.transfer_baseline`` trains
the backbone shipped in ``assets/`` (see :func:`main`).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Callable, Optional, Sequence

import torch
import torch.nn.functional as F

from mamlkit.evaluate import mean_confidence_interval
from mamlkit.functional import Params, forward, get_params
from mamlkit.models import Conv4

# Features and heads on one intra-op thread: a task is a handful of 28×28 images and a head a
# few hundred numbers, so splitting them over threads costs more than it saves, and beside other
# jobs far more (the course's shared 2-core CPU under load, 50 tasks: their features 8.6 s with
# two threads, 0.4 s with one; 100 Adam steps of their heads 4.1 s and 0.2 s). Same numbers
# (a test checks the heads).
from mamlkit.run.publish import one_thread as _one_thread
from mamlkit.tasks import TaskBatch

__all__ = ["batch_norm_statistics", "features", "fine_tune_heads", "head_accuracy", "load_backbone", "pretrain_classifier", "rotated_classes",
           "evaluate_transfer", "main"]


def rotated_classes(images: torch.Tensor, character_indices: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Every drawing of the given characters in all four rotations, each rotation a class.

    Args:
        images: ``(C, D, H, W)`` uint8 (e.g. ``OmniglotData.images``).
        character_indices: the characters to use (e.g. the ``"train"`` split).

    Returns:
        ``(x, y)``: ``x`` ``(4·n·D, 1, H, W)`` float32 in [0, 1]; ``y`` ``(4·n·D,)`` int64, the
        class of character ``i`` (its position in ``character_indices``) rotated by ``r·90°``
        being ``4·i + r``, the rotation ``torch.rot90(image, r, dims=(-2, -1))``.
    """
    if images.dtype != torch.uint8 or images.ndim != 4:
        raise ValueError(f"images must be uint8 (characters, drawings, H, W), got {images.dtype} {tuple(images.shape)}")
    if len(character_indices) == 0:
        raise ValueError("character_indices is empty; give at least one character")
    chosen = images[torch.as_tensor(list(character_indices), dtype=torch.int64)]  # (n, D, H, W)
    n, d = chosen.shape[:2]
    rotated = torch.stack([torch.rot90(chosen, r, dims=(-2, -1)) for r in range(4)], dim=1)  # (n, 4, D, H, W)
    x = rotated.reshape(n * 4 * d, 1, *chosen.shape[2:]).float() / 255
    y = torch.arange(n * 4).repeat_interleave(d)
    return x, y


def pretrain_classifier(
    x: torch.Tensor,
    y: torch.Tensor,
    epochs: int,
    batch_size: int = 128,
    lr: float = 1e-3,
    channels: int = 64,
    seed: int = 0,
    progress: bool = False,
    on_epoch: Optional[Callable[[int, Conv4, list[float]], None]] = None,
) -> tuple[Conv4, Params, list[float]]:
    """Stage 1: train a :class:`Conv4` over all classes at once (Adam, cross-entropy).

    Args:
        x: ``(M, 1, H, W)`` images; y: ``(M,)`` int64 labels in ``0..num_classes-1``.
        epochs: passes over the data, each in a new random order.
        batch_size: images per Adam step; batch norm normalises each batch with its own statistics.
        lr: Adam's learning rate.
        channels: filters per convolution (64 in the MAML paper).
        seed: initialisation and the order of the images.
        on_epoch: called as ``on_epoch(epoch, model, losses)`` after each epoch (1, 2, ...); it
            draws nothing at random, so the first ``k`` epochs of a longer run are exactly a
            ``k``-epoch run.

    Returns:
        ``(model, params, losses)``: the trained network (its head has one output per class),
        its parameters as ``{name: tensor}`` (detached), and the training loss of every step.
    """
    if x.ndim != 4 or y.shape != x.shape[:1] or y.dtype != torch.int64:
        raise ValueError(f"x must be (M, 1, H, W) and y (M,) int64, got {tuple(x.shape)} and {tuple(y.shape)} {y.dtype}")
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be a positive integer, got {epochs!r}")
    num_classes = int(y.max()) + 1
    generator = torch.Generator().manual_seed(seed)
    model = Conv4(num_classes, channels=channels, in_channels=x.shape[1], generator=generator)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    losses = []
    from tqdm.auto import tqdm

    for epoch in range(1, epochs + 1):
        order = torch.randperm(len(x), generator=generator)
        for start in tqdm(range(0, len(x), batch_size), disable=not progress, desc="pretrain", unit="batch"):
            batch = order[start:start + batch_size]
            if len(batch) < 2:  # batch norm needs two images for a variance
                continue
            loss = F.cross_entropy(model(x[batch]), y[batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        if on_epoch is not None:
            on_epoch(epoch, model, losses)
    return model, {n: p.detach() for n, p in get_params(model).items()}, losses


def _block_forward(params: Params, block: int, h: torch.Tensor,
                   statistics: Optional[dict[int, tuple[torch.Tensor, torch.Tensor]]]) -> torch.Tensor:
    """One ``ConvBlock``: convolution, batch norm (the batch's or the given statistics), ReLU."""
    prefix = f"blocks.{block}."
    h = F.conv2d(h, params[prefix + "conv.weight"], stride=2, padding=1)
    mean, var = statistics[block] if statistics is not None else (None, None)
    h = F.batch_norm(h, mean, var, params[prefix + "norm.weight"], params[prefix + "norm.bias"],
                     training=statistics is None, eps=1e-5)
    return torch.relu(h)


def _num_blocks(params: Params) -> int:
    return sum(1 for n in params if n.startswith("blocks.") and n.endswith(".conv.weight"))


def batch_norm_statistics(params: Params, x: torch.Tensor,
                          batch_size: int = 500) -> dict[int, tuple[torch.Tensor, torch.Tensor]]:
    """The population statistics of every batch-norm layer over the images ``x``.

    What ``nn.BatchNorm2d``'s running averages estimate during pretraining, computed exactly
    for the final weights: block by block, the per-channel mean and (biased) variance of the
    convolution's output over all of ``x``, the earlier blocks normalised with the statistics
    already found. With them, :func:`features` normalises a task's images the way pretraining's
    128-image batches were normalised, instead of with the statistics of the task's few images.

    Args:
        params: the backbone's ``blocks.*`` tensors; x: ``(M, 1, H, W)`` training images.

    Returns:
        ``{block: (mean, var)}``, each ``(channels,)``.
    """
    statistics: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
    with torch.no_grad():
        for block in range(_num_blocks(params)):
            total = total_sq = None
            count = 0
            for start in range(0, len(x), batch_size):
                h = x[start:start + batch_size]
                for earlier in range(block):
                    h = _block_forward(params, earlier, h, statistics)
                h = F.conv2d(h, params[f"blocks.{block}.conv.weight"], stride=2, padding=1).double()
                s, sq = h.sum(dim=(0, 2, 3)), (h * h).sum(dim=(0, 2, 3))
                total, total_sq = (s, sq) if total is None else (total + s, total_sq + sq)
                count += h.numel() // h.shape[1]
            mean = total / count
            statistics[block] = (mean.float(), (total_sq / count - mean * mean).clamp_min(0).float())
    return statistics


def features(model: Conv4, params: Params, x: torch.Tensor,
             statistics: Optional[dict[int, tuple[torch.Tensor, torch.Tensor]]] = None) -> torch.Tensor:
    """The backbone's features: the blocks, then the mean over space, without the head.

    Args:
        x: ``(T, S, 1, H, W)``: by default each task's ``S`` images form one batch for batch norm.
        statistics: from :func:`batch_norm_statistics`: normalise with these instead (each
            image then gets the same features whatever the other images of its task).

    Returns:
        ``(T, S, channels)``.
    """
    if statistics is None:
        blocks = {n[len("blocks."):]: p for n, p in params.items() if n.startswith("blocks.")}
        with torch.no_grad(), _one_thread():
            h = torch.stack([forward(model.blocks, blocks, task) for task in x])  # (T, S, C, h, w)
        return h.mean(dim=(-2, -1))
    with torch.no_grad(), _one_thread():
        h = x.flatten(0, 1)
        for block in range(_num_blocks(params)):
            h = _block_forward(params, block, h, statistics)
    return h.mean(dim=(-2, -1)).view(*x.shape[:2], -1)


def fine_tune_heads(
    support_features: torch.Tensor,
    y_support: torch.Tensor,
    n_way: int,
    steps: int = 100,
    lr: float = 0.01,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Stage 2: a new linear head per task, trained on that task's support features alone.

    Every task's head starts at zero and takes ``steps`` full-batch Adam steps on the mean
    cross-entropy of its support set. The tasks share nothing: Adam's updates are elementwise,
    so training them together gives each the head it would get alone (a test checks this).

    Args:
        support_features: ``(T, S, C)``; y_support: ``(T, S)`` int64 in ``0..n_way-1``.
        steps, lr: Adam steps and learning rate (Chen et al. train 100 iterations).

    Returns:
        ``(weight, bias)``: ``(T, n_way, C)`` and ``(T, n_way)``.
    """
    if support_features.ndim != 3 or y_support.shape != support_features.shape[:2]:
        raise ValueError(f"support_features must be (T, S, C) and y_support (T, S), got "
                         f"{tuple(support_features.shape)} and {tuple(y_support.shape)}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise ValueError(f"steps must be a non-negative integer, got {steps!r}")
    num_tasks, _, num_features = support_features.shape
    weight = torch.zeros(num_tasks, n_way, num_features, dtype=support_features.dtype, requires_grad=True)
    bias = torch.zeros(num_tasks, n_way, dtype=support_features.dtype, requires_grad=True)
    optimizer = torch.optim.Adam([weight, bias], lr=lr)
    with torch.enable_grad(), _one_thread():
        for _ in range(steps):
            logits = torch.einsum("tsc,tnc->tsn", support_features, weight) + bias.unsqueeze(1)
            # Sum over tasks of each task's mean loss: each head gets its own task's gradient.
            loss = F.cross_entropy(logits.flatten(0, 1), y_support.flatten(), reduction="none")
            loss = loss.view(num_tasks, -1).mean(dim=1).sum()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    return weight.detach(), bias.detach()


def head_accuracy(query_features: torch.Tensor, y_query: torch.Tensor, weight: torch.Tensor,
                  bias: torch.Tensor) -> torch.Tensor:
    """Per-task query accuracy of the fitted heads: ``(T,)``, each in [0, 1]."""
    logits = torch.einsum("tqc,tnc->tqn", query_features, weight) + bias.unsqueeze(1)
    return (logits.argmax(dim=-1) == y_query).float().mean(dim=-1)


def evaluate_transfer(
    model: Conv4,
    params: Params,
    sample_tasks: Callable[[int], TaskBatch],
    num_tasks: int = 600,
    batch_size: int = 50,
    steps: int = 100,
    lr: float = 0.01,
    statistics: Optional[dict[int, tuple[torch.Tensor, torch.Tensor]]] = None,
) -> dict:
    """The transfer baseline's accuracy on ``num_tasks`` tasks, with a 95% confidence interval.

    ``statistics`` (from :func:`batch_norm_statistics`): batch norm with the pretraining
    images' statistics; by default each task's support (and query) images are normalised
    with their own, as MAML's are.

    Draws the tasks exactly as :func:`mamlkit.evaluate.evaluate` does (``sample_tasks(n)`` in
    chunks of ``batch_size``), so the same sampler and generator seed give MAML and this
    baseline the same tasks.

    Returns:
        ``{"mean", "ci95", "per_task", "num_tasks"}``.
    """
    if num_tasks < 2:
        raise ValueError(f"num_tasks must be at least 2 for a confidence interval, got {num_tasks}")
    per_task = []
    remaining = num_tasks
    while remaining > 0:
        tasks = sample_tasks(min(batch_size, remaining))
        n_way = int(tasks.y_support.max()) + 1
        weight, bias = fine_tune_heads(features(model, params, tasks.x_support, statistics), tasks.y_support,
                                       n_way, steps, lr)
        per_task.append(head_accuracy(features(model, params, tasks.x_query, statistics), tasks.y_query, weight, bias))
        remaining -= tasks.num_tasks
    accuracies = torch.cat(per_task)
    mean, ci95 = mean_confidence_interval(accuracies)
    return {"mean": mean, "ci95": ci95, "per_task": accuracies.tolist(), "num_tasks": num_tasks}


def load_backbone(path: str | Path) -> tuple[Conv4, Params, dict]:
    """The backbone saved by :func:`main`: ``(model, params, settings)``, loaded with ``weights_only``."""
    state = torch.load(path, weights_only=True)
    settings = state["settings"]
    model = Conv4(2, channels=settings["channels"])
    params = {n: t for n, t in state["params"].items()}
    return model, params, settings


def main(argv: Optional[list[str]] = None) -> int:
    """Train the backbone on the training characters and save its blocks (the head is dropped).

    ``python -m mamlkit.lessons.transfer_baseline --epochs 2 --out assets/omniglot_transfer_backbone.pt``
    """
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--channels", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    from mamlkit.data.omniglot import load_omniglot, split_characters

    data = load_omniglot(root=args.data_root) if args.data_root else load_omniglot()
    train = split_characters(data.characters, "maml", seed=1)["train"]
    x, y = rotated_classes(data.images, train)
    torch.manual_seed(args.seed)
    start = time.perf_counter()
    epoch_losses: list[float] = []

    def record(epoch: int, _model: Conv4, losses: list[float]) -> None:  # each epoch's mean loss
        steps = len(losses) // epoch
        epoch_losses.append(sum(losses[-steps:]) / steps)

    model, params, losses = pretrain_classifier(x, y, args.epochs, args.batch_size, args.lr, args.channels,
                                                args.seed, progress=True, on_epoch=record)
    seconds = time.perf_counter() - start
    settings = {"epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr, "channels": args.channels,
                "seed": args.seed, "split": "maml", "classes": int(y.max()) + 1, "images": len(x),
                "training_seconds": round(seconds), "threads": torch.get_num_threads(),
                "final_loss": sum(losses[-50:]) / min(50, len(losses)), "epoch_losses": epoch_losses,
                "command": "python -m mamlkit.lessons.transfer_baseline " + " ".join(sys.argv[1:] if argv is None else argv)}
    blocks = {n: p.clone() for n, p in params.items() if n.startswith("blocks.")}
    torch.save({"params": blocks, "settings": settings}, args.out)
    print(json.dumps(settings, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
