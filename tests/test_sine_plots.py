"""The sine figures: each helper returns a Figure with what it promises, and survives overflow."""

import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from mamlkit.data.sinusoid import dense_grid, sample_sinusoid_tasks  # noqa: E402
from mamlkit.lessons.sine_experiment import SeedStudy, SineEvaluation  # noqa: E402
from mamlkit.lessons.sine_plots import (  # noqa: E402
    plot_mse_curves,
    plot_mse_distribution,
    plot_seed_spread,
    plot_sine_adaptation,
    plot_sine_fits,
    plot_training_losses,
)


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def evaluation(seed=0, overflow=False):
    g = torch.Generator().manual_seed(seed)
    mse = torch.rand(11, 20, generator=g) + 0.1
    if overflow:
        mse[5:, 3] = math.inf
        mse[8:, 4] = math.nan
    return SineEvaluation(mse, mse.clone(), k_shot=5)


def test_adaptation_plot_has_one_line_per_step_and_the_truth():
    grid = dense_grid(50)
    y = torch.sin(grid)
    fig = plot_sine_adaptation(grid, y, [y * s / 3 for s in range(4)], grid[:5], y[:5], title="t")
    ax = fig.axes[0]
    assert len(ax.lines) == 1 + 4 and ax.get_title() == "t"
    assert "step 3: MSE 0.00" in [t.get_text() for t in ax.get_legend().get_texts()]


def test_training_losses_plot_smooths_each_run():
    fig = plot_training_losses({"a": [3.0] * 50, "b": list(range(1, 51))}, window=10)
    lines = fig.axes[0].lines
    assert len(lines) == 2 and len(lines[0].get_xdata()) == 41


def test_mse_curves_and_distribution_handle_overflowed_tasks():
    evaluations = {"MAML": evaluation(0, overflow=True), "pretrained": evaluation(1)}
    fig = plot_mse_curves(evaluations, paper={"MAML": {1: 0.67, 5: 0.38, 10: 0.35}})
    assert fig.axes[0].get_yscale() == "log"
    fig = plot_mse_distribution(evaluations, steps=(1, 10))
    assert len(fig.axes[0].lines) == 4


def test_fits_plot_has_a_panel_per_task():
    tasks = sample_sinusoid_tasks(4, 5, 30, torch.Generator().manual_seed(0), query_grid=True).batch
    fig = plot_sine_fits(tasks.x_query[0], tasks.y_query, tasks.x_support, tasks.y_support,
                         {"fit": tasks.y_query * 0.9}, ncols=3)
    visible = [ax for ax in fig.axes if ax.axison]
    assert len(visible) == 4 and len(visible[0].lines) == 2


def test_seed_spread_plot_draws_every_seed_and_survives_an_overflowed_run():
    g = torch.Generator().manual_seed(0)
    mean = {"MAML": torch.rand(3, 11, generator=g) + 0.1, "baseline": torch.rand(3, 11, generator=g) + 2.0}
    mean["MAML"][1, 5:] = math.inf
    mean["MAML"][2, 8:] = math.nan
    study = SeedStudy([0, 1, 2], 100, mean, {k: v.clone() for k, v in mean.items()}, [0.01] * 3, {})
    fig = plot_seed_spread(study)
    left, right = fig.axes[:2]
    assert len(left.lines) == len(right.lines) == 2 * (3 + 1), "one thin line per seed and one mean per method"
    for ax in (left, right):
        for line in ax.lines:
            assert all(math.isfinite(v) for v in line.get_ydata())
    assert "3 seeds" in fig._suptitle.get_text()
