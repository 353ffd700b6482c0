"""Exercises 1.1 and 1.2 of notebook 01: gradients with backward() and with torch.autograd.grad."""

import pytest
import torch

from mamlkit.lessons.autograd_warmups import one_step_inner_lr, product_gradients, q_gradients, two_step_factor


def leaves(*values, dtype=torch.float64):
    return [torch.tensor(v, dtype=dtype, requires_grad=True) for v in values]


# --- Exercise 1.1 ---------------------------------------------------------------------------


@pytest.mark.ex1_1
def test_q_gradients_fills_a_grad_and_b_grad_with_9a2_and_minus_2b():
    a, b = leaves([2.0, 3.0], [6.0, 4.0], dtype=torch.float32)
    grad_a, grad_b = q_gradients(a, b)
    assert a.grad is not None and b.grad is not None, (
        "a.grad or b.grad is still None: q_gradients should call backward on Q, which stores "
        "dQ/da in a.grad and dQ/db in b.grad"
    )
    assert torch.equal(a.grad, torch.tensor([36.0, 81.0])), (
        f"a.grad should be 9a² = [36, 81], got {a.grad.tolist()}; is Q = 3a³ − b², and is "
        "gradient= a tensor of ones with Q's shape?"
    )
    assert torch.equal(b.grad, torch.tensor([-12.0, -8.0])), f"b.grad should be -2b = [-12, -8], got {b.grad.tolist()}"
    assert torch.equal(grad_a, a.grad) and torch.equal(grad_b, b.grad), (
        f"q_gradients should return (a.grad, b.grad), got ({grad_a}, {grad_b})"
    )


@pytest.mark.ex1_1
@pytest.mark.parametrize("shape", [(), (5,), (2, 3)])
def test_q_gradients_is_elementwise_for_any_shape(shape):
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(shape, generator=generator, dtype=torch.float64).requires_grad_()
    b = torch.randn(shape, generator=generator, dtype=torch.float64).requires_grad_()
    grad_a, grad_b = q_gradients(a, b)
    assert grad_a.shape == a.shape and grad_b.shape == b.shape, (
        f"the gradients should have the shapes of a and b, {tuple(a.shape)}; got {tuple(grad_a.shape)} "
        f"and {tuple(grad_b.shape)}"
    )
    torch.testing.assert_close(grad_a, 9 * a.detach() ** 2, msg=lambda m: f"dQ/da should be 9a² elementwise.\n{m}")
    torch.testing.assert_close(grad_b, -2 * b.detach(), msg=lambda m: f"dQ/db should be -2b elementwise.\n{m}")


@pytest.mark.ex1_1
def test_q_gradients_leaves_the_inputs_unchanged():
    a, b = leaves([2.0, 3.0], [6.0, 4.0])
    q_gradients(a, b)
    assert a.tolist() == [2.0, 3.0] and b.tolist() == [6.0, 4.0], "q_gradients must not modify a or b"


def test_q_gradients_refuses_a_grad_that_is_already_set():
    a, b = leaves([2.0, 3.0], [6.0, 4.0])
    a.grad = torch.ones(2, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"a.grad is already set; backward adds into .grad"):
        q_gradients(a, b)


def test_q_gradients_needs_leaves_that_require_grad():
    (b,) = leaves([6.0, 4.0])
    with pytest.raises(ValueError, match="a does not require grad"):
        q_gradients(torch.tensor([2.0, 3.0], dtype=torch.float64), b)
    (a,) = leaves([2.0, 3.0])
    with pytest.raises(ValueError, match="b is not a leaf tensor"):
        q_gradients(a, b * 1)
    with pytest.raises(TypeError, match="a must be a torch.Tensor, got list"):
        q_gradients([2.0, 3.0], b)
    with pytest.raises(ValueError, match=r"the same shape, got \(2,\) and \(3,\)"):
        q_gradients(a, torch.zeros(3, requires_grad=True))


# --- Exercise 1.2 ---------------------------------------------------------------------------


@pytest.mark.ex1_2
def test_product_gradients_returns_y_and_x():
    x, y = leaves(2.0, 3.0, dtype=torch.float32)
    result = product_gradients(x, y)
    assert isinstance(result, tuple) and len(result) == 2, (
        f"product_gradients should return a pair (dx, dy), got {result!r}"
    )
    dx, dy = result
    assert dx.item() == 3.0 and dy.item() == 2.0, (
        f"d(xy)/dx = y = 3 and d(xy)/dy = x = 2, got ({dx.item()}, {dy.item()}); "
        "torch.autograd.grad returns the gradients in the order of its inputs"
    )


@pytest.mark.ex1_2
@pytest.mark.parametrize("x_value, y_value", [(-1.5, 4.0), (0.0, 7.0), (2.5, -0.5)])
def test_product_gradients_at_other_points(x_value, y_value):
    x, y = leaves(x_value, y_value)
    dx, dy = product_gradients(x, y)
    assert (dx.item(), dy.item()) == (y_value, x_value), (
        f"at x={x_value}, y={y_value}: expected (dx, dy) = ({y_value}, {x_value}), got ({dx.item()}, {dy.item()})"
    )


