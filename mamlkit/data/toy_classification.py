r"""A classification task family small enough to see: N Gaussian blobs in the plane.

Each task places ``n_way`` class centres at random in the square :math:`[-3, 3]^2` and draws
every example of class :math:`c` from :math:`\mathcal N(\mu_c, \sigma^2 I)`. The labels
0..n_way−1 mean nothing across tasks (class 0 is wherever this task's first centre fell), as in
few-shot image classification, so a network can only solve a task by adapting to its support
set. Used in ``notebooks/02_inner_loop.ipynb`` to run the same inner loop,
:func:`mamlkit.inner_loop.adapt`, with the cross-entropy loss; :func:`plot_decision_regions`
draws what the classifier predicts before and after adapting.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from mamlkit.functional import Params, forward
from mamlkit.models import reset_parameters
from mamlkit.tasks import TaskBatch

__all__ = ["BlobClassifier", "plot_decision_regions", "sample_blob_tasks"]

#: Class centres are drawn uniformly from this square.
CENTRE_RANGE = (-3.0, 3.0)


class BlobClassifier(nn.Module):
    """A 2 → hidden → n_way ReLU network: ``(S, 2)`` points to ``(S, n_way)`` logits."""

    def __init__(self, n_way: int = 3, hidden: int = 32, generator: torch.Generator | None = None):
        super().__init__()
        if n_way < 2:
            raise ValueError(f"n_way must be at least 2 classes, got {n_way}")
        self.layers = nn.Sequential(nn.Linear(2, hidden), nn.ReLU(), nn.Linear(hidden, n_way))
        if generator is not None:
            reset_parameters(self, generator)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)

    @staticmethod
    def forward_tasks(params: Params, x: torch.Tensor) -> torch.Tensor:
        """``T`` tasks at once: parameters with a leading task axis, ``x`` ``(T, S, 2)`` → ``(T, S, n_way)``."""
        h = torch.baddbmm(params["layers.0.bias"].unsqueeze(1), x, params["layers.0.weight"].transpose(1, 2))
        h = torch.relu(h)
        return torch.baddbmm(params["layers.2.bias"].unsqueeze(1), h, params["layers.2.weight"].transpose(1, 2))


def sample_blob_tasks(
    num_tasks: int,
    n_way: int,
    k_shot: int,
    n_query: int,
    generator: torch.Generator,
    std: float = 0.7,
) -> TaskBatch:
    """Draw ``num_tasks`` blob tasks, each with ``k_shot`` support and ``n_query`` query points per class.

    Args:
        num_tasks: T.
        n_way: classes per task.
        k_shot: support points per class.
        n_query: query points per class.
        generator: the source of randomness; the same state gives the same tasks.
        std: σ, the spread of each blob.

    Returns:
        A :class:`TaskBatch` with ``x_support`` ``(T, n_way·k_shot, 2)``, ``y_support``
        ``(T, n_way·k_shot)`` int64 (classes in blocks: 0,…,0, 1,…,1, …), and likewise for the query.
    """
    for name, value in dict(num_tasks=num_tasks, k_shot=k_shot, n_query=n_query).items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if isinstance(n_way, bool) or not isinstance(n_way, int) or n_way < 2:
        raise ValueError(f"n_way must be an integer >= 2, got {n_way!r}")
    if std <= 0:
        raise ValueError(f"std must be positive, got {std!r}")
    low, high = CENTRE_RANGE
    centres = low + (high - low) * torch.rand(num_tasks, n_way, 1, 2, generator=generator)

    def points(per_class: int) -> tuple[torch.Tensor, torch.Tensor]:
        noise = std * torch.randn(num_tasks, n_way, per_class, 2, generator=generator)
        x = (centres + noise).reshape(num_tasks, n_way * per_class, 2)
        y = torch.arange(n_way).repeat_interleave(per_class).expand(num_tasks, -1).clone()
        return x, y

    x_support, y_support = points(k_shot)
    x_query, y_query = points(n_query)
    return TaskBatch(x_support, y_support, x_query, y_query)


def plot_decision_regions(
    model: nn.Module,
    params_per_panel: Sequence[Params],
    titles: Sequence[str],
    x_support: torch.Tensor,
    y_support: torch.Tensor,
    x_query: torch.Tensor | None = None,
    y_query: torch.Tensor | None = None,
    resolution: int = 120,
):
    """Side-by-side panels: the class the network predicts everywhere in the plane, per parameter set.

    Args:
        model: a network from 2-D points to ``n_way`` logits, e.g. :class:`BlobClassifier`.
        params_per_panel: one ``{name: tensor}`` per panel, e.g. θ and φ after some steps.
        titles: one title per panel.
        x_support, y_support: ``(S, 2)`` and ``(S,)``: drawn as large dots with a black edge.
        x_query, y_query: ``(Q, 2)`` and ``(Q,)``, optional: drawn as small faint dots.
        resolution: grid points per axis for the background.

    Returns:
        The Figure.
    """
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap

    points = x_support if x_query is None else torch.cat([x_support, x_query])
    low = (points.min(dim=0).values - 1.0).tolist()
    high = (points.max(dim=0).values + 1.0).tolist()
    gx, gy = torch.meshgrid(torch.linspace(low[0], high[0], resolution),
                            torch.linspace(low[1], high[1], resolution), indexing="xy")
    grid = torch.stack([gx.reshape(-1), gy.reshape(-1)], dim=1)
    n_way = int(y_support.max()) + 1
    colours = [f"C{c}" for c in range(n_way)]
    fig, axes = plt.subplots(1, len(params_per_panel), figsize=(3.0 * len(params_per_panel), 3.0),
                             sharex=True, sharey=True, squeeze=False)
    for ax, params, title in zip(axes[0], params_per_panel, titles):
        with torch.no_grad():
            regions = forward(model, params, grid).argmax(dim=-1).reshape(resolution, resolution)
        ax.imshow(regions.numpy(), origin="lower", extent=(low[0], high[0], low[1], high[1]),
                  cmap=ListedColormap(colours), alpha=0.25, vmin=0, vmax=n_way - 1, aspect="auto")
        if x_query is not None:
            ax.scatter(*x_query.T.tolist(), c=[colours[c] for c in y_query.tolist()], s=8, alpha=0.6)
        ax.scatter(*x_support.T.tolist(), c=[colours[c] for c in y_support.tolist()], s=40, edgecolors="black")
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig
