"""Hessian-vector products, the top Hessian eigenvalue, and the meta-gradient written out."""

import pytest
import torch
from helpers import flat, regression_tasks, tiny_mlp

from mamlkit.functional import forward, get_params
from mamlkit.inner_loop import adapt
from mamlkit.lessons.curvature import hvp, meta_gradient_parts, second_order_share, top_eigenvalue
from mamlkit.losses import mse


def _problem(seed=0):
    model = tiny_mlp(seed=seed, hidden=5)
    params = get_params(model)
    # Small random biases keep every ReLU off its kink, where second derivatives are undefined.
    with torch.no_grad():
        for name, p in params.items():
            if name.endswith("bias"):
                p.uniform_(-0.5, 0.5, generator=torch.Generator().manual_seed(seed + 7))
    task = regression_tasks(num_tasks=1, k_support=6, k_query=7, seed=seed).task(0)

    def support_loss(p):
        return mse(forward(model, p, task.x_support), task.y_support)

    def query_loss(p):
        return mse(forward(model, p, task.x_query), task.y_query)

    return model, params, task, support_loss, query_loss


def _full_hessian(loss_fn, params):
    names, shapes = list(params), [p.shape for p in params.values()]
    sizes = [p.numel() for p in params.values()]

    def flat_loss(theta):
        return loss_fn({n: t.reshape(s) for n, t, s in zip(names, torch.split(theta, sizes), shapes)})

    return torch.autograd.functional.hessian(flat_loss, flat(p.detach() for p in params.values()))


def test_hvp_equals_the_full_hessian_times_the_vector_in_float64():
    _, params, _, support_loss, _ = _problem()
    g = torch.Generator().manual_seed(1)
    v = {n: torch.randn(p.shape, generator=g, dtype=p.dtype) for n, p in params.items()}
    expected = _full_hessian(support_loss, params) @ flat(v.values())
    torch.testing.assert_close(flat(hvp(support_loss, params, v).values()), expected, rtol=1e-10, atol=1e-12)


def test_hvp_is_autograd_grad_with_grad_outputs():
    _, params, _, support_loss, _ = _problem(seed=3)
    v = {n: torch.ones_like(p) for n, p in params.items()}
    leaves = list(params.values())
    grads = torch.autograd.grad(support_loss(params), leaves, create_graph=True)
    expected = torch.autograd.grad(grads, leaves, grad_outputs=list(v.values()))
    torch.testing.assert_close(flat(hvp(support_loss, params, v).values()), flat(expected), rtol=1e-12, atol=1e-14)


def test_hvp_rejects_a_vector_that_does_not_match():
    _, params, _, support_loss, _ = _problem()
    with pytest.raises(ValueError, match="same names"):
        hvp(support_loss, params, {"x": torch.zeros(1)})
    bad = {n: torch.zeros(3) for n in params}
    with pytest.raises(ValueError, match="has shape"):
        hvp(support_loss, params, bad)


def test_top_eigenvalue_matches_eigvalsh_on_a_small_model():
    _, params, _, support_loss, _ = _problem(seed=2)
    eigenvalues = torch.linalg.eigvalsh(_full_hessian(support_loss, params))
    expected = eigenvalues[eigenvalues.abs().argmax()].item()
    estimate = top_eigenvalue(support_loss, params, iterations=500, generator=torch.Generator().manual_seed(0), tol=1e-12)
    assert estimate == pytest.approx(expected, rel=1e-6)


def test_top_eigenvalue_of_a_quadratic_is_its_largest_curvature():
    a = torch.diag(torch.tensor([0.5, 3.0, -1.0], dtype=torch.float64))

    def loss(p):
        return 0.5 * p["w"] @ a @ p["w"]

    estimate = top_eigenvalue(loss, {"w": torch.ones(3, dtype=torch.float64)}, iterations=200,
                              generator=torch.Generator().manual_seed(0), tol=1e-14)
    assert estimate == pytest.approx(3.0, rel=1e-9)
    with pytest.raises(ValueError, match="iterations"):
        top_eigenvalue(loss, {"w": torch.ones(3, dtype=torch.float64)}, iterations=0)


@pytest.mark.ex2_1
def test_one_step_meta_gradient_is_query_gradient_minus_alpha_hessian_times_it():
    model, params, task, support_loss, query_loss = _problem(seed=4)
    inner_lr = 0.05
    parts = meta_gradient_parts(support_loss, query_loss, params, inner_lr)
    # The oracle: autograd through the library's inner loop.
    adapted = adapt(model, params, task.x_support, task.y_support, mse, inner_lr, 1)
    expected = torch.autograd.grad(query_loss(adapted), list(params.values()))
    torch.testing.assert_close(flat(parts["meta_grad"].values()), flat(expected), rtol=1e-10, atol=1e-12)
    first_order = adapt(model, params, task.x_support, task.y_support, mse, inner_lr, 1, first_order=True)
    expected_fo = torch.autograd.grad(query_loss(first_order), list(params.values()))
    torch.testing.assert_close(flat(parts["query_grad"].values()), flat(expected_fo), rtol=1e-10, atol=1e-12)
    assert parts["ratio"] > 0


def test_the_correction_vanishes_with_inner_lr_and_grows_linearly_with_it():
    _, params, _, support_loss, query_loss = _problem(seed=5)
    assert meta_gradient_parts(support_loss, query_loss, params, 0.0)["ratio"] == 0.0
    # At α → 0, φ → θ, so the ratio is α‖H g‖/‖g‖ to first order: doubling α doubles it.
    small = meta_gradient_parts(support_loss, query_loss, params, 1e-6)["ratio"]
    double = meta_gradient_parts(support_loss, query_loss, params, 2e-6)["ratio"]
    assert double / small == pytest.approx(2.0, rel=1e-4)


@pytest.mark.ex2_1
def test_second_order_share_of_one_step_is_the_correction_ratio_and_zero_at_alpha_zero():
    model, params, task, support_loss, query_loss = _problem(seed=6)
    share = second_order_share(model, params, *task, mse, 0.05, 1)
    assert share == pytest.approx(meta_gradient_parts(support_loss, query_loss, params, 0.05)["ratio"], rel=1e-9)
    assert second_order_share(model, params, *task, mse, 0.0, 3) == 0.0
    assert second_order_share(model, params, *task, mse, 0.05, 3) > 0
