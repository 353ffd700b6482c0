"""Autograd warm-ups: the four exercises of notebook 01, as functions the tests can check.

- Exercise 1.1, :func:`q_gradients`: the gradients of :math:`Q = 3a^3 - b^2` with ``backward()``,
  read from ``.grad``;
- Exercise 1.2, :func:`product_gradients`: the gradients of :math:`xy` as *return values*, with
  ``torch.autograd.grad``, leaving ``.grad`` alone;
- Exercise 1.3, :func:`two_step_factor`: the factor by which two inner steps scale the query
  gradient, when the support loss is quadratic;
- Exercise 1.4, :func:`one_step_inner_lr`: the step size that lands on the support loss's
  minimum in one step, from any :math:`\\theta`.

Notebook 01 (``notebooks/01_autograd_basics.ipynb``) explains the tools on other functions,
then calls these four and checks them against the derivatives worked out by hand. The tests are
in ``tests/test_autograd_warmups.py``; run them with ``pytest -m "ex1_1 or ex1_2 or ex1_3 or ex1_4"``.
"""

from __future__ import annotations

import math

import torch

__all__ = ["one_step_inner_lr", "product_gradients", "q_gradients", "two_step_factor"]


def _check_tracked(t: object, name: str, *, leaf: bool) -> None:
    """Raise a TypeError or ValueError, naming ``name``, unless ``t`` is a tensor autograd tracks."""
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if not t.requires_grad:
        raise ValueError(
            f"{name} does not require grad, so autograd cannot differentiate with respect to it; "
            f"create it with requires_grad=True, e.g. torch.tensor(2.0, requires_grad=True)"
        )
    if leaf and not t.is_leaf:
        raise ValueError(
            f"{name} is not a leaf tensor (it was computed from other tensors), and only leaves "
            f"get a .grad; pass a tensor created with requires_grad=True"
        )


