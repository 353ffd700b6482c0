"""The inner loop and the meta-gradient, checked against float64 finite differences."""

import pytest
import torch
from torch import nn

from helpers import flat, image_tasks, regression_tasks, relative_error, tiny_conv, tiny_mlp
from mamlkit.functional import forward, get_params
from mamlkit.inner_loop import adapt, init_inner_lrs
from mamlkit.losses import cross_entropy, mse
from mamlkit.outer_loop import meta_loss


def as_function_of_flat_theta(model, loss_fn, tasks, inner_lr, inner_steps, first_order=False):
    """θ (flattened) ↦ mean query loss after adaptation: the function MAML differentiates."""
    params = get_params(model)
    names, shapes = list(params), [p.shape for p in params.values()]
    sizes = [p.numel() for p in params.values()]

    def f(theta_flat):
        pieces = torch.split(theta_flat, sizes)
        theta = {n: piece.reshape(s) for n, piece, s in zip(names, pieces, shapes)}
        return meta_loss(model, theta, tasks, loss_fn, inner_lr, inner_steps, first_order)[0]

    return f, flat(params.values()).detach().clone().requires_grad_(True)


CASES = {
    "mlp": (lambda: tiny_mlp(), mse, lambda: regression_tasks(), 0.05),
    "conv_bn": (lambda: tiny_conv(), cross_entropy, lambda: image_tasks(), 0.4),
}


