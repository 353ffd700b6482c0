r"""Batch norm followed by ReLU, with its first and second derivatives written out.

Second-order MAML differentiates the backward pass of every layer once more. For batch norm,
PyTorch builds that second derivative from some thirty elementwise operations on full-size
tensors, and on a CPU the time goes into reading and writing memory, not into arithmetic: it
was the largest cost of the meta-step after the convolutions. Here the block
``relu(batch_norm(x))`` is one :class:`torch.autograd.Function` whose backward is again a
Function, with the derivative of that backward (the "double backward") derived by hand below.
Here γ and β are batch norm's scale and shift (Ioffe & Szegedy 2015), not the notebooks' meta
learning rate β.
It computes the same numbers as ``torch.relu(F.batch_norm(x, None, None, weight, bias,
training=True))``; ``tests/test_batchnorm_relu.py`` checks both derivatives against float64
finite differences (``gradcheck``, ``gradgradcheck``).

Notation, per channel ``c`` (statistics over the ``M = N·H·W`` values of the channel):

.. math::

    \hat x = (x - \mu)\,r, \quad r = 1/\sqrt{\operatorname{var}(x) + \epsilon}, \quad
    y = \operatorname{relu}(\gamma \hat x + \beta)

Backward, with ``a = gy ⊙ [y > 0]`` (the gradient that passes the ReLU) and the projection
:math:`P(v) = v - \operatorname{mean}(v) - \hat x \operatorname{mean}(v \hat x)` (Ioffe &
Szegedy 2015, section 3, written compactly):

.. math::

    g_\beta = \textstyle\sum a, \quad g_\gamma = \sum a \hat x, \quad g_x = \gamma r\, P(a)

Double backward: given ``ggx, ggγ, ggβ`` (gradients arriving at ``gx, gγ, gβ``), using that P
is symmetric and that :math:`d\hat x = r\,P(\delta)`, :math:`dr = -r^2\operatorname{mean}(\hat x\delta)`:

.. math::

    g_{gy} &= [y > 0] \odot (\gamma r\,P(ggx) + ggγ\,\hat x + ggβ) \\
    g_\gamma &= r \textstyle\sum a\,P(ggx) \\
    g_x &= r\,P(w) - \tfrac{r \gamma g_\gamma}{M}\,\hat x, \quad
    w = ggγ\, a - \gamma r \left(\tfrac{g_\gamma^{fwd}}{M}\, ggx + \operatorname{mean}(ggx\,\hat x)\, a\right)

where :math:`g_\gamma^{fwd} = \sum a \hat x` is the backward's own output. β does not appear in
the backward except through the ReLU's mask, which is piecewise constant: its second
derivative is zero almost everywhere, as for ``torch.relu``. A third derivative is not
written out: asking for one (``create_graph=True`` through the second) raises a RuntimeError
rather than returning a wrong number.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

EPS = 1e-5  # torch.nn.BatchNorm2d's default
_DIMS = (0, 2, 3)  # batch and space: the statistics of each channel of (N, C, H, W)


def batch_norm_relu(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
                    eps: float = EPS) -> torch.Tensor:
    """``relu(batch_norm(x))`` on the batch's own statistics, cheap to differentiate twice.

    Args:
        x: ``(N, C, H, W)``, float32 or float64.
        weight, bias: γ and β, ``(C,)``.
        eps: added to the variance, as ``torch.nn.BatchNorm2d``'s ``eps``.

    Returns:
        ``(N, C, H, W)``: equal to ``torch.relu(F.batch_norm(x, None, None, weight, bias,
        training=True, eps=eps))``; first and second derivatives as PyTorch's.

    Raises:
        TypeError: ``x``, ``weight`` or ``bias`` is not a tensor.
        ValueError: ``x`` is not 4-dimensional or has a single value per channel (as in
            PyTorch, batch statistics need more than one), γ and β do not have one value per
            channel, or ``eps`` is not positive.

    When γ and β have another dtype than ``x`` (mixed precision under ``torch.autocast``),
    PyTorch's own ``relu(batch_norm(x))`` computes the block instead.

    Being a :class:`torch.autograd.Function` without ``setup_context``, it does not run under
    :mod:`torch.func` transforms (``vmap``, ``jacrev``); the course's fast path does not use them.
    """
    for name, value in (("x", x), ("weight", weight), ("bias", bias)):
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"batch_norm_relu's {name} must be a tensor, got {type(value).__name__}")
    if x.dim() != 4:
        raise ValueError(f"batch_norm_relu expects (N, C, H, W) inputs, got shape {tuple(x.shape)}")
    if x.numel() // max(x.shape[1], 1) < 2:
        raise ValueError(f"batch_norm_relu needs more than one value per channel for batch statistics, "
                         f"got input shape {tuple(x.shape)}")
    if weight.shape != (x.shape[1],) or bias.shape != (x.shape[1],):
        raise ValueError(f"weight and bias need one value per channel, shape ({x.shape[1]},); "
                         f"got {tuple(weight.shape)} and {tuple(bias.shape)}")
    if not eps > 0:
        raise ValueError(f"eps must be a positive number, got {eps!r}")
    if weight.dtype != x.dtype or bias.dtype != x.dtype:
        # Mixed precision (torch.autocast gives bfloat16 activations, float32 γ and β): the
        # formulas below assume one dtype, so PyTorch's own composition takes over.
        return torch.relu(F.batch_norm(x, None, None, weight, bias, training=True, eps=eps))
    return _BatchNormReLU.apply(x, weight, bias, eps)


def _per_channel(v: torch.Tensor) -> torch.Tensor:
    """A ``(C,)`` tensor shaped ``(1, C, 1, 1)`` to broadcast over ``(N, C, H, W)``."""
    return v.reshape(1, -1, 1, 1)


def _channel_sum(v: torch.Tensor) -> torch.Tensor:
    """Σ over batch and space: ``(N, C, H, W)`` → ``(1, C, 1, 1)``."""
    return v.sum(_DIMS, keepdim=True)


class _BatchNormReLU(torch.autograd.Function):
    """Forward with PyTorch's own kernels; the backward is :class:`_BatchNormReLUBackward`."""

    @staticmethod
    def forward(ctx, x, weight, bias, eps):
        out, mean, invstd = torch.native_batch_norm(x, weight, bias, None, None, True, 0.0, eps)
        y = torch.relu_(out)
        ctx.save_for_backward(x, weight, mean, invstd, y)
        ctx.eps = eps
        return y

    @staticmethod
    def backward(ctx, gy):
        x, weight, mean, invstd, y = ctx.saved_tensors
        gx, gweight, gbias = _BatchNormReLUBackward.apply(gy, x, weight, mean, invstd, y, ctx.eps)
        return gx, gweight, gbias, None


