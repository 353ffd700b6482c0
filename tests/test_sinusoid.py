"""The sine-wave task sampler: the paper's ranges, shapes, seeds and clear errors."""

import math

import pytest
import torch

from mamlkit.data.sinusoid import (
    AMPLITUDE_RANGE,
    PHASE_RANGE,
    X_RANGE,
    SinusoidTasks,
    dense_grid,
    sample_sinusoid_tasks,
    sinusoid,
    sinusoid_sampler,
)
from mamlkit.tasks import TaskBatch


def sample(seed=0, **kwargs):
    args = dict(num_tasks=7, k_support=5, k_query=4)
    args.update(kwargs)
    return sample_sinusoid_tasks(generator=torch.Generator().manual_seed(seed), **args)


def test_shapes_and_dtype():
    tasks = sample()
    assert isinstance(tasks, SinusoidTasks) and isinstance(tasks.batch, TaskBatch)
    assert tasks.batch.x_support.shape == tasks.batch.y_support.shape == (7, 5, 1)
    assert tasks.batch.x_query.shape == tasks.batch.y_query.shape == (7, 4, 1)
    assert tasks.amplitude.shape == tasks.phase.shape == (7,)
    assert all(t.dtype == torch.float32 for t in (*tasks.batch, tasks.amplitude, tasks.phase))
    assert tasks.num_tasks == tasks.batch.num_tasks == 7
    assert sample(dtype=torch.float64).batch.x_support.dtype == torch.float64


def test_parameters_and_inputs_lie_in_the_papers_ranges():
    tasks = sample(num_tasks=4000, k_support=10, k_query=10)
    for values, (low, high), name in [(tasks.amplitude, AMPLITUDE_RANGE, "amplitude"),
                                      (tasks.phase, PHASE_RANGE, "phase"),
                                      (tasks.batch.x_support, X_RANGE, "x_support"),
                                      (tasks.batch.x_query, X_RANGE, "x_query")]:
        assert low <= values.min() and values.max() <= high, f"{name} outside [{low}, {high}]"
        # 4000+ uniform draws come close to both ends of the range.
        assert values.min() < low + 0.01 * (high - low) and values.max() > high - 0.01 * (high - low), name
    assert AMPLITUDE_RANGE == (0.1, 5.0) and PHASE_RANGE == (0.0, math.pi) and X_RANGE == (-5.0, 5.0)


def test_targets_are_the_tasks_sine_waves():
    tasks = sample()
    a, p = tasks.amplitude.view(-1, 1, 1), tasks.phase.view(-1, 1, 1)
    torch.testing.assert_close(tasks.batch.y_support, a * torch.sin(tasks.batch.x_support - p))
    torch.testing.assert_close(tasks.batch.y_query, a * torch.sin(tasks.batch.x_query - p))
    torch.testing.assert_close(tasks.target(tasks.batch.x_query), tasks.batch.y_query)
    torch.testing.assert_close(sinusoid(torch.tensor([[[math.pi / 2 + 1.0]]]), torch.tensor([2.0]),
                                        torch.tensor([1.0])), torch.tensor([[[2.0]]]))


def test_the_same_seed_gives_the_same_tasks_and_another_seed_others():
    a, b, c = sample(seed=3), sample(seed=3), sample(seed=4)
    assert all(torch.equal(x, y) for x, y in zip(a.batch, b.batch))
    assert torch.equal(a.amplitude, b.amplitude) and torch.equal(a.phase, b.phase)
    assert not torch.equal(a.amplitude, c.amplitude)


def test_a_generator_moves_on_between_calls():
    generator = torch.Generator().manual_seed(0)
    first = sample_sinusoid_tasks(3, 5, 5, generator)
    second = sample_sinusoid_tasks(3, 5, 5, generator)
    assert not torch.equal(first.batch.x_support, second.batch.x_support)


def test_query_grid_is_the_dense_grid_for_every_task():
    tasks = sample(k_query=100, query_grid=True)
    grid = dense_grid(100)
    assert grid.shape == (100, 1) and grid[0].item() == -5.0 and grid[-1].item() == 5.0
    assert torch.allclose(grid[1:] - grid[:-1], torch.tensor(10 / 99))
    assert all(torch.equal(x, grid) for x in tasks.batch.x_query)
    torch.testing.assert_close(tasks.target(grid), tasks.batch.y_query)


def test_one_task_keeps_a_task_axis():
    tasks = sample()
    third = tasks.task(2)
    assert third.num_tasks == 1 and third.batch.x_support.shape == (1, 5, 1)
    assert torch.equal(third.batch.y_query[0], tasks.batch.y_query[2])
    assert third.amplitude.item() == tasks.amplitude[2].item()


def test_sampler_returns_task_batches():
    sampler = sinusoid_sampler(5, 100, torch.Generator().manual_seed(0), query_grid=True)
    batch = sampler(6)
    assert isinstance(batch, TaskBatch) and batch.x_support.shape == (6, 5, 1) and batch.x_query.shape == (6, 100, 1)


@pytest.mark.parametrize("name", ["num_tasks", "k_support", "k_query"])
@pytest.mark.parametrize("bad", [0, -2, 2.5, True])
def test_sizes_must_be_positive_integers(name, bad):
    with pytest.raises(ValueError, match=rf"{name} must be a positive integer, got {bad!r}"):
        sample(**{name: bad})


def test_grid_size_must_be_positive():
    with pytest.raises(ValueError, match="num_points must be a positive integer"):
        dense_grid(0)
