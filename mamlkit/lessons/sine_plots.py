"""Figures of the sine-wave experiments. Every helper returns a Figure; the notebook shows it.

Used in ``notebooks/02_inner_loop.ipynb`` (one task adapting step by step) and
``notebooks/03_outer_loop.ipynb`` (training losses, MSE against fine-tuning steps, its spread over training seeds, test fits).
"""

from __future__ import annotations

import math
from typing import Mapping, Optional, Sequence

import matplotlib.pyplot as plt
import torch

__all__ = [
    "plot_mse_curves",
    "plot_mse_distribution",
    "plot_seed_spread",
    "plot_sine_adaptation",
    "plot_sine_fits",
    "plot_training_losses",
]


def _np(t: torch.Tensor):
    return t.detach().cpu().reshape(-1).numpy()


def plot_sine_adaptation(
    x_grid: torch.Tensor,
    y_true: torch.Tensor,
    predictions: Sequence[torch.Tensor],
    x_support: torch.Tensor,
    y_support: torch.Tensor,
    title: Optional[str] = None,
    ax: Optional[plt.Axes] = None,
):
    """One task: the true wave, its support points and the fit after every inner step.

    Args:
        x_grid: ``(N, 1)`` inputs, sorted.
        y_true: ``(N, 1)`` the true wave at ``x_grid``.
        predictions: ``[(N, 1), ...]`` the model's output after 0, 1, 2, … steps.
        x_support, y_support: ``(K, 1)`` the points the model adapted on.
        title: the axes title.
        ax: draw into this axes instead of a new figure.

    Returns:
        The Figure. The legend gives each step's MSE on the grid.
    """
    fig, ax = (plt.subplots(figsize=(6.4, 3.6)) if ax is None else (ax.figure, ax))
    x = _np(x_grid)
    ax.plot(x, _np(y_true), color="black", lw=2, label="true wave")
    colours = plt.cm.viridis(torch.linspace(0.0, 0.9, max(len(predictions), 2)).tolist())
    for step, (pred, colour) in enumerate(zip(predictions, colours)):
        error = (pred.detach() - y_true).pow(2).mean().item()
        ax.plot(x, _np(pred), color=colour, lw=1.5, ls="--" if step == 0 else "-",
                label=f"step {step}: MSE {error:.2f}")
    ax.scatter(_np(x_support), _np(y_support), color="C3", zorder=5, s=30, label=f"K = {len(x_support)} support points")
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig


