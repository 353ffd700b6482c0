"""The 2-D quadratic toy: closed-form θ_pretrain and θ_MAML, checked with autograd."""

import pytest
import torch

from mamlkit.lessons.quadratic_toy import (
    QuadraticTasks,
    example_tasks,
    maml_loss,
    maml_solution,
    one_step,
    pretrain_loss,
    pretrain_solution,
    taylor_terms,
)


def _grad(fn, theta):
    theta = theta.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(fn(theta), theta)
    return g


def test_pretrain_solution_is_where_the_mean_loss_has_zero_gradient():
    tasks = example_tasks()
    theta = pretrain_solution(tasks)
    torch.testing.assert_close(_grad(lambda t: pretrain_loss(tasks, t), theta), torch.zeros(2, dtype=torch.float64),
                               atol=1e-12, rtol=0)


@pytest.mark.parametrize("inner_lr", [0.05, 0.2, 0.35])
def test_maml_solution_is_where_the_post_step_loss_has_zero_meta_gradient(inner_lr):
    tasks = example_tasks()
    theta = maml_solution(tasks, inner_lr)
    torch.testing.assert_close(_grad(lambda t: maml_loss(tasks, t, inner_lr), theta),
                               torch.zeros(2, dtype=torch.float64), atol=1e-12, rtol=0)
    # ... and it is a minimum: every other point, θ_pretrain included, is worse after one step.
    assert maml_loss(tasks, theta, inner_lr) < maml_loss(tasks, pretrain_solution(tasks), inner_lr)


def test_inner_lr_zero_gives_pretraining_back_and_a_positive_one_moves_theta():
    tasks = example_tasks()
    torch.testing.assert_close(maml_solution(tasks, 0.0), pretrain_solution(tasks), atol=1e-14, rtol=0)
    assert (maml_solution(tasks, 0.2) - pretrain_solution(tasks)).norm() > 0.1


def test_one_step_is_a_gradient_step_on_each_task():
    tasks = example_tasks()
    theta = torch.tensor([0.3, -0.7], dtype=torch.float64)
    for i in range(3):
        single = QuadraticTasks(tasks.centres[i:i + 1], tasks.curvatures[i:i + 1])
        expected = theta - 0.1 * _grad(lambda t, task=single: task.losses(t).sum(), theta)
        torch.testing.assert_close(one_step(tasks, theta, 0.1)[i], expected)


def test_taylor_remainder_is_exactly_half_alpha_squared_gs_aq_gs():
    support = example_tasks()
    query = QuadraticTasks(support.centres + torch.tensor([0.4, -0.3], dtype=torch.float64), support.curvatures * 1.3)
    theta = torch.tensor([1.0, 0.5], dtype=torch.float64)
    for inner_lr in (0.01, 0.1):
        terms = taylor_terms(support, query, theta, inner_lr)
        torch.testing.assert_close(terms["exact"], terms["first_order"] + terms["remainder"], rtol=1e-12, atol=1e-12)
    error = {a: (lambda t: t["exact"] - t["first_order"])(taylor_terms(support, query, theta, a)) for a in (1e-2, 1e-3)}
    torch.testing.assert_close(error[1e-3] * 100, error[1e-2], rtol=1e-9, atol=0)  # O(α²): 10× smaller α, 100× smaller error


def test_bad_inputs_are_refused():
    tasks = example_tasks()
    with pytest.raises(ValueError, match="inner_lr"):
        maml_solution(tasks, -0.1)
    with pytest.raises(ValueError, match="curvatures"):
        pretrain_solution(QuadraticTasks(tasks.centres, tasks.curvatures[:, :1]))
    one = QuadraticTasks(torch.zeros(1, 2, dtype=torch.float64), torch.eye(2, dtype=torch.float64)[None])
    with pytest.raises(ValueError, match="singular"):
        maml_solution(one, 1.0)  # α = 1/λ: one step lands on the optimum from anywhere
