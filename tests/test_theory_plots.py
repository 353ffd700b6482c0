"""The figures of notebooks 01 and 03 draw what they are given."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import torch

from mamlkit.lessons.meta_overfitting import OverfittingRun
from mamlkit.lessons.quadratic_toy import example_tasks
from mamlkit.lessons.theory_plots import (
    plot_correction_ratio,
    plot_meta_loss_1d,
    plot_meta_overfitting,
    plot_quadratic_toy,
    plot_step_cost,
)


def test_quadratic_toy_draws_one_arrow_per_task_from_each_start():
    fig = plot_quadratic_toy(example_tasks(), 0.2, points=30)
    arrows = [a for a in fig.axes[0].texts if a.arrow_patch is not None]
    assert len(arrows) == 2 * 3
    plt.close(fig)


def test_line_plots_have_one_line_per_series():
    fig = plot_correction_ratio([0.01, 0.1], {"1 step": [0.1, 1.0], "5 steps": [0.2, 2.0]}, marks={"α": 0.01})
    assert len(fig.axes[0].get_lines()) >= 2
    plt.close(fig)
    rows = [{"inner_steps": s, "graph_bytes": 1000 * s, "seconds": 0.01 * s} for s in (1, 2)]
    fig = plot_step_cost({"second order": rows, "first order": rows})
    assert len(fig.axes) == 2 and len(fig.axes[0].get_lines()) == 2
    plt.close(fig)
    run = OverfittingRun([1, 2], [1.0, 0.5], [1.2, 1.5], "fixed_pool", {})
    fig = plot_meta_overfitting({"a": run, "b": run})
    assert len(fig.axes) == 2
    plt.close(fig)
    thetas = torch.linspace(-1, 1, 5, dtype=torch.float64)
    fig = plot_meta_loss_1d(thetas, thetas**2, 0.5 * thetas**2, 0.0, 0.1, 0.5)
    assert "+0.50" in fig.axes[0].get_title()
    plt.close(fig)
