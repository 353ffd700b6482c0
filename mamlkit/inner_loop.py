r"""The inner loop: adapting θ to one task.

φ starts as θ and takes ``inner_steps`` gradient steps on the task's support set:

.. math::  \phi_0 = \theta, \qquad \phi_{s+1} = \phi_s - \alpha \nabla_\phi L(\phi_s, D^{support})

The outer loop differentiates the query loss of the final φ with respect to θ. That only
works if every step is an ordinary differentiable tensor operation: the gradient is taken
with ``create_graph=True`` (so it is itself a function of θ) and φ is a *new* tensor, never
an in-place update of θ. Dropping ``create_graph`` gives first-order MAML, which this module
offers on request, never by accident.
"""

from __future__ import annotations

from typing import Callable, Mapping, Union

import torch
from torch import nn

from mamlkit.functional import Params, check_params, forward

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
InnerLR = Union[float, Mapping[str, torch.Tensor]]


def check_inner_loop_args(inner_lr: InnerLR, inner_steps: int, params: Params) -> None:
    """Raise a ValueError naming the argument when ``inner_lr`` or ``inner_steps`` is invalid."""
    if isinstance(inner_steps, bool) or not isinstance(inner_steps, int) or inner_steps < 0:
        raise ValueError(f"inner_steps must be a non-negative integer, got {inner_steps!r}")
    if isinstance(inner_lr, Mapping):
        missing = sorted(set(params) - set(inner_lr))
        if missing:
            raise ValueError(
                f"inner_lr is a dict of learned learning rates but has none for {missing}; "
                "it needs one scalar tensor per parameter tensor (see init_inner_lrs)"
            )
    elif not isinstance(inner_lr, (int, float)) or inner_lr < 0:
        raise ValueError(
            f"inner_lr must be a non-negative number or a dict of learned rates, got {inner_lr!r}"
        )


def check_task(x: torch.Tensor, y: torch.Tensor, name: str) -> None:
    """Raise a ValueError unless inputs and targets of a support or query set pair up."""
    if x.shape[0] != y.shape[0]:
        raise ValueError(
            f"x_{name} has {x.shape[0]} examples but y_{name} has {y.shape[0]}; "
            f"every {name} input needs exactly one target"
        )
    if x.shape[0] == 0:
        raise ValueError(f"the {name} set is empty; it needs at least one example")


def init_inner_lrs(params: Params, inner_lr: float) -> dict[str, torch.Tensor]:
    """One learnable inner learning rate per parameter tensor, each starting at ``inner_lr``.

    Pass the result as ``inner_lr`` to :func:`adapt` and give its values to the outer
    optimiser next to θ: the outer loop then learns how far each tensor should move.
    """
    ### BEGIN SOLUTION (Exercise 3.3)
    return {
        name: torch.tensor(float(inner_lr), dtype=p.dtype, device=p.device, requires_grad=True)
        for name, p in params.items()
    }
    ### END SOLUTION


def learning_rate(inner_lr: InnerLR, name: str) -> Union[float, torch.Tensor]:
    """The step size for the parameter tensor ``name``."""
    return inner_lr[name] if isinstance(inner_lr, Mapping) else inner_lr


def first_order_gradients(loss: torch.Tensor, params: Params) -> tuple[torch.Tensor, ...]:
    """∇φ loss as constants: plain numbers, with no graph leading back to θ (first-order MAML)."""
    ### BEGIN SOLUTION (Exercise 3.2)
    # Without create_graph the returned gradients are not connected to θ: the outer
    # gradient then treats them as constants.
    return torch.autograd.grad(loss, tuple(params.values()))
    ### END SOLUTION


def gradient_step(loss: torch.Tensor, params: Params, inner_lr: InnerLR,
                  first_order: bool = False) -> Params:
    """One step of gradient descent, φ − α·∇φ loss, returned as new tensors.

    Args:
        loss: scalar loss computed from ``params`` (for many tasks at once: the sum of their
            losses, whose gradient holds every task's own gradient).
        params: φ, ``{name: tensor}``.
        inner_lr: α, a number or ``{name: scalar tensor}``.
        first_order: treat the gradient as a constant (see :func:`first_order_gradients`).
    """
    if first_order:
        grads = first_order_gradients(loss, params)
    else:
        ### BEGIN SOLUTION (Exercise 2.1)
        # create_graph=True keeps the gradient a differentiable function of θ: this is what
        # makes the outer gradient second order.
        grads = torch.autograd.grad(loss, tuple(params.values()), create_graph=True)
        ### END SOLUTION
    # New tensors, never an in-place update: θ must stay untouched and in the graph.
    return {name: p - learning_rate(inner_lr, name) * g for (name, p), g in zip(params.items(), grads)}


def adapt(
    model: nn.Module,
    params: Params,
    x_support: torch.Tensor,
    y_support: torch.Tensor,
    loss_fn: LossFn,
    inner_lr: InnerLR,
    inner_steps: int,
    first_order: bool = False,
) -> Params:
    """Adapt θ to one task with ``inner_steps`` steps of gradient descent on its support set.

    Args:
        model: the architecture, run through :func:`torch.func.functional_call`.
        params: θ, ``{name: tensor}`` with the model's names and shapes.
        x_support: ``(S, *input_shape)`` support inputs.
        y_support: ``(S,)`` labels or ``(S, D)`` targets.
        loss_fn: ``loss_fn(outputs, targets) -> scalar``, e.g. :func:`mamlkit.losses.cross_entropy`.
        inner_lr: α, a number, or ``{name: scalar tensor}`` of learned rates.
        inner_steps: number of gradient steps; 0 returns θ itself.
        first_order: if True, treat each inner gradient as a constant (first-order MAML):
            cheaper, but the meta-gradient ignores how the steps depend on θ.

    Returns:
        φ, the adapted parameters, a dict of tensors that are differentiable functions of θ.
    """
    check_params(model, params)
    check_inner_loop_args(inner_lr, inner_steps, params)
    check_task(x_support, y_support, "support")
    ### BEGIN SOLUTION (Exercise 2.1)
    adapted = dict(params)  # φ₀ = θ: the same tensors, so gradients reach θ
    for _ in range(inner_steps):
        loss = loss_fn(forward(model, adapted, x_support), y_support)
        adapted = gradient_step(loss, adapted, inner_lr, first_order)
    return adapted
    ### END SOLUTION
