r"""Curvature without the Hessian: Hessian-vector products and the top eigenvalue.

MAML's meta-gradient multiplies by the Hessian of the support loss. For one inner step
:math:`\phi = \theta - \alpha g_S` with :math:`g_S = \nabla L_S(\theta)`, the chain rule gives
(Finn et al. 2017, §2.2; written out in Nichol et al. 2018, §5)

.. math::  \nabla_\theta L_Q(\phi) = (I - \alpha H_S)\, g_Q, \qquad H_S = \nabla^2 L_S(\theta),\;
           g_Q = \nabla L_Q(\phi),

and for ``inner_steps`` = n steps the ordered product
:math:`(I - \alpha H_S(\phi_0))\,(I - \alpha H_S(\phi_1)) \cdots (I - \alpha H_S(\phi_{n-1}))\, \nabla L_Q(\phi_n)`
(Hessians at different :math:`\phi_s` do not commute, so the order matters). Autograd
never forms :math:`H_S` (``P × P`` numbers for ``P`` parameters): differentiating
:math:`\langle g_S, v \rangle` once more gives the Hessian-vector product :math:`H_S v` at the
cost of about two gradients. That is :func:`hvp`, and it is all MAML's backward pass does.

The same product measures steepness: the eigenvalue of largest magnitude :math:`\lambda_{\max}`
of :math:`H_S` (a network's Hessian is indefinite, so "largest" means largest in absolute value)
is the curvature of the steepest direction, and gradient descent on a quadratic
converges only for :math:`\alpha < 2/\lambda_{\max}`. :func:`top_eigenvalue` finds it by power
iteration on Hessian-vector products.

Used in ``notebooks/03_outer_loop.ipynb`` and ``notebooks/04_omniglot_maml.ipynb``.
"""

from __future__ import annotations

from typing import Callable, Optional

import torch

from mamlkit.functional import Params

__all__ = ["hvp", "meta_gradient_parts", "second_order_share", "top_eigenvalue"]

LossOfParams = Callable[[Params], torch.Tensor]


def _check_vector(params: Params, vector: Params) -> None:
    if vector.keys() != params.keys():
        raise ValueError(f"vector must have the same names as params; got {sorted(vector)} for {sorted(params)}")
    for name, p in params.items():
        if vector[name].shape != p.shape:
            raise ValueError(f"vector[{name!r}] has shape {tuple(vector[name].shape)}, params {tuple(p.shape)}")


def hvp(loss_fn: LossOfParams, params: Params, vector: Params) -> Params:
    r"""The Hessian-vector product :math:`\nabla^2 L(\theta)\, v`, without forming the Hessian.

    Computes :math:`g = \nabla L(\theta)` with ``create_graph=True`` and then
    :math:`\nabla_\theta \langle g, v \rangle = H v` (Pearlmutter 1994): two backward passes.

    Args:
        loss_fn: ``loss_fn(params) -> scalar``, e.g. a task's support loss.
        params: θ, ``{name: tensor}``; gradients are taken with respect to these values.
        vector: ``v``, ``{name: tensor}`` with the same names and shapes.

    Returns:
        ``{name: tensor}``, :math:`Hv` in the layout of ``params``, detached.

    Raises:
        ValueError: ``vector`` does not match ``params``.
    """
    _check_vector(params, vector)
    leaves = {n: p.detach().requires_grad_(True) for n, p in params.items()}
    with torch.enable_grad():
        grads = torch.autograd.grad(loss_fn(leaves), list(leaves.values()), create_graph=True)
        # <g, v> with v a constant; its gradient with respect to θ is H v.
        products = torch.autograd.grad(grads, list(leaves.values()),
                                       grad_outputs=[vector[n].detach() for n in leaves], allow_unused=True)
    return {n: (torch.zeros_like(p) if h is None else h.detach()) for (n, p), h in zip(leaves.items(), products)}


def _dot(a: Params, b: Params) -> torch.Tensor:
    return sum((a[n] * b[n]).sum() for n in a)


