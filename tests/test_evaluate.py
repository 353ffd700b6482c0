"""Meta-testing: the 95% confidence interval (Exercise 4.2), adaptation curves and ``evaluate``."""

import math

import numpy as np
import pytest
import torch
from helpers import image_tasks, tiny_conv

from mamlkit.evaluate import adaptation_curve, evaluate, mean_confidence_interval
from mamlkit.functional import forward, get_params
from mamlkit.inner_loop import adapt, init_inner_lrs
from mamlkit.losses import accuracy, cross_entropy
from mamlkit.tasks import TaskBatch

NUM_TASKS = 10


@pytest.fixture(scope="module")
def pool() -> TaskBatch:
    return image_tasks(num_tasks=NUM_TASKS, n_way=3, k_shot=2, n_query=2)


def task_stream(pool: TaskBatch):
    """``sample_tasks(n)`` for ``evaluate``: the next ``n`` tasks of the pool, in order."""
    start = 0

    def sample_tasks(n: int) -> TaskBatch:
        nonlocal start
        batch = TaskBatch(*(t[start:start + n] for t in pool))
        start += n
        return batch

    return sample_tasks


def unadapted_accuracy(model, params, tasks: TaskBatch) -> torch.Tensor:
    """Per-task query accuracy of θ itself, one task at a time."""
    with torch.no_grad():
        return torch.stack([accuracy(forward(model, params, x), y) for x, y in zip(tasks.x_query, tasks.y_query)])


# --- Exercise 4.2: mean ± 1.96·s/√n ------------------------------------------------------------


@pytest.mark.ex4_2
@pytest.mark.parametrize(
    "values",
    [[0.2, 0.4, 0.6, 0.8], [1.0, 0.0], [0.6] * 5 + [0.8] * 3 + [1.0] * 2, list(np.linspace(0.1, 0.9, 600))],
    ids=["four", "two", "ten", "600"],
)
def test_mean_confidence_interval_is_the_mean_and_1_96_s_over_sqrt_n(values):
    accuracies = torch.tensor(values, dtype=torch.float32)  # as evaluate passes them
    array = accuracies.double().numpy()
    n = len(array)
    expected_mean = array.mean()
    expected_ci = 1.96 * array.std(ddof=1) / math.sqrt(n)  # s: the sample standard deviation

    result = mean_confidence_interval(accuracies)

    assert isinstance(result, tuple) and len(result) == 2, f"expected a pair (mean, ci95), got {result!r}"
    mean, ci = result
    assert isinstance(mean, float) and isinstance(ci, float), (
        f"return Python floats (tensor.item()), got {type(mean).__name__} and {type(ci).__name__}"
    )
    assert mean == pytest.approx(expected_mean, rel=1e-9), f"mean of {n} values: expected {expected_mean}, got {mean}"
    with_population_std = 1.96 * array.std(ddof=0) / math.sqrt(n)
    hint = ""
    if ci == pytest.approx(with_population_std, rel=1e-9):
        hint = " That is 1.96·σ/√n with the population std (dividing by n); s divides by n - 1."
    elif ci == pytest.approx(array.std(ddof=1) / math.sqrt(n), rel=1e-9):
        hint = " That is s/√n, the standard error alone; the 95% half-width is 1.96 times it."
    elif ci == pytest.approx(1.96 * array.std(ddof=1), rel=1e-9):
        hint = " That is 1.96·s; the interval is for the mean, so divide by √n."
    assert ci == pytest.approx(expected_ci, rel=1e-9), (
        f"95% half-width of {n} values: expected 1.96·s/√n = {expected_ci:.6g}, got {ci:.6g}.{hint}"
    )


@pytest.mark.ex4_2
def test_identical_values_have_an_interval_of_width_zero():
    mean, ci = mean_confidence_interval(torch.full((50,), 0.75))
    assert mean == pytest.approx(0.75) and ci == 0.0, f"50 times 0.75 should give (0.75, 0.0), got ({mean}, {ci})"


def test_a_confidence_interval_needs_two_values():
    with pytest.raises(ValueError, match="needs at least 2 values, got 1"):
        mean_confidence_interval(torch.tensor([0.5]))


# --- adaptation curves ------------------------------------------------------------------------


