r"""A grouped convolution whose second derivative is whole grouped convolutions.

The fast path (:meth:`mamlkit.models.Conv4.forward_tasks`) runs the tasks of a meta-batch as
the groups of one convolution. Second-order MAML differentiates the convolution's backward
pass once more, and PyTorch's double backward of a *grouped* convolution computes one of its
terms group by group: a loop of small convolutions and copies. Written out, every term is one
call for all groups; with PyTorch's own instead, the 20-way meta-step of the benchmark took
about 1.2× as long on this course's CPU (``benchmarks/fast_path_ablation.py``, one thread).

The convolution :math:`y = x \star w` is bilinear, and so are its two gradients,
:math:`g_x = B_x(g_y, w)` (a transposed convolution) and :math:`g_w = B_w(g_y, x)` (a
correlation of inputs with output gradients). Their derivatives, given the gradients
:math:`gg_x, gg_w` arriving at :math:`g_x, g_w`, are therefore the same three operations again:

.. math::

    \frac{\partial}{\partial g_y}: \; gg_x \star w + x \star gg_w, \qquad
    \frac{\partial}{\partial w}: \; B_w(g_y, gg_x), \qquad
    \frac{\partial}{\partial x}: \; B_x(g_y, gg_w).

``tests/test_grouped_conv.py`` checks both derivatives against float64 finite differences
and against PyTorch's own.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from mamlkit.functional import autocast_enabled

_convolution_backward = torch.ops.aten.convolution_backward


def grouped_conv2d(x: torch.Tensor, weight: torch.Tensor, groups: int, stride: int = 1,
                   padding: int = 0) -> torch.Tensor:
    """``F.conv2d(x, weight, stride=stride, padding=padding, groups=groups)``, cheap to differentiate twice.

    Args:
        x: ``(N, groups·C_in, H, W)``.
        weight: ``(groups·C_out, C_in, kH, kW)``, no bias.
        groups, stride, padding: integers, the same for both spatial axes.

    Returns:
        ``(N, groups·C_out, H_out, W_out)``, equal to ``F.conv2d``'s; first and second
        derivatives equal PyTorch's (up to rounding). Differentiating the second derivative
        again (``create_graph=True`` through it) raises a RuntimeError. Under ``torch.autocast``
        it is ``F.conv2d`` itself (and ``x`` and ``weight`` of different dtypes get
        ``F.conv2d``'s error). Being a :class:`torch.autograd.Function` without
        ``setup_context``, it does not run under :mod:`torch.func` transforms.

    Raises:
        TypeError: ``groups``, ``stride`` or ``padding`` is not an integer.
        ValueError: ``x`` or ``weight`` is not 4-dimensional, ``groups`` does not divide
            their channels, ``stride`` < 1 or ``padding`` < 0.
    """
    for name, value, least in (("groups", groups, 1), ("stride", stride, 1), ("padding", padding, 0)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"grouped_conv2d's {name} must be an integer, got {value!r}")
        if value < least:
            raise ValueError(f"grouped_conv2d's {name} must be at least {least}, got {value}")
    if x.dim() != 4 or weight.dim() != 4:
        raise ValueError(f"grouped_conv2d expects (N, C, H, W) inputs and (C_out, C_in, kH, kW) weights, "
                         f"got shapes {tuple(x.shape)} and {tuple(weight.shape)}")
    if x.shape[1] != groups * weight.shape[1] or weight.shape[0] % groups:
        raise ValueError(f"groups={groups} does not fit inputs with {x.shape[1]} channels and weights "
                         f"of shape {tuple(weight.shape)}")
    if x.dtype != weight.dtype or autocast_enabled():
        # Mixed precision: torch.autocast casts F.conv2d's inputs; PyTorch's own path keeps that.
        return F.conv2d(x, weight, stride=stride, padding=padding, groups=groups)
    return _GroupedConv.apply(x, weight, groups, stride, padding)


def _arguments(ctx) -> tuple:
    """``convolution_backward``'s settings after the bias sizes: stride, padding, dilation, ..."""
    return [ctx.stride] * 2, [ctx.padding] * 2, [1, 1], False, [0, 0], ctx.groups


class _GroupedConv(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, groups, stride, padding):
        ctx.save_for_backward(x, weight)
        ctx.groups, ctx.stride, ctx.padding = groups, stride, padding
        return F.conv2d(x, weight, stride=stride, padding=padding, groups=groups)

    @staticmethod
    def backward(ctx, gy):
        x, weight = ctx.saved_tensors
        gx, gw = _GroupedConvBackward.apply(gy, x, weight, ctx.groups, ctx.stride, ctx.padding,
                                            ctx.needs_input_grad[0], ctx.needs_input_grad[1])
        return gx, gw, None, None, None


class _GroupedConvBackward(torch.autograd.Function):
    """``(gy, x, w) → (gx, gw)``, PyTorch's kernels; its own backward as in the module docstring."""

    @staticmethod
    def forward(ctx, gy, x, weight, groups, stride, padding, need_x, need_w):
        ctx.save_for_backward(gy, x, weight)
        ctx.groups, ctx.stride, ctx.padding = groups, stride, padding
        gx, gw, _ = _convolution_backward(gy, x, weight, None, *_arguments(ctx), [need_x, need_w, False])
        return gx, gw

    @staticmethod
    def backward(ctx, ggx, ggw):
        if torch.is_grad_enabled():  # create_graph=True: someone wants a third derivative
            raise RuntimeError("grouped_conv2d's second derivative has no derivative itself: a third "
                               "derivative is not supported; use F.conv2d for that")
        gy, x, weight = ctx.saved_tensors
        conv = dict(stride=ctx.stride, padding=ctx.padding, groups=ctx.groups)
        g_gy = g_x = g_weight = None
        if ctx.needs_input_grad[0]:
            terms = []
            if ggx is not None:
                terms.append(F.conv2d(ggx, weight, **conv))
            if ggw is not None:
                terms.append(F.conv2d(x, ggw, **conv))
            g_gy = sum(terms[1:], terms[0]) if terms else None
        if ggx is not None and ctx.needs_input_grad[2]:
            g_weight = _convolution_backward(gy, ggx, weight, None, *_arguments(ctx), [False, True, False])[1]
        if ggw is not None and ctx.needs_input_grad[1]:
            g_x = _convolution_backward(gy, x, ggw, None, *_arguments(ctx), [True, False, False])[0]
        return g_gy, g_x, g_weight, None, None, None, None, None
