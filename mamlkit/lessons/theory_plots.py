"""Figures for *why* MAML works: the meta-loss of one parameter, the 2-D quadratic toy, the size
of the second-order term, the cost of inner steps, and meta-overfitting. Every helper returns a
Figure; the notebook shows it.

Used in ``notebooks/01_autograd_basics.ipynb`` and ``notebooks/03_outer_loop.ipynb``.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import matplotlib.pyplot as plt
import torch

from mamlkit.lessons.quadratic_toy import QuadraticTasks, maml_solution, one_step, pretrain_solution

__all__ = ["plot_correction_ratio", "plot_meta_loss_1d", "plot_meta_overfitting", "plot_quadratic_toy",
           "plot_step_cost"]


def plot_meta_loss_1d(thetas: torch.Tensor, query_loss: torch.Tensor, meta_loss: torch.Tensor, theta: float,
                      inner_lr: float, factor: float):
    """Notebook 01's one-parameter task: :math:`L_Q(\\theta)` and :math:`L_Q(\\phi(\\theta))` against θ.

    Args:
        thetas: ``(M,)`` values of θ; query_loss, meta_loss: ``(M,)`` the two curves.
        theta: the θ marked on the curves; inner_lr: α; factor: :math:`1 - \\alpha L_S''`.
    """
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    ax.plot(thetas.numpy(), query_loss.numpy(), color="0.6", lw=1.5, label="$L_Q(\\theta)$: no inner step")
    ax.plot(thetas.numpy(), meta_loss.numpy(), color="C0", lw=2, label="$L_Q(\\phi(\\theta))$: after one step")
    ax.axvline(theta, color="C3", lw=1, ls=":")
    ax.set_xlabel("θ")
    ax.set_ylabel("query loss")
    ax.set_title(f"α = {inner_lr:.3g}: meta-gradient = ({factor:+.2f}) · L_Q'(φ)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_quadratic_toy(tasks: QuadraticTasks, inner_lr: float, extent: float = 3.5, points: int = 120):
    """The 2-D toy: each task's contours and optimum, θ_pretrain, θ_MAML and one step from each.

    Arrows show where one gradient step of size α on each task takes θ_pretrain (grey) and
    θ_MAML (blue); crosses are the task optima.
    """
    grid = torch.linspace(-extent, extent, points, dtype=tasks.centres.dtype)
    gx, gy = torch.meshgrid(grid, grid, indexing="xy")
    flat = torch.stack([gx.reshape(-1), gy.reshape(-1)], dim=1)  # (P, 2)
    pretrain, maml = pretrain_solution(tasks), maml_solution(tasks, inner_lr)
    fig, ax = plt.subplots(figsize=(5.6, 5.2))
    for i in range(len(tasks.centres)):
        diff = flat - tasks.centres[i]
        loss = 0.5 * torch.einsum("pi,ij,pj->p", diff, tasks.curvatures[i], diff).reshape(points, points)
        ax.contour(gx.numpy(), gy.numpy(), loss.numpy(), levels=[0.25, 1, 3], colors=[f"C{i + 2}"], linewidths=0.8,
                   alpha=0.8)
        ax.plot(*tasks.centres[i].tolist(), marker="x", color=f"C{i + 2}", ms=9, mew=2)
    for start, colour, label in ((pretrain, "0.4", "θ_pretrain"), (maml, "C0", f"θ_MAML (α = {inner_lr:.2g})")):
        ax.plot(*start.tolist(), marker="o", color=colour, ms=8, label=label, zorder=5)
        for end in one_step(tasks, start, inner_lr):
            ax.annotate("", xy=end.tolist(), xytext=start.tolist(),
                        arrowprops=dict(arrowstyle="->", color=colour, lw=1.3))
    ax.set_xlim(-extent, extent)
    ax.set_ylim(-extent, extent)
    ax.set_aspect("equal")
    ax.legend(fontsize=8, loc="lower left")
    ax.set_title("tasks (contours, × = optimum); arrows: one step on each task")
    fig.tight_layout()
    return fig


def plot_correction_ratio(inner_lrs: Sequence[float], ratios: Mapping[str, Sequence[float]],
                          marks: Mapping[str, float] | None = None):
    """‖α H_S g_Q‖ / ‖g_Q‖ against α, one curve per setting, log-log; ``marks`` names α values."""
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    for label, values in ratios.items():
        ax.loglog(inner_lrs, values, marker="o", ms=3, label=label)
    for name, value in (marks or {}).items():
        ax.axvline(value, color="0.5", ls=":", lw=1)
        ax.text(value, ax.get_ylim()[1], f" {name}", fontsize=8, va="top", rotation=90)
    ax.axhline(1.0, color="C3", lw=0.8, ls="--")
    ax.set_xlabel("inner_lr α")
    ax.set_ylabel("‖α H_S g_Q‖ / ‖g_Q‖")
    ax.set_title("How much the second-order term changes the meta-gradient")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_step_cost(rows: Mapping[str, Sequence[dict]]):
    """Graph memory and time of one meta-gradient against inner steps (from ``meta_step_cost``)."""
    fig, (mem, sec) = plt.subplots(1, 2, figsize=(9, 3.4))
    for label, series in rows.items():
        steps = [r["inner_steps"] for r in series]
        mem.plot(steps, [r["graph_bytes"] / 2**20 for r in series], marker="o", label=label)
        sec.plot(steps, [1000 * r["seconds"] for r in series], marker="o", label=label)
    mem.set_ylabel("memory held by autograd (MiB)")
    sec.set_ylabel("time per meta-gradient (ms)")
    for ax in (mem, sec):
        ax.set_xlabel("inner_steps")
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_meta_overfitting(runs: Mapping[str, object]):
    """Train and validation meta-loss of each :class:`~mamlkit.lessons.meta_overfitting.OverfittingRun`."""
    fig, axes = plt.subplots(1, len(runs), figsize=(4.2 * len(runs), 3.4), sharey=True, squeeze=False)
    for ax, (label, run) in zip(axes[0], runs.items()):
        ax.plot(run.steps, run.train_meta_loss, marker="o", ms=3, label="training objective")
        ax.plot(run.steps, run.val_meta_loss, marker="o", ms=3, label="validation meta-loss (new waves)")
        ax.set_yscale("log")
        ax.set_xlabel("outer step")
        ax.set_title(label, fontsize=10)
        ax.grid(alpha=0.3, which="both")
    axes[0][0].set_ylabel("MSE after one inner step")
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    return fig
