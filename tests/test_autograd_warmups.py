"""Exercises 1.1 and 1.2 of notebook 01: gradients with backward() and with torch.autograd.grad."""

import pytest
import torch

from mamlkit.autograd_warmups import product_gradients, q_gradients


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
