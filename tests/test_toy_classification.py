"""The Gaussian-blob tasks and their small classifier."""

import pytest
import torch

from mamlkit.data.toy_classification import CENTRE_RANGE, BlobClassifier, sample_blob_tasks
from mamlkit.functional import forward, get_params
from mamlkit.inner_loop import adapt
from mamlkit.losses import cross_entropy


def blobs(seed=0, **kwargs):
    args = dict(num_tasks=4, n_way=3, k_shot=5, n_query=7)
    args.update(kwargs)
    return sample_blob_tasks(generator=torch.Generator().manual_seed(seed), **args)


def test_shapes_and_labels():
    tasks = blobs()
    assert tasks.x_support.shape == (4, 15, 2) and tasks.x_query.shape == (4, 21, 2)
    assert tasks.y_support.dtype == torch.int64 and tasks.y_support.shape == (4, 15)
    assert tasks.y_support[0].tolist() == [0] * 5 + [1] * 5 + [2] * 5
    assert torch.equal(tasks.y_query, torch.arange(3).repeat_interleave(7).expand(4, -1))


def test_each_class_is_a_blob_around_its_own_centre():
    tasks = blobs(num_tasks=200, k_shot=50, n_query=1, std=0.1)
    points = tasks.x_support.view(200, 3, 50, 2)
    centres = points.mean(dim=2)
    low, high = CENTRE_RANGE
    assert centres.min() > low - 0.1 and centres.max() < high + 0.1
    assert (points - centres.unsqueeze(2)).std() == pytest.approx(0.1, rel=0.05)


def test_seeds_repeat():
    a, b, c = blobs(seed=1), blobs(seed=1), blobs(seed=2)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not torch.equal(a.x_support, c.x_support)


@pytest.mark.parametrize("name,bad,message", [
    ("num_tasks", 0, "num_tasks must be a positive integer"),
    ("k_shot", -1, "k_shot must be a positive integer"),
    ("n_query", 1.5, "n_query must be a positive integer"),
    ("n_way", 1, "n_way must be an integer >= 2"),
    ("std", 0.0, "std must be positive"),
])
def test_bad_arguments_are_rejected(name, bad, message):
    with pytest.raises(ValueError, match=message):
        blobs(**{name: bad})


def test_classifier_shapes_and_its_task_batched_twin():
    model = BlobClassifier(n_way=3, generator=torch.Generator().manual_seed(0)).double()
    tasks = blobs()
    params = get_params(model)
    assert model(tasks.x_query[0].double()).shape == (21, 3)
    per_task = {n: torch.stack([p * (1 + 0.1 * i) for i in range(4)]) for n, p in params.items()}
    batched = model.forward_tasks(per_task, tasks.x_query.double())
    for i in range(4):
        alone = forward(model, {n: p[i] for n, p in per_task.items()}, tasks.x_query[i].double())
        assert torch.allclose(batched[i], alone, atol=1e-12)
    with pytest.raises(ValueError, match="n_way must be at least 2"):
        BlobClassifier(n_way=1)


@pytest.mark.ex2_1
def test_the_inner_loop_fits_a_blob_task():
    model = BlobClassifier(n_way=3, generator=torch.Generator().manual_seed(0))
    params = get_params(model)
    task = blobs(num_tasks=1, k_shot=10).task(0)
    before = cross_entropy(forward(model, params, task.x_support), task.y_support)
    adapted = adapt(model, params, task.x_support, task.y_support, cross_entropy, 0.5, 20)
    after = cross_entropy(forward(model, adapted, task.x_support), task.y_support)
    assert after < 0.5 * before


def test_decision_region_plot_has_a_panel_per_parameter_set():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mamlkit.data.toy_classification import plot_decision_regions

    model = BlobClassifier(n_way=3, generator=torch.Generator().manual_seed(0))
    params = get_params(model)
    task = blobs(num_tasks=1).task(0)
    fig = plot_decision_regions(model, [params, params], ["before", "after"], task.x_support, task.y_support,
                                task.x_query, task.y_query, resolution=20)
    assert [ax.get_title() for ax in fig.axes] == ["before", "after"]
    plt.close(fig)