@pytest.mark.ex3_2  # test-time steps are first-order
def test_adaptation_curve_has_one_row_per_step_and_row_zero_is_theta_itself(pool):
    model = tiny_conv()
    params = get_params(model)
    curve = adaptation_curve(model, params, pool, cross_entropy, 0.4, max_steps=3)
    assert curve.shape == (4, NUM_TASKS), f"expected (max_steps + 1, tasks) = (4, {NUM_TASKS}), got {tuple(curve.shape)}"
    assert torch.equal(curve[0], unadapted_accuracy(model, params, pool)), (
        "row 0 (no inner step) should be the accuracy of θ itself"
    )
    assert ((0 <= curve) & (curve <= 1)).all()
    assert all(p.grad is None for p in params.values()), "evaluation must not leave gradients in θ"


@pytest.mark.ex2_1
@pytest.mark.ex3_2
def test_adaptation_curve_takes_the_same_steps_as_first_order_adapt(pool):
    model = tiny_conv()
    params = get_params(model)
    curve = adaptation_curve(model, params, pool, cross_entropy, 0.4, max_steps=2, metric=cross_entropy)
    for i in (0, 7):
        task = pool.task(i)
        for steps in range(3):
            phi = adapt(model, params, task.x_support, task.y_support, cross_entropy, 0.4, steps, first_order=True)
            expected = cross_entropy(forward(model, phi, task.x_query), task.y_query)
            assert torch.allclose(curve[steps, i], expected, rtol=1e-10, atol=0), (
                f"task {i} after {steps} steps: query loss {expected.item():.8g} with adapt, "
                f"{curve[steps, i].item():.8g} in the adaptation curve"
            )


@pytest.mark.ex3_2
@pytest.mark.ex3_3
def test_adaptation_curve_accepts_learned_rates(pool):
    model = tiny_conv()
    params = get_params(model)
    fixed = adaptation_curve(model, params, pool, cross_entropy, 0.4, 2, metric=cross_entropy)
    learned = adaptation_curve(model, params, pool, cross_entropy, init_inner_lrs(params, 0.4), 2, metric=cross_entropy)
    torch.testing.assert_close(learned, fixed, rtol=1e-12, atol=0)


# --- evaluate -----------------------------------------------------------------------------------


@pytest.mark.ex3_2
@pytest.mark.ex4_2
def test_evaluate_summarises_every_step_over_all_tasks(pool):
    model = tiny_conv()
    params = get_params(model)
    result = evaluate(model, params, task_stream(pool), cross_entropy, 0.4, inner_steps=2,
                      num_tasks=NUM_TASKS, batch_size=4)
    assert set(result) == {"mean", "ci95", "per_step_mean", "per_step_ci95", "per_task", "num_tasks"}
    assert result["num_tasks"] == NUM_TASKS and len(result["per_task"]) == NUM_TASKS
    assert len(result["per_step_mean"]) == len(result["per_step_ci95"]) == 3, "steps 0, 1 and 2"
    curve = adaptation_curve(model, params, pool, cross_entropy, 0.4, 2)
    assert result["per_task"] == pytest.approx(curve[-1].tolist())
    assert (result["mean"], result["ci95"]) == pytest.approx(mean_confidence_interval(curve[-1]))
    assert result["per_step_mean"] == pytest.approx(curve.mean(dim=1).tolist())
    assert result["per_step_mean"][0] == pytest.approx(unadapted_accuracy(model, params, pool).mean().item())


@pytest.mark.ex3_2
@pytest.mark.ex4_2
def test_evaluate_results_do_not_depend_on_the_batch_size(pool):
    model = tiny_conv()
    params = get_params(model)
    results = [
        evaluate(model, params, task_stream(pool), cross_entropy, 0.4, 2, num_tasks=NUM_TASKS, batch_size=size)
        for size in (3, NUM_TASKS)
    ]
    assert results[0]["per_task"] == pytest.approx(results[1]["per_task"], rel=1e-12)
    assert results[0]["per_step_mean"] == pytest.approx(results[1]["per_step_mean"], rel=1e-12)


@pytest.mark.ex4_2
def test_evaluate_after_zero_steps_is_the_accuracy_of_the_unadapted_model(pool):
    model = tiny_conv()
    params = get_params(model)
    result = evaluate(model, params, task_stream(pool), cross_entropy, 0.4, inner_steps=0, num_tasks=NUM_TASKS)
    expected = unadapted_accuracy(model, params, pool)
    assert result["per_task"] == pytest.approx(expected.tolist()), "with 0 steps, per-task accuracy is θ's own"
    assert result["mean"] == pytest.approx(expected.mean().item())
    assert len(result["per_step_mean"]) == 1


def test_evaluate_needs_two_tasks(pool):
    model = tiny_conv()
    with pytest.raises(ValueError, match="num_tasks must be an integer, at least 2"):
        evaluate(model, get_params(model), task_stream(pool), cross_entropy, 0.4, 1, num_tasks=1)