def plot_training_losses(losses: Mapping[str, Sequence[float]], window: int = 200, title: str = "Training"):
    """Training loss against iterations, one line per run, averaged over a sliding window.

    Args:
        losses: ``{run name: [loss at iteration 1, 2, …]}``.
        window: iterations per moving average (the raw losses are noisy: 25 random tasks each).
    """
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    for name, values in losses.items():
        values = torch.as_tensor(list(values), dtype=torch.float64)
        w = max(1, min(window, len(values)))
        smooth = values.unfold(0, w, 1).mean(dim=1) if len(values) >= w else values
        ax.plot(torch.arange(w, w + len(smooth)).numpy(), smooth.numpy(), label=name)
    ax.set_yscale("log")
    ax.set_xlabel("iteration")
    ax.set_ylabel(f"MSE (mean of {window} iterations)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    ax.set_title(title)
    fig.tight_layout()
    return fig


def plot_mse_curves(
    evaluations: Mapping[str, object],
    paper: Optional[Mapping[str, Mapping[int, float]]] = None,
    title: str = "5-shot fine-tuning on new waves",
):
    """Grid MSE against fine-tuning steps: mean with its 95% CI (band) and median (dotted).

    Args:
        evaluations: ``{method: evaluation}``; each evaluation has lists ``mean``, ``ci95`` and
            ``median`` indexed by step (e.g. :class:`mamlkit.lessons.sine_experiment.SineEvaluation`).
        paper: ``{method: {steps: mse}}``, drawn as hollow markers in the method's colour.
    """
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    for i, (name, ev) in enumerate(evaluations.items()):
        colour = f"C{i}"
        mean = torch.tensor(ev.mean, dtype=torch.float64)
        ci = torch.tensor(ev.ci95, dtype=torch.float64)
        steps = torch.arange(len(mean)).numpy()
        ax.plot(steps, mean.numpy(), color=colour, marker="o", ms=3, label=f"{name}: mean")
        ax.fill_between(steps, (mean - ci).numpy(), (mean + ci).numpy(), color=colour, alpha=0.2)
        ax.plot(steps, ev.median, color=colour, ls=":", label=f"{name}: median")
        if paper and name in paper:
            ax.scatter(list(paper[name]), list(paper[name].values()), facecolors="none",
                       edgecolors=colour, s=60, zorder=5, label=f"{name}: paper")
    ax.set_xlabel("fine-tuning steps (SGD on the K support points)")
    ax.set_ylabel("MSE on a 100-point grid")
    ax.set_yscale("log")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.set_title(title)
    fig.tight_layout()
    return fig


def plot_mse_distribution(
    evaluations: Mapping[str, object],
    steps: Sequence[int] = (1, 10),
    title: str = "How the error is spread over tasks",
):
    """The fraction of tasks whose grid MSE is at most x, per method and number of steps.

    A mean is one number; this curve (an empirical CDF) shows all of them: its middle is the
    median, and its right end the few worst tasks, which a mean can hide or be dominated by.
    Tasks whose MSE overflowed are counted at the right edge, never dropped.

    Args:
        evaluations: ``{method: evaluation}``, each with an ``mse`` tensor ``(steps + 1, num_tasks)``.
        steps: which numbers of fine-tuning steps to draw (solid, then dashed, ...).
    """
    styles = ["-", "--", ":", "-."]
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    finite_max = max(float(ev.mse[torch.isfinite(ev.mse)].max()) for ev in evaluations.values())
    for i, (name, ev) in enumerate(evaluations.items()):
        for j, step in enumerate(steps):
            values = torch.nan_to_num(ev.mse[step].double(), nan=math.inf).clamp(max=10 * finite_max)
            values = values.sort().values
            fraction = torch.arange(1, len(values) + 1, dtype=torch.float64) / len(values)
            ax.step(values.numpy(), fraction.numpy(), where="post", color=f"C{i}",
                    ls=styles[j % len(styles)], label=f"{name}, {step} step{'s' if step != 1 else ''}")
    ax.set_xscale("log")
    ax.set_xlabel("MSE on a 100-point grid")
    ax.set_ylabel("fraction of tasks with at most this MSE")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.set_title(title)
    fig.tight_layout()
    return fig


def plot_sine_fits(
    x_grid: torch.Tensor,
    y_true: torch.Tensor,
    x_support: torch.Tensor,
    y_support: torch.Tensor,
    fits: Mapping[str, torch.Tensor],
    ncols: int = 3,
    title: Optional[str] = None,
):
    """A few tasks side by side: true wave, support points and each method's fitted curve.

    Args:
        x_grid: ``(N, 1)`` the shared inputs of the curves.
        y_true: ``(T, N, 1)`` the true waves.
        x_support, y_support: ``(T, K, 1)``.
        fits: ``{method: (T, N, 1)}`` each method's prediction after fine-tuning.
        ncols: panels per row.
    """
    num_tasks = y_true.shape[0]
    nrows = -(-num_tasks // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.2 * ncols, 2.4 * nrows), squeeze=False,
                             sharex=True, sharey=True)
    x = _np(x_grid)
    for i, ax in enumerate(axes.flat):
        if i >= num_tasks:
            ax.axis("off")
            continue
        ax.plot(x, _np(y_true[i]), color="black", lw=2, label="true wave")
        for j, (name, fit) in enumerate(fits.items()):
            ax.plot(x, _np(fit[i]), color=f"C{j}", lw=1.5, label=name)
        ax.scatter(_np(x_support[i]), _np(y_support[i]), color="C3", s=20, zorder=5, label="support points")
        ax.grid(alpha=0.3)
    axes.flat[0].legend(fontsize=7)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_seed_spread(study, title: str = "Test MSE over training seeds"):
    """Each method's test MSE against fine-tuning steps, over training seeds: mean, range and every seed.

    Two panels: the runs' mean test MSE (left) and their median test MSE (right). Per method the
    thick line is the mean over seeds, the band runs from the best seed to the worst, and each
    thin line is one seed. A seed whose mean overflowed is drawn at the top edge of the panel.

    Args:
        study: a :class:`mamlkit.lessons.sine_experiment.SeedStudy` (``mean`` and ``median``:
            ``{method: (num_seeds, steps + 1)}``).
    """
    fig, axes = plt.subplots(1, 2, figsize=(10.0, 3.8), sharey=True)
    tables = (("mean", study.mean), ("median", study.median))
    finite = [t[torch.isfinite(t)] for _, table in tables for t in table.values()]
    top = 10 * max(float(t.max()) for t in finite if t.numel()) if any(t.numel() for t in finite) else 10.0
    for ax, (statistic, table) in zip(axes, tables):
        for i, (method, values) in enumerate(table.items()):
            values = torch.nan_to_num(values.double(), nan=top, posinf=top).clamp(max=top)
            steps = torch.arange(values.shape[1]).numpy()
            colour = f"C{i}"
            for row in values:
                ax.plot(steps, row.numpy(), color=colour, lw=0.6, alpha=0.5)
            ax.fill_between(steps, values.min(dim=0).values.numpy(), values.max(dim=0).values.numpy(),
                            color=colour, alpha=0.15)
            ax.plot(steps, values.mean(dim=0).numpy(), color=colour, lw=2, marker="o", ms=3,
                    label=f"{method}: mean of {values.shape[0]} seeds, range shaded")
        ax.set_yscale("log")
        ax.set_xlabel("fine-tuning steps (SGD on the K support points)")
        ax.set_title(f"each run's {statistic} test MSE")
        ax.grid(alpha=0.3, which="both")
    axes[0].set_ylabel("MSE on a 100-point grid")
    axes[1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.suptitle(f"{title} ({len(study.seeds)} seeds, {study.iterations} training steps each)")
    fig.tight_layout()
    return fig