def q_gradients(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    r"""The gradients of :math:`Q = 3a^3 - b^2` (elementwise) with respect to ``a`` and ``b``.

    Compute ``Q`` from ``a`` and ``b``, call ``backward`` on it, and return what autograd stored
    in ``a.grad`` and ``b.grad``. ``Q`` is a vector, so ``backward`` needs its ``gradient=``
    argument: a tensor ``v`` of ``Q``'s shape, for the vector–Jacobian product
    :math:`v^\top \partial Q / \partial a`. With ``v`` all ones this is the gradient of
    ``Q.sum()`` which, since :math:`Q_i` depends only on :math:`a_i` and :math:`b_i`, is the
    elementwise derivative: :math:`9a^2` and :math:`-2b`.

    Args:
        a, b: leaf tensors of the same shape, created with ``requires_grad=True``, whose
            ``.grad`` is still ``None`` (``backward`` *adds* into ``.grad``).

    Returns:
        ``(a.grad, b.grad)``, the tensors that ``backward`` filled in.
    """
    _check_tracked(a, "a", leaf=True)
    _check_tracked(b, "b", leaf=True)
    if a.shape != b.shape:
        raise ValueError(f"a and b must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    for t, name in ((a, "a"), (b, "b")):
        if t.grad is not None:
            raise ValueError(
                f"{name}.grad is already set; backward adds into .grad, so the result would be "
                f"the sum of two gradients. Set {name}.grad = None first"
            )
    ### BEGIN SOLUTION (Exercise 1.1)
    Q = 3 * a**3 - b**2
    Q.backward(gradient=torch.ones_like(Q))
    return a.grad, b.grad
    ### END SOLUTION


def product_gradients(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    r"""The partial derivatives of :math:`f(x, y) = xy`, returned by one ``torch.autograd.grad`` call.

    By hand, :math:`\partial f / \partial x = y` and :math:`\partial f / \partial y = x`.
    ``torch.autograd.grad(output, inputs)`` returns one gradient per input, in the order of
    ``inputs``, and leaves ``x.grad`` and ``y.grad`` untouched (still ``None``): the form
    MAML's inner loop uses. ``backward`` would put the gradients in ``.grad`` instead.

    Args:
        x, y: scalar (0-dimensional) tensors created with ``requires_grad=True``.

    Returns:
        ``(dx, dy)``: the derivative with respect to ``x``, then with respect to ``y``.
    """
    _check_tracked(x, "x", leaf=False)
    _check_tracked(y, "y", leaf=False)
    if x.dim() != 0 or y.dim() != 0:
        raise ValueError(
            f"x and y must be scalars (0-dimensional tensors), got shapes {tuple(x.shape)} and "
            f"{tuple(y.shape)}; for a non-scalar output autograd.grad would need grad_outputs="
        )
    ### BEGIN SOLUTION (Exercise 1.2)
    dx, dy = torch.autograd.grad(x * y, (x, y))
    return dx, dy
    ### END SOLUTION


def _check_number(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a Python number, got {type(value).__name__}")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    return float(value)


def two_step_factor(inner_lr: float, curvature: float) -> float:
    r"""The factor :math:`f` in :math:`\frac{d}{d\theta} L_Q(\phi_2) = f \cdot L_Q'(\phi_2)` after two inner steps.

    The support loss has a second derivative :math:`L_S''` that is the same for every
    :math:`\theta` (a quadratic, like the mean squared error of :math:`\hat y = \theta x`). Two
    inner steps, :math:`\phi_1 = \theta - \alpha L_S'(\theta)` and
    :math:`\phi_2 = \phi_1 - \alpha L_S'(\phi_1)`, make the meta-gradient a multiple of the query
    gradient at :math:`\phi_2`. Return that multiple in closed form, from ``inner_lr`` and
    ``curvature`` alone (notebook 01, section 6, derives the one-step case).

    Args:
        inner_lr: α, the inner step size (a number, ``>= 0``).
        curvature: :math:`L_S''`, the support loss's second derivative (a number).

    Returns:
        The factor, a Python float.

    Raises:
        TypeError: an argument is not a Python number.
        ValueError: an argument is not finite, or ``inner_lr`` is negative.
    """
    inner_lr = _check_number(inner_lr, "inner_lr")
    curvature = _check_number(curvature, "curvature")
    if inner_lr < 0:
        raise ValueError(f"inner_lr must be >= 0, got {inner_lr}")
    ### BEGIN SOLUTION (Exercise 1.3)
    # dφ₁/dθ = 1 − α L_S'', and the second step multiplies by the same number again:
    # d/dθ L_Q(φ₂) = (1 − α L_S'')² L_Q'(φ₂), the chain rule through two inner steps.
    return (1.0 - inner_lr * curvature) ** 2
    ### END SOLUTION


def one_step_inner_lr(curvature: float) -> float:
    r"""The inner step size α with which one step reaches the support loss's minimum, from any θ.

    The support loss is a quadratic with curvature :math:`L_S'' > 0`. Find the α for which
    one step :math:`\phi = \theta - \alpha L_S'(\theta)` lands exactly on its minimum, whatever
    :math:`\theta` it starts from, and return it in closed form (notebook 01, section 6, asks
    what the meta-gradient is at that α).

    Args:
        curvature: :math:`L_S''`, a positive number.

    Returns:
        α, a Python float.

    Raises:
        TypeError: ``curvature`` is not a Python number.
        ValueError: ``curvature`` is not finite or not positive (then no step size reaches a
            minimum: there is none).
    """
    curvature = _check_number(curvature, "curvature")
    if curvature <= 0:
        raise ValueError(
            f"curvature must be positive (a quadratic with a minimum), got {curvature}; with "
            "zero or negative curvature no step size lands on a minimum"
        )
    ### BEGIN SOLUTION (Exercise 1.4)
    # L_S'(θ) = L_S''·(θ − θ*), so φ = θ* for every θ exactly when α·L_S'' = 1: a Newton step.
    # There the factor 1 − α L_S'' is zero and the meta-gradient vanishes for every θ.
    return 1.0 / curvature
    ### END SOLUTION