@pytest.mark.parametrize("inner_steps", [1, 3])
@pytest.mark.parametrize("case", sorted(CASES))
def test_meta_gradient_matches_finite_differences(case, inner_steps):
    make_model, loss_fn, make_tasks, inner_lr = CASES[case]
    f, theta = as_function_of_flat_theta(make_model(), loss_fn, make_tasks(), inner_lr, inner_steps)
    assert torch.autograd.gradcheck(f, (theta,), eps=1e-6, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("case", sorted(CASES))
def test_first_order_differs_from_second_order(case):
    make_model, loss_fn, make_tasks, inner_lr = CASES[case]
    model, tasks = make_model(), make_tasks()
    f2, theta = as_function_of_flat_theta(model, loss_fn, tasks, inner_lr, 2)
    f1, _ = as_function_of_flat_theta(model, loss_fn, tasks, inner_lr, 2, first_order=True)
    (second,) = torch.autograd.grad(f2(theta), theta)
    (first,) = torch.autograd.grad(f1(theta), theta)
    # Same loss value (the adapted parameters are the same numbers) ...
    assert torch.allclose(f1(theta), f2(theta))
    # ... but a different gradient, because the inner-loop Hessian is not zero.
    assert (first - second).norm() / second.norm() > 1e-3


def test_first_order_equals_the_gradient_with_the_inner_graph_cut():
    model, tasks = tiny_conv(), image_tasks(num_tasks=1)
    task = tasks.task(0)
    theta = get_params(model)

    # By hand: inner gradients computed as constants, φ = θ − α·g with g detached.
    phi = dict(theta)
    for _ in range(2):
        loss = cross_entropy(forward(model, phi, task.x_support), task.y_support)
        grads = torch.autograd.grad(loss, list(phi.values()))
        phi = {n: p - 0.4 * g.detach() for (n, p), g in zip(phi.items(), grads)}
    by_hand = torch.autograd.grad(cross_entropy(forward(model, phi, task.x_query), task.y_query),
                                  list(theta.values()))

    adapted = adapt(model, theta, task.x_support, task.y_support, cross_entropy, 0.4, 2, first_order=True)
    library = torch.autograd.grad(cross_entropy(forward(model, adapted, task.x_query), task.y_query),
                                  list(theta.values()))
    assert relative_error(library, by_hand) < 1e-12


@pytest.mark.parametrize("case", sorted(CASES))
def test_zero_inner_lr_gives_the_plain_query_gradient(case):
    make_model, loss_fn, make_tasks, _ = CASES[case]
    model, tasks = make_model(), make_tasks()
    theta = get_params(model)
    loss, _ = meta_loss(model, theta, tasks, loss_fn, inner_lr=0.0, inner_steps=3)
    maml = torch.autograd.grad(loss, list(theta.values()))
    plain_loss = torch.stack([loss_fn(forward(model, theta, x), y)
                              for x, y in zip(tasks.x_query, tasks.y_query)]).mean()
    plain = torch.autograd.grad(plain_loss, list(theta.values()))
    assert relative_error(maml, plain) < 1e-12


def test_linear_model_one_step_matches_closed_form():
    """For f(x) = Xw + b with MSE, one step and its meta-gradient have closed forms."""
    g = torch.Generator().manual_seed(0)
    d, n, alpha = 3, 6, 0.1
    model = nn.Linear(d, 1).double()
    theta = get_params(model)
    X, y = torch.randn(n, d, generator=g, dtype=torch.float64), torch.randn(n, 1, generator=g, dtype=torch.float64)
    Xq, yq = torch.randn(4, d, generator=g, dtype=torch.float64), torch.randn(4, 1, generator=g, dtype=torch.float64)
    w, b = theta["weight"].detach().reshape(d, 1), theta["bias"].detach()

    residual = X @ w + b - y
    w_expected = w - alpha * 2 / n * X.T @ residual
    b_expected = b - alpha * 2 / n * residual.sum(0)
    adapted = adapt(model, theta, X, y, mse, alpha, 1)
    assert torch.allclose(adapted["weight"].reshape(d, 1), w_expected, atol=1e-12)
    assert torch.allclose(adapted["bias"], b_expected, atol=1e-12)

    # Meta-gradient: d φ / d θ = I − α·H with H the Hessian of the support loss in (w, b).
    A = torch.cat([X, torch.ones(n, 1, dtype=torch.float64)], dim=1)
    Aq = torch.cat([Xq, torch.ones(4, 1, dtype=torch.float64)], dim=1)
    phi = torch.cat([w_expected, b_expected.reshape(1, 1)])
    grad_query_at_phi = 2 / 4 * Aq.T @ (Aq @ phi - yq)
    jacobian = torch.eye(d + 1, dtype=torch.float64) - alpha * 2 / n * A.T @ A
    expected = (jacobian.T @ grad_query_at_phi).reshape(-1)
    loss = mse(forward(model, adapted, Xq), yq)
    got = torch.cat([t.reshape(-1) for t in torch.autograd.grad(loss, [theta["weight"], theta["bias"]])])
    assert torch.allclose(got, expected, atol=1e-12)


@pytest.mark.parametrize("first_order", [False, True])
def test_learned_inner_lrs_receive_gradients(first_order):
    model, tasks = tiny_conv(), image_tasks()
    theta = get_params(model)
    lrs = init_inner_lrs(theta, 0.4)
    loss, _ = meta_loss(model, theta, tasks, cross_entropy, lrs, 1, first_order)
    grads = torch.autograd.grad(loss, list(lrs.values()))
    assert all(g.abs() > 0 for g in grads), "every learned learning rate should get a gradient"


def test_learned_rates_equal_to_a_fixed_rate_give_the_same_step():
    model, tasks = tiny_mlp(), regression_tasks()
    theta = get_params(model)
    fixed = adapt(model, theta, tasks.x_support[0], tasks.y_support[0], mse, 0.05, 2)
    learned = adapt(model, theta, tasks.x_support[0], tasks.y_support[0], mse, init_inner_lrs(theta, 0.05), 2)
    assert relative_error(learned.values(), fixed.values()) < 1e-14


def test_the_inner_loop_does_not_touch_theta():
    model, tasks = tiny_conv(), image_tasks()
    theta = get_params(model)
    before = {n: p.detach().clone() for n, p in theta.items()}
    adapt(model, theta, tasks.x_support[0], tasks.y_support[0], cross_entropy, 0.4, 3)
    assert all(torch.equal(theta[n], before[n]) for n in theta)


# --- bad input -----------------------------------------------------------------------------

def test_negative_inner_steps_is_rejected():
    model, tasks = tiny_mlp(), regression_tasks()
    with pytest.raises(ValueError, match="inner_steps must be a non-negative integer, got -1"):
        adapt(model, get_params(model), tasks.x_support[0], tasks.y_support[0], mse, 0.1, -1)


def test_negative_inner_lr_is_rejected():
    model, tasks = tiny_mlp(), regression_tasks()
    with pytest.raises(ValueError, match="inner_lr must be a non-negative number"):
        adapt(model, get_params(model), tasks.x_support[0], tasks.y_support[0], mse, -0.1, 1)


def test_support_inputs_and_labels_of_different_lengths_are_rejected():
    model, tasks = tiny_mlp(), regression_tasks()
    with pytest.raises(ValueError, match="x_support has 5 examples but y_support has 4"):
        adapt(model, get_params(model), tasks.x_support[0], tasks.y_support[0][:4], mse, 0.1, 1)


def test_params_that_do_not_match_the_model_are_rejected():
    model, tasks = tiny_mlp(), regression_tasks()
    params = get_params(model)
    del params["layers.0.bias"]
    with pytest.raises(ValueError, match=r"missing \['layers.0.bias'\]"):
        adapt(model, params, tasks.x_support[0], tasks.y_support[0], mse, 0.1, 1)
    params = get_params(model)
    params["layers.0.weight"] = torch.zeros(3, 1, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"params\['layers.0.weight'\] has shape \(3, 1\)"):
        adapt(model, params, tasks.x_support[0], tasks.y_support[0], mse, 0.1, 1)


def test_labels_out_of_range_are_rejected_in_the_inner_loop():
    model, tasks = tiny_conv(n_way=3), image_tasks(n_way=3)
    with pytest.raises(ValueError, match=r"labels must lie in 0\.\.2"):
        adapt(model, get_params(model), tasks.x_support[0], tasks.y_support[0] + 1, cross_entropy, 0.4, 1)