class _BatchNormReLUBackward(torch.autograd.Function):
    """``(gy, x, γ) → (gx, gγ, gβ)``, differentiable once more (module docstring)."""

    @staticmethod
    def forward(ctx, gy, x, weight, mean, invstd, y, eps):
        a = torch.ops.aten.threshold_backward(gy, y, 0)  # gy where the ReLU let the value through
        gx, gweight, gbias = torch.ops.aten.native_batch_norm_backward(
            a, x, weight, None, None, mean, invstd, True, eps, [True, True, True])
        ctx.save_for_backward(a, x, weight, mean, invstd, y, gweight)
        return gx, gweight, gbias

    @staticmethod
    def backward(ctx, ggx, ggweight, ggbias):
        if torch.is_grad_enabled():  # create_graph=True: someone wants a third derivative
            raise RuntimeError(
                "batch_norm_relu's second derivative is written out by hand and has no derivative "
                "itself: a third derivative (create_graph=True through a meta-gradient) is not "
                "supported; use torch.relu(F.batch_norm(...)) for that")
        # The formulas of the module docstring, rearranged so that every full-size tensor is
        # a per-channel linear combination of ggx, x̂ and a: three reductions and two fused
        # multiply-adds per output, where memory traffic, not arithmetic, sets the time.
        a, x, weight, mean, invstd, y, gweight_fwd = ctx.saved_tensors
        count = x.numel() // x.shape[1]
        r, gamma = _per_channel(invstd), _per_channel(weight)
        gamma_r = gamma * r
        sum_a, sum_a_xhat = _channel_sum(a), _per_channel(gweight_fwd)  # Σa = gβ, Σa·x̂ = gγ
        x_hat = (x - _per_channel(mean)) * r
        zeros = torch.zeros_like(r)
        ggweight = zeros if ggweight is None else _per_channel(ggweight)
        ggbias = zeros if ggbias is None else _per_channel(ggbias)
        if ggx is None:  # only gγ and gβ were used
            ggx_mean = s = g_weight = zeros
        else:
            ggx_mean = ggx.mean(_DIMS, keepdim=True)
            s = _channel_sum(ggx * x_hat) / count                                 # mean(ggx·x̂)
            g_weight = r * (_channel_sum(a * ggx) - ggx_mean * sum_a - s * sum_a_xhat)  # r·Σ a·P(ggx)

        # g_gy = [y > 0] ⊙ (γr·P(ggx) + ggγ·x̂ + ggβ)
        q = ggweight - gamma_r * s
        g_gy = torch.addcmul(ggbias - gamma_r * ggx_mean, x_hat, q)
        if ggx is not None:
            g_gy.addcmul_(ggx, gamma_r)
        g_gy = torch.ops.aten.threshold_backward(g_gy, y, 0)

        # g_x = r·P(w) − (rγ g_γ / M)·x̂ with w = q·a − k·ggx; mean(w) and mean(w·x̂) follow
        # from the sums above, so w itself is never formed.
        k = gamma_r * sum_a_xhat / count
        w_mean = (q * sum_a - k * ggx_mean * count) / count
        w_xhat_mean = (q * sum_a_xhat - k * s * count) / count
        g_x = torch.addcmul(-r * w_mean, a, r * q)
        if ggx is not None:
            g_x.addcmul_(ggx, -r * k)
        g_x.addcmul_(x_hat, -r * (w_xhat_mean + gamma * g_weight / count))
        return g_gy, g_x, g_weight.reshape(-1), None, None, None, None
