"""The pretrained baseline: plain regression on pooled tasks, fine-tuned by MAML's own inner loop."""

import math

import pytest
import torch
from helpers import regression_tasks, tiny_mlp

from mamlkit.data.sinusoid import sample_sinusoid_tasks
from mamlkit.evaluate import adaptation_curve
from mamlkit.functional import forward, get_params
from mamlkit.inner_loop import adapt
from mamlkit.lessons import baseline
from mamlkit.lessons.baseline import choose_inner_lr, fine_tune, pooled_loss, pretrain
from mamlkit.losses import mse


def test_pooled_loss_is_the_loss_over_every_point_of_every_task():
    model, tasks = tiny_mlp(), regression_tasks(num_tasks=3, k_support=5, k_query=4)
    params = get_params(model)
    squared_errors = [
        (forward(model, params, x) - y).pow(2)
        for i in range(3)
        for x, y in ((tasks.x_support[i], tasks.y_support[i]), (tasks.x_query[i], tasks.y_query[i]))
    ]
    expected = torch.cat(squared_errors).mean()
    torch.testing.assert_close(pooled_loss(model, params, tasks, mse), expected)


def test_pretraining_lowers_the_loss_and_updates_theta_in_place():
    model = tiny_mlp(dtype=torch.float32, hidden=16)
    params = get_params(model)
    start = {n: p.detach().clone() for n, p in params.items()}
    generator = torch.Generator().manual_seed(0)
    losses = pretrain(model, params, lambda: sample_sinusoid_tasks(10, 10, 10, generator).batch,
                      mse, iterations=150, lr=1e-2)
    assert len(losses) == 150 and all(math.isfinite(v) for v in losses)
    assert sum(losses[-20:]) / 20 < 0.9 * sum(losses[:20]) / 20, "pretraining should lower the pooled MSE"
    assert any(not torch.equal(start[n], p) for n, p in params.items()), "θ should have moved"


def test_pretrain_rejects_a_bad_iteration_count():
    model = tiny_mlp()
    with pytest.raises(ValueError, match="iterations must be a positive integer"):
        pretrain(model, get_params(model), lambda: regression_tasks(), mse, iterations=0)


@pytest.mark.ex2_1
@pytest.mark.ex3_2
def test_fine_tuning_is_the_inner_loop_of_maml():
    model, task = tiny_mlp(), regression_tasks(num_tasks=1).task(0)
    params = get_params(model)
    tuned = fine_tune(model, params, task.x_support, task.y_support, mse, 0.05, 3)
    reference = adapt(model, params, task.x_support, task.y_support, mse, 0.05, 3)
    for name in params:
        torch.testing.assert_close(tuned[name], reference[name].detach(), rtol=0, atol=1e-12)
        assert not tuned[name].requires_grad
    assert all(p.grad is None for p in params.values()), "fine-tuning must leave θ alone"


@pytest.mark.ex2_1
@pytest.mark.ex3_2
def test_fine_tuning_calls_adapt(monkeypatch):
    calls = []

    def recording_adapt(*args, **kwargs):
        calls.append(kwargs.get("first_order"))
        return adapt(*args, **kwargs)

    monkeypatch.setattr(baseline, "adapt", recording_adapt)
    model, task = tiny_mlp(), regression_tasks(num_tasks=1).task(0)
    fine_tune(model, get_params(model), task.x_support, task.y_support, mse, 0.05, 2)
    assert calls == [True]


@pytest.mark.ex2_1
@pytest.mark.ex3_2
def test_fine_tuning_many_tasks_at_once_takes_the_same_steps():
    model, tasks = tiny_mlp(), regression_tasks(num_tasks=3)
    params = get_params(model)
    curve = adaptation_curve(model, params, tasks, mse, 0.05, 4, metric=mse)
    for i in range(3):
        task = tasks.task(i)
        tuned = fine_tune(model, params, task.x_support, task.y_support, mse, 0.05, 4)
        torch.testing.assert_close(mse(forward(model, tuned, task.x_query), task.y_query), curve[4, i])


def test_choose_inner_lr_takes_the_best_finite_score_and_the_smaller_on_ties():
    scores = {0.1: math.inf, 0.01: 2.0, 0.001: 1.0, 0.003: 1.0, 0.3: math.nan}
    best, seen = choose_inner_lr(lambda lr: scores[lr], list(scores))
    assert best == 0.001 and seen.keys() == scores.keys()
    with pytest.raises(ValueError, match="diverged with every candidate"):
        choose_inner_lr(lambda lr: math.inf, [0.1, 1.0])
    with pytest.raises(ValueError, match="candidates is empty"):
        choose_inner_lr(lambda lr: 1.0, [])
