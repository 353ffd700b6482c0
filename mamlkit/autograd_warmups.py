"""Autograd warm-ups: the two exercises of notebook 01, as functions the tests can check.

- Exercise 1.1, :func:`q_gradients`: the gradients of :math:`Q = 3a^3 - b^2` with ``backward()``,
  read from ``.grad``;
- Exercise 1.2, :func:`product_gradients`: the gradients of :math:`xy` as *return values*, with
  ``torch.autograd.grad``, leaving ``.grad`` alone.

Notebook 01 (``notebooks/01_autograd_basics.ipynb``) explains both tools on other functions,
then calls these two and checks them against the derivatives worked out by hand. The tests are
in ``tests/test_autograd_warmups.py``; run them with ``pytest -m "ex1_1 or ex1_2"``.
"""

from __future__ import annotations

import torch

__all__ = ["product_gradients", "q_gradients"]


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
