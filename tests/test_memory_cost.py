"""Graph memory of a meta-step: linear in inner steps for second order, flat for first order."""

import pytest
import torch
from helpers import regression_tasks, tiny_mlp

from mamlkit.functional import get_params
from mamlkit.lessons.memory_cost import graph_memory, meta_step_cost
from mamlkit.losses import mse


def test_graph_memory_counts_the_tensors_saved_for_backward_once_per_storage():
    x = torch.ones(1000, dtype=torch.float64, requires_grad=True)

    def run():
        y = x * x  # saves x (twice: once per operand), 8000 bytes, counted once
        return torch.autograd.grad(y.sum(), x)

    assert graph_memory(run) == 8000

    def nothing_saved():
        return (x + 1).sum()  # addition saves no tensor

    assert graph_memory(nothing_saved) == 0


@pytest.mark.ex3_1
def test_second_order_memory_grows_linearly_with_inner_steps_and_first_order_stays_flat():
    model, tasks = tiny_mlp(hidden=16), regression_tasks(num_tasks=3, k_support=10, k_query=10)
    params = get_params(model)
    second = [r["graph_bytes"] for r in meta_step_cost(model, params, tasks, mse, 0.01, [1, 2, 3, 4], repeats=1)]
    first = [r["graph_bytes"] for r in meta_step_cost(model, params, tasks, mse, 0.01, [1, 2, 3, 4],
                                                      first_order=True, repeats=1)]
    increments = [b - a for a, b in zip(second, second[1:])]
    assert increments[0] > 0 and increments == [increments[0]] * 3, f"not linear: {second}"
    assert first == [first[0]] * 4, f"first order should not grow: {first}"
    assert second[0] > first[0], "even one second-order step keeps more than first order"


def test_meta_step_cost_rejects_bad_arguments():
    model, tasks = tiny_mlp(), regression_tasks()
    with pytest.raises(ValueError, match="inner_steps_list"):
        meta_step_cost(model, get_params(model), tasks, mse, 0.01, [0])
    with pytest.raises(ValueError, match="repeats"):
        meta_step_cost(model, get_params(model), tasks, mse, 0.01, [1], repeats=0)
