"""Check helpers for learners: a one-line ✓ when a result is right, a teaching message when not.

Used in every notebook, right after the cell that computes something::

    check_close(a.grad, 9 * a**2, "a.grad")          # ✓ a.grad: max |diff| = 0.0e+00
    compare_gradients("meta-gradient", autograd_grad, finite_difference_grad(f, theta))
    with raises(RuntimeError, match="does not require grad"):
        z.backward()
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch

__all__ = ["check_close", "compare_gradients", "finite_difference_grad", "raises"]

TensorLike = torch.Tensor | float | int | list | tuple


def _as_float64(value: TensorLike) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value.detach().to(torch.float64)
    return torch.as_tensor(value, dtype=torch.float64)


def _short(t: torch.Tensor, max_numel: int = 6) -> str:
    """A tensor as a short string: its values when few, otherwise its shape and norm."""
    if t.numel() == 1:
        return f"{t.item():.6g}"
    if t.numel() <= max_numel:
        return "[" + ", ".join(f"{v:.6g}" for v in t.flatten().tolist()) + "]"
    return f"tensor of shape {tuple(t.shape)} with norm {t.norm().item():.6g}"


def _max_abs_diff(actual: torch.Tensor, expected: torch.Tensor) -> float:
    return (actual - expected).abs().max().item() if actual.numel() else 0.0


def check_close(
    actual: TensorLike,
    expected: TensorLike,
    name: str,
    atol: float = 1e-6,
    rtol: float = 1e-5,
) -> None:
    r"""Check that ``actual`` matches ``expected`` elementwise, and print a one-line ✓.

    Passes when :math:`|a - e| \le \text{atol} + \text{rtol}\,|e|` for every element, as in
    ``torch.allclose``. Both sides are compared in float64, detached from any graph.

    Args:
        actual: the value computed in the notebook, any shape.
        expected: the value it should have, same shape (or a Python number for a scalar).
        name: what is being checked, shown in the ✓ line and in the error.
        atol: absolute tolerance.
        rtol: relative tolerance.

    Raises:
        AssertionError: shapes differ or some element is outside the tolerance; the message
            shows expected, got and the largest difference.
    """
    a, e = _as_float64(actual), _as_float64(expected)
    if a.shape != e.shape:
        raise AssertionError(
            f"{name}: expected shape {tuple(e.shape)}, got shape {tuple(a.shape)}\n"
            f"  expected: {_short(e)}\n  got:      {_short(a)}"
        )
    max_diff = _max_abs_diff(a, e)
    if not torch.allclose(a, e, rtol=rtol, atol=atol, equal_nan=False):
        raise AssertionError(
            f"{name}: values differ by more than atol={atol:g} + rtol={rtol:g}·|expected|\n"
            f"  expected: {_short(e)}\n"
            f"  got:      {_short(a)}\n"
            f"  max |diff| = {max_diff:.3e}"
        )
    print(f"✓ {name}: max |diff| = {max_diff:.1e}")


def compare_gradients(
    name: str,
    exact: TensorLike,
    approx: TensorLike,
    atol: float = 1e-6,
    rtol: float = 1e-4,
) -> None:
    """Compare an exact gradient with an approximation of it, in one line.

    Prints ``✓ name | exact: ... | approximate: ... | maxdiff: ...`` when they agree within
    ``atol + rtol·|approx|``. Use it to check a gradient from autograd (or a formula derived by
    hand) against central finite differences from :func:`finite_difference_grad`.

    Args:
        name: what the gradient is, e.g. ``"meta-gradient dL/dθ"``.
        exact: gradient from autograd or a hand-derived formula, any shape.
        approx: its numerical approximation, same shape.
        atol: absolute tolerance.
        rtol: relative tolerance; finite differences in float64 are good to about 1e-8.

    Raises:
        AssertionError: the gradients disagree; the message shows both and hints at the
            usual causes.
    """
    e, a = _as_float64(exact), _as_float64(approx)
    if e.shape != a.shape:
        raise AssertionError(f"{name}: exact gradient has shape {tuple(e.shape)}, approximate has {tuple(a.shape)}")
    max_diff = _max_abs_diff(e, a)
    if not torch.allclose(e, a, rtol=rtol, atol=atol):
        raise AssertionError(
            f"{name}: exact and approximate gradients differ (maxdiff = {max_diff:.3e})\n"
            f"  exact:       {_short(e)}\n"
            f"  approximate: {_short(a)}\n"
            "  Usual causes: a path of the chain rule was cut (torch.no_grad, .detach(), an in-place "
            "update, autograd.grad without create_graph=True), or finite differences taken in float32."
        )
    print(f"✓ {name} | exact: {_short(e)} | approximate: {_short(a)} | maxdiff: {max_diff:.1e}")


def finite_difference_grad(
    f: Callable[[torch.Tensor], torch.Tensor | float],
    x: TensorLike,
    eps: float = 1e-6,
) -> torch.Tensor:
    r"""Gradient of a scalar function by central finite differences, in float64.

    .. math:: \frac{\partial f}{\partial x_i} \approx \frac{f(x + \epsilon e_i) - f(x - \epsilon e_i)}{2\epsilon}

    Each call of ``f`` receives a fresh float64 leaf tensor with ``requires_grad=True``, so ``f``
    may itself use autograd (an inner gradient step, for example). The error is
    :math:`O(\epsilon^2)` from truncation plus about :math:`10^{-16}|f|/\epsilon` from rounding:
    around 1e-9 for a well-scaled smooth ``f`` with ``eps=1e-6``. In float32 the rounding term
    alone would be about 0.1·|f|, which is why this helper always works in float64.

    Args:
        f: maps a tensor shaped like ``x`` to a scalar (a one-element tensor or a number).
        x: the point, any shape.
        eps: the step :math:`\epsilon`.

    Returns:
        The gradient, a float64 tensor shaped like ``x``.
    """
    x = _as_float64(x)

    def value_at(point: torch.Tensor) -> float:
        out = f(point.view(x.shape).detach().requires_grad_(True))
        if isinstance(out, torch.Tensor):
            if out.numel() != 1:
                raise ValueError(f"f must return a scalar, but it returned a tensor of shape {tuple(out.shape)}")
            return out.detach().item()
        return float(out)

    flat_x = x.reshape(-1)
    grad = torch.zeros(x.numel(), dtype=torch.float64)
    for i in range(x.numel()):
        step = torch.zeros_like(flat_x)
        step[i] = eps
        grad[i] = (value_at(flat_x + step) - value_at(flat_x - step)) / (2 * eps)
    return grad.view(x.shape)


def _first_sentence(message: str, max_chars: int = 120) -> str:
    """The start of an error message, short enough for a one-line ✓."""
    lines = message.strip().splitlines()
    text = lines[0] if lines else ""
    if ". " in text:
        text = text[: text.index(". ") + 1]
    return text if len(text) <= max_chars else text[: max_chars - 1] + "…"


@contextmanager
def raises(exc_type: type[BaseException], match: str | None = None) -> Iterator[None]:
    """Assert that the ``with`` block raises ``exc_type``, then carry on.

    For cells that show a mistake on purpose: the notebook keeps running, and if the mistake
    ever stops raising, the notebook fails instead of silently passing.

    Args:
        exc_type: the exception class expected (subclasses count).
        match: a regular expression that must be found (``re.search``) in the message.

    Raises:
        AssertionError: the block ran without raising, or the message did not match.
        Any other exception raised by the block is passed through unchanged.
    """
    try:
        yield
    except exc_type as exc:
        message = str(exc)
        if match is not None and not re.search(match, message):
            raise AssertionError(
                f"the block raised {type(exc).__name__} as expected, but its message does not match "
                f"{match!r}:\n  {message}"
            ) from exc
        print(f"✓ raised {type(exc).__name__}: {_first_sentence(message)}")
    else:
        raise AssertionError(f"expected the block to raise {exc_type.__name__}, but it ran without error")