def top_eigenvalue(
    loss_fn: LossOfParams,
    params: Params,
    iterations: int = 50,
    generator: Optional[torch.Generator] = None,
    tol: float = 1e-6,
) -> float:
    r"""The eigenvalue of largest magnitude of :math:`\nabla^2 L(\theta)`, by power iteration.

    Starting from a random unit vector ``v``, repeats ``v ← Hv / ‖Hv‖``; the Rayleigh quotient
    :math:`v^\top H v` converges to the eigenvalue of largest absolute value (for the loss of a
    network near a minimum, the largest positive one: the steepest direction's curvature).
    Each iteration costs one :func:`hvp`.

    Args:
        loss_fn: ``loss_fn(params) -> scalar``.
        params: θ, ``{name: tensor}``.
        iterations: at most this many products.
        generator: for the random start (seed it for reproducible numbers).
        tol: stop when the estimate changes by less than ``tol`` relative to its size.

    Returns:
        The eigenvalue estimate (units of the loss per squared parameter unit).
    """
    if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 1:
        raise ValueError(f"iterations must be a positive integer, got {iterations!r}")
    v = {n: torch.randn(p.shape, generator=generator, dtype=p.dtype) for n, p in params.items()}
    norm = _dot(v, v).sqrt()
    v = {n: t / norm for n, t in v.items()}
    estimate = 0.0
    for _ in range(iterations):
        hv = hvp(loss_fn, params, v)
        new_estimate = _dot(v, hv).item()
        norm = _dot(hv, hv).sqrt()
        if norm == 0:
            return 0.0
        v = {n: t / norm for n, t in hv.items()}
        if abs(new_estimate - estimate) <= tol * abs(new_estimate):
            return new_estimate
        estimate = new_estimate
    return estimate


def meta_gradient_parts(support_loss_fn: LossOfParams, query_loss_fn: LossOfParams, params: Params,
                        inner_lr: float) -> dict:
    r"""The one-step meta-gradient split into its first-order part and its correction.

    With :math:`\phi = \theta - \alpha g_S`: :math:`g_Q = \nabla L_Q(\phi)` (what first-order
    MAML uses) and the correction :math:`\alpha H_S g_Q`, so that the meta-gradient is
    :math:`g_Q - \alpha H_S g_Q`.

    Args:
        support_loss_fn, query_loss_fn: ``fn(params) -> scalar`` on the task's support and query set.
        params: θ.
        inner_lr: α.

    Returns:
        ``{"query_grad": g_Q, "correction": α H_S g_Q, "meta_grad": g_Q − α H_S g_Q,
        "ratio": ‖α H_S g_Q‖ / ‖g_Q‖}`` (dicts of tensors, and a float).
    """
    leaves = {n: p.detach().requires_grad_(True) for n, p in params.items()}
    with torch.enable_grad():
        g_s = torch.autograd.grad(support_loss_fn(leaves), list(leaves.values()))
        phi = {n: p.detach() - inner_lr * g for (n, p), g in zip(leaves.items(), g_s)}
        phi = {n: p.requires_grad_(True) for n, p in phi.items()}
        g_q = dict(zip(phi, torch.autograd.grad(query_loss_fn(phi), list(phi.values()))))
    h_g = hvp(support_loss_fn, params, g_q)
    correction = {n: inner_lr * h_g[n] for n in params}
    ratio = (_dot(correction, correction).sqrt() / _dot(g_q, g_q).sqrt()).item()
    return {"query_grad": g_q, "correction": correction,
            "meta_grad": {n: g_q[n] - correction[n] for n in params}, "ratio": ratio}


def second_order_share(model, params: Params, x_support: torch.Tensor, y_support: torch.Tensor,
                       x_query: torch.Tensor, y_query: torch.Tensor, loss_fn, inner_lr: float,
                       inner_steps: int) -> float:
    r"""How far the full meta-gradient is from the first-order one: :math:`\|g - g_{FO}\| / \|g_{FO}\|`.

    :math:`g` differentiates through ``inner_steps`` = n steps (the ordered product
    :math:`(I - \alpha H_S(\phi_0)) \cdots (I - \alpha H_S(\phi_{n-1}))` applied to
    :math:`\nabla L_Q(\phi_n)`), :math:`g_{FO}`
    treats every inner gradient as a constant (:math:`\nabla L_Q(\phi_n)` itself). For one step the
    difference is exactly :math:`\alpha H_S g_Q`, the ``ratio`` of :func:`meta_gradient_parts`.

    Args:
        model: the architecture; x_support, y_support, x_query, y_query: one task.
        loss_fn, inner_lr, inner_steps: as in :func:`mamlkit.inner_loop.adapt`.

    Returns:
        The relative difference, a float (0 means first order is exact).
    """
    from mamlkit.functional import forward
    from mamlkit.inner_loop import adapt

    leaves = {n: p.detach().requires_grad_(True) for n, p in params.items()}
    grads = {}
    with torch.enable_grad():
        for first_order in (False, True):
            adapted = adapt(model, leaves, x_support, y_support, loss_fn, inner_lr, inner_steps, first_order=first_order)
            loss = loss_fn(forward(model, adapted, x_query), y_query)
            grads[first_order] = torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, list(leaves.values()))])
    return ((grads[False] - grads[True]).norm() / grads[True].norm()).item()
