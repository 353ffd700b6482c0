"""Tests of mamlkit.lessons.omniglot_plots: every helper returns a Figure, on small synthetic images."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import pytest
import torch
from matplotlib.figure import Figure

from mamlkit.data.sampler import OmniglotTaskSampler
from mamlkit.lessons.omniglot_plots import (
    plot_adaptation_curve,
    plot_alphabets,
    plot_paper_table,
    plot_predictions,
    plot_task,
)


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    """Six characters of three alphabets, 20 random 12x12 drawings each, uint8."""
    generator = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (6, 20, 12, 12), dtype=torch.uint8, generator=generator)


CHARACTERS = [f"{alphabet}/character{i:02d}" for alphabet in ("Alpha_(a)", "Beta", "Gamma") for i in (1, 2)]


def test_plot_alphabets_one_labelled_panel_per_alphabet(images):
    fig = plot_alphabets(images, CHARACTERS, num_alphabets=5, ncols=2)
    assert isinstance(fig, Figure)
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert titles == ["Alpha (a)", "Beta", "Gamma"]


def test_plot_alphabets_rejects_mismatched_names(images):
    with pytest.raises(ValueError, match="names"):
        plot_alphabets(images, CHARACTERS[:-1])


@pytest.mark.ex4_1
def test_plot_task_shows_rotation_of_each_class(images):
    sampler = OmniglotTaskSampler(images, None, n_way=3, k_shot=2, n_query=1)
    tasks, info = sampler.sample_with_info(2, torch.Generator().manual_seed(1))
    fig = plot_task(tasks, info.rotations, task_index=1)
    assert isinstance(fig, Figure)
    assert len(fig.axes) == 3 * (2 + 1)
    labels = [ax.get_ylabel() for ax in fig.axes if ax.get_ylabel()]
    assert labels == [f"label {n}\nrotated {90 * int(r)}°" for n, r in enumerate(info.rotations[1])]


@pytest.mark.ex4_1
def test_plot_task_accepts_a_single_task_without_rotations(images):
    sampler = OmniglotTaskSampler(images, None, n_way=2, k_shot=1, n_query=3)
    task = sampler.sample(1, torch.Generator().manual_seed(2)).task(0)
    fig = plot_task(task, class_names=["Alpha_(a)/character07", "b"])
    assert isinstance(fig, Figure)
    labels = [ax.get_ylabel() for ax in fig.axes if ax.get_ylabel()]
    assert labels == ["label 0\nAlpha (a) #7", "label 1\nb"]


def test_plot_predictions_colours_right_and_wrong():
    x = torch.rand(6, 1, 12, 12, generator=torch.Generator().manual_seed(3))
    true = torch.tensor([0, 1, 2, 0, 1, 2])
    predicted = torch.tensor([0, 1, 0, 0, 2, 2])
    fig = plot_predictions(x, predicted, true, ncols=3, row_labels=["task 0", "task 1"])
    assert isinstance(fig, Figure)
    colours = [ax.title.get_color() for ax in fig.axes]
    assert colours == ["tab:green", "tab:green", "tab:red", "tab:green", "tab:red", "tab:green"]
    assert "4 of 6" in fig.texts[0].get_text()


def test_plot_predictions_rejects_mismatched_lengths():
    with pytest.raises(ValueError, match="equally many"):
        plot_predictions(torch.rand(3, 12, 12), torch.zeros(2), torch.zeros(3))


def test_plot_adaptation_curve_has_one_point_per_step():
    mean = [0.2, 0.9, 0.95, 0.96]
    ci = [0.01, 0.02, 0.01, 0.01]
    fig = plot_adaptation_curve(mean, ci, chance=0.2, train_inner_steps=1, eval_inner_steps=3)
    assert isinstance(fig, Figure)
    (ax,) = fig.axes
    x, y = ax.lines[0].get_data()
    assert list(x) == [0, 1, 2, 3]
    assert list(y) == pytest.approx([20, 90, 95, 96])


def test_plot_adaptation_curve_rejects_mismatched_lengths():
    with pytest.raises(ValueError, match="one of each"):
        plot_adaptation_curve([0.5, 0.6], [0.1])


def test_plot_paper_table_draws_every_shipped_manifest_curve_and_names_its_recipe():
    from mamlkit.lessons.paper_table import shipped_results

    rows = shipped_results()
    fig = plot_paper_table(rows)
    lines = [line for line in fig.axes[0].get_lines() if line.get_label().split(":")[0].endswith("shot")]
    shipped = [(setting, manifest) for setting, manifest in rows if manifest is not None]
    assert len(lines) == len(shipped)
    for line, (setting, manifest) in zip(lines, shipped):
        assert list(line.get_ydata()) == [100 * a for a in manifest["test_accuracy_per_step"]]
        recipe = "learned rates" if "--learn-inner-lrs" in manifest["command"] else "fixed α"
        assert line.get_label() == f"{setting.name}: {manifest['iterations']:,} steps, {recipe}"