@pytest.mark.ex1_2
def test_product_gradients_leaves_grad_alone():
    x, y = leaves(2.0, 3.0)
    product_gradients(x, y)
    assert x.grad is None and y.grad is None, (
        f"x.grad and y.grad should still be None, got {x.grad} and {y.grad}: use torch.autograd.grad, "
        "which returns the gradients, not backward, which stores them in .grad"
    )


@pytest.mark.ex1_2
def test_product_gradients_works_on_tensors_computed_from_leaves():
    # autograd.grad differentiates with respect to any tensor in the graph, not only leaves.
    (t,) = leaves(2.0)
    dx, dy = product_gradients(t * 1.5, t + 1.0)  # x = 3, y = 3
    assert (dx.item(), dy.item()) == (3.0, 3.0), f"expected (3, 3), got ({dx.item()}, {dy.item()})"


def test_product_gradients_needs_scalars_that_require_grad():
    (y,) = leaves(3.0)
    with pytest.raises(ValueError, match="x does not require grad"):
        product_gradients(torch.tensor(2.0), y)
    with pytest.raises(ValueError, match=r"must be scalars \(0-dimensional tensors\), got shapes \(2,\) and \(\)"):
        product_gradients(torch.zeros(2, requires_grad=True), y)


# --- Exercises 1.3 and 1.4: the closed forms of notebook 01, against autograd -----------------


def quadratic_task(curvature: float):
    """A support loss c/2·(θ − 2)² (curvature c, minimum at 2) and a query loss (θ − 3)²."""

    def support_loss(theta):
        return 0.5 * curvature * (theta - 2.0) ** 2

    def query_loss(phi):
        return (phi - 3.0) ** 2

    return support_loss, query_loss


def inner_step(support_loss, theta, inner_lr):
    (grad,) = torch.autograd.grad(support_loss(theta), theta, create_graph=True)
    return theta - inner_lr * grad


@pytest.mark.ex1_3
@pytest.mark.parametrize("inner_lr, curvature", [(0.1, 5.0), (0.3, 2.0), (0.0, 4.0), (0.5, 5.0)])
def test_two_step_factor_scales_the_query_gradient_after_two_steps(inner_lr, curvature):
    support_loss, query_loss = quadratic_task(curvature)
    theta = torch.tensor(0.5, dtype=torch.float64, requires_grad=True)
    phi_2 = inner_step(support_loss, inner_step(support_loss, theta, inner_lr), inner_lr)
    (meta_grad,) = torch.autograd.grad(query_loss(phi_2), theta)
    query_grad = 2 * (phi_2.item() - 3.0)  # L_Q'(φ₂)
    expected = meta_grad.item() / query_grad  # what autograd says the factor is
    factor = two_step_factor(inner_lr, curvature)
    assert isinstance(factor, float), f"two_step_factor should return a Python float, got {type(factor).__name__}"
    assert factor == pytest.approx(expected, abs=1e-12), (
        f"with α = {inner_lr} and L_S'' = {curvature}, autograd's meta-gradient is {expected:.6g} × L_Q'(φ₂), "
        f"but two_step_factor returned {factor:.6g}; each step multiplies dφ/dθ by (1 − α L_S''), and "
        "there are two steps"
    )


def test_two_step_factor_refuses_bad_input():
    with pytest.raises(ValueError, match="inner_lr must be >= 0, got -0.1"):
        two_step_factor(-0.1, 5.0)
    with pytest.raises(TypeError, match="curvature must be a Python number, got Tensor"):
        two_step_factor(0.1, torch.tensor(5.0))
    with pytest.raises(ValueError, match="inner_lr must be finite"):
        two_step_factor(float("nan"), 5.0)


@pytest.mark.ex1_4
@pytest.mark.parametrize("curvature", [5.0, 0.5, 2.0])
def test_one_step_inner_lr_lands_on_the_minimum_from_any_theta(curvature):
    support_loss, query_loss = quadratic_task(curvature)
    inner_lr = one_step_inner_lr(curvature)
    assert isinstance(inner_lr, float), f"one_step_inner_lr should return a Python float, got {type(inner_lr).__name__}"
    for start in (-3.0, 0.5, 7.0):
        theta = torch.tensor(start, dtype=torch.float64, requires_grad=True)
        phi = inner_step(support_loss, theta, inner_lr)
        assert phi.item() == pytest.approx(2.0, abs=1e-12), (
            f"with L_S'' = {curvature} and α = one_step_inner_lr(...) = {inner_lr:.6g}, one step from θ = {start} "
            f"should land on the minimum θ* = 2, but reached φ = {phi.item():.6g}; which α makes "
            "φ = θ − α·L_S''·(θ − θ*) equal θ* for every θ?"
        )
        (meta_grad,) = torch.autograd.grad(query_loss(phi), theta)
        assert abs(meta_grad.item()) < 1e-12, (
            f"at that α the meta-gradient should vanish for every θ, got {meta_grad.item():.3g} at θ = {start}"
        )


def test_one_step_inner_lr_needs_a_positive_curvature():
    for bad in (0.0, -1.0):
        with pytest.raises(ValueError, match="curvature must be positive"):
            one_step_inner_lr(bad)
    with pytest.raises(TypeError, match="curvature must be a Python number, got str"):
        one_step_inner_lr("5")
