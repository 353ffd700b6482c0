"""Small factories shared by the tests: tiny seeded models and task batches."""

from __future__ import annotations

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
