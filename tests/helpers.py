"""Small factories shared by the tests: tiny seeded models and task batches."""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from mamlkit.models import Conv4, SineMLP
from mamlkit.tasks import TaskBatch


def flat(tensors) -> torch.Tensor:
    return torch.cat([t.reshape(-1) for t in tensors])


def relative_error(actual, expected) -> float:
    """Relative L2 distance between two lists of tensors, taken over all of them at once."""
    a, e = flat(actual), flat(expected)
    return ((a - e).norm() / e.norm()).item()


def tiny_conv(n_way: int = 3, channels: int = 3, seed: int = 0, dtype=torch.float64) -> Conv4:
    """A conv4 small enough for finite differences (a few hundred parameters)."""
    return Conv4(n_way, channels=channels, generator=torch.Generator().manual_seed(seed)).to(dtype)


def tiny_mlp(seed: int = 0, dtype=torch.float64, hidden: int = 8) -> SineMLP:
    return SineMLP(hidden=hidden, generator=torch.Generator().manual_seed(seed)).to(dtype)


def image_tasks(num_tasks=2, n_way=3, k_shot=2, n_query=2, size=12, seed=0, dtype=torch.float64) -> TaskBatch:
    """Random images with balanced labels, shaped like Omniglot tasks (smaller)."""
    g = torch.Generator().manual_seed(seed)
    labels_s = torch.arange(n_way).repeat_interleave(k_shot).expand(num_tasks, -1).clone()
    labels_q = torch.arange(n_way).repeat_interleave(n_query).expand(num_tasks, -1).clone()
    return TaskBatch(
        torch.rand(num_tasks, n_way * k_shot, 1, size, size, generator=g, dtype=dtype),
        labels_s,
        torch.rand(num_tasks, n_way * n_query, 1, size, size, generator=g, dtype=dtype),
        labels_q,
    )


def regression_tasks(num_tasks=2, k_support=5, k_query=4, seed=0, dtype=torch.float64) -> TaskBatch:
    g = torch.Generator().manual_seed(seed)
    x_s = torch.rand(num_tasks, k_support, 1, generator=g, dtype=dtype) * 10 - 5
    x_q = torch.rand(num_tasks, k_query, 1, generator=g, dtype=dtype) * 10 - 5
    amp = torch.rand(num_tasks, 1, 1, generator=g, dtype=dtype) * 4 + 1
    return TaskBatch(x_s, amp * torch.sin(x_s), x_q, amp * torch.sin(x_q))


ASSETS = Path(__file__).resolve().parents[1] / "assets"


def data_available() -> bool:
    """Whether ``MAMLKIT_DATA`` names a folder holding the Omniglot zips."""
    folder = os.environ.get("MAMLKIT_DATA")
    return bool(folder) and (Path(folder) / "images_background.zip").exists()


def check_reproduces_first_tasks(stem: str, num_tasks: int) -> None:
    """Evaluate ``assets/<stem>.pt`` on the first ``num_tasks`` of its manifest's test tasks.

    Tasks come in batches of 50 from the manifest's seed, so the first 50 or 100 are the same
    tasks as in the manifest's 600; the accuracy must match ``test_accuracy_first_<n>_tasks``.

    The figure is measured with one thread, as the manifest's was (``reproduction_threads``):
    near-tied predictions can flip with the thread count, which sets the order of float sums, so
    the same count makes the check exact whatever ``OMP_NUM_THREADS`` the grader runs with.
    """
    from mamlkit.run.publish import one_thread
    from mamlkit.run.saved_models import evaluate_checkpoint

    manifest = json.loads((ASSETS / f"{stem}.json").read_text())
    expected = manifest[f"test_accuracy_first_{num_tasks}_tasks"]
    with one_thread():
        result = evaluate_checkpoint(ASSETS / manifest["file"], split="test", num_tasks=num_tasks,
                                     seed=manifest["test_seed"], inner_steps=manifest["eval_inner_steps"])
    tolerance = 1e-6 if manifest.get("reproduction_threads") == 1 else 0.002
    assert abs(result["mean"] - expected) <= tolerance, (
        f"{stem}: measured {result['mean']:.4f} on the first {num_tasks} test tasks, "
        f"manifest says {expected:.4f}"
    )
