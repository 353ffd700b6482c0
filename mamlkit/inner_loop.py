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

import math
import numbers
from typing import Callable, Mapping, Union

import torch
from torch import nn
from torch.autograd.graph import get_gradient_edge

from mamlkit.functional import Params, adaptable, check_inputs_match, check_params, forward
from mamlkit.losses import check_loss_inputs

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
InnerLR = Union[float, torch.Tensor, Mapping[str, torch.Tensor]]


def check_inner_loop_args(inner_lr: InnerLR, inner_steps: int, params: Params) -> None:
    """Raise a ValueError/TypeError naming the argument when ``inner_lr`` or ``inner_steps`` is invalid.

    ``inner_lr`` is a finite number ``>= 0``, a finite scalar tensor, or a dict with one finite
    rate per tensor of ``params`` (a scalar, or a tensor of that parameter's shape). A learned
    rate may have turned negative during training; a non-finite one never makes sense.
    """
    if isinstance(inner_steps, bool) or not isinstance(inner_steps, int) or inner_steps < 0:
        raise ValueError(f"inner_steps must be a non-negative integer, got {inner_steps!r}")
    if isinstance(inner_lr, Mapping):
        missing = sorted(set(params) - set(inner_lr))
        if missing:
            raise ValueError(
                f"inner_lr is a dict of learned learning rates but has none for {missing}; "
                "it needs one scalar tensor per parameter tensor (see init_inner_lrs)"
            )
        for name in params:
            check_rate(inner_lr[name], f"inner_lr[{name!r}]", tuple(params[name].shape))
    elif isinstance(inner_lr, torch.Tensor):
        check_rate(inner_lr, "inner_lr", ())
    elif isinstance(inner_lr, bool) or not isinstance(inner_lr, numbers.Real):
        raise TypeError(f"inner_lr must be a number (or a scalar tensor, or a dict of learned rates), "
                        f"got {inner_lr!r} ({type(inner_lr).__name__})")
    elif not math.isfinite(inner_lr):
        raise ValueError(f"inner_lr must be a finite number, got {inner_lr!r}: a step of infinite size "
                         "writes inf or nan into every adapted parameter")
    elif inner_lr < 0:
        raise ValueError(f"inner_lr must be a non-negative number, got {inner_lr!r}")


def check_rate(rate, what: str, shape: tuple) -> None:
    """Raise unless ``rate`` is a finite number or a finite float tensor of shape ``()`` or ``shape``."""
    if isinstance(rate, torch.Tensor):
        if not rate.is_floating_point():
            raise TypeError(f"{what} must be a floating-point tensor, got dtype {rate.dtype}")
        if tuple(rate.shape) not in ((), shape):
            raise ValueError(f"{what} has shape {tuple(rate.shape)}; a learning rate is a scalar, "
                             f"or one rate per element of its parameter, shape {shape}")
        if not bool(torch.isfinite(rate).all()):
            raise ValueError(f"{what} is not finite ({rate.detach().flatten()[:4].tolist()}...): "
                             "a learned rate that blew up; lower meta_lr, or restart from a checkpoint")
    elif isinstance(rate, bool) or not isinstance(rate, numbers.Real) or not math.isfinite(rate):
        raise ValueError(f"{what} must be a finite number or tensor, got {rate!r}")


def check_task(x: torch.Tensor, y: torch.Tensor, name: str) -> None:
    """Raise a ValueError unless inputs and targets of a support or query set pair up."""
    for part, value in ((f"x_{name}", x), (f"y_{name}", y)):
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"{part} must be a torch.Tensor, got {type(value).__name__}; "
                            "convert it with torch.as_tensor")
        if value.dim() == 0:
            raise ValueError(f"{part} is a single number; it needs an examples axis first, (S, ...)")
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


def check_loss(loss) -> None:
    """Raise unless ``loss`` is a scalar tensor, one number for the task."""
    if not isinstance(loss, torch.Tensor):
        raise TypeError(f"the loss must be a tensor, got {type(loss).__name__}: loss_fn has to return "
                        "torch operations on the outputs, not a Python number (no .item())")
    if loss.dim() != 0:
        raise ValueError(
            f"the loss must be a scalar, one number for the task, got shape {tuple(loss.shape)}: "
            "loss_fn has to reduce over the examples (e.g. reduction='mean', not 'none')"
        )


def tensors_to_step(loss: torch.Tensor, params: Params) -> Params:
    """The tensors of ``params`` that the step moves: those that require grad and reach the loss.

    A frozen tensor (``requires_grad=False``) stays as it is, and so does one the loss never
    reaches (an unused head, a branch not taken): its gradient is zero. Autograd would refuse
    both ("does not require grad", "appears to not have been used in the graph"), so they are
    found first, by walking the loss's graph back from ``loss.grad_fn``.
    """
    wanted = {}
    for name, p in params.items():
        if p.requires_grad:
            edge = get_gradient_edge(p)
            wanted[(edge.node, edge.output_nr)] = name
    if wanted and loss.grad_fn is None:
        hint = (" adapt is running under torch.no_grad() or torch.inference_mode(): the inner loop needs "
                "gradients even at test time; call it outside them (or use mamlkit.evaluate.evaluate or "
                "adaptation_curve, which work under both)"
                if not torch.is_grad_enabled() else
                " loss_fn must compute the loss from the model's outputs with torch operations (no .detach())")
        raise ValueError("the loss is not connected to params, so the inner loop has no gradient." + hint)
    found, frontier, seen = set(), [loss.grad_fn] if wanted else [], set()
    while frontier and len(found) < len(wanted):
        node = frontier.pop()
        for edge in node.next_functions:
            if edge[0] is None:
                continue
            if edge in wanted:
                found.add(wanted[edge])
            if edge[0] not in seen:
                seen.add(edge[0])
                frontier.append(edge[0])
    if len(found) == len(params):
        return params
    return {name: p for name, p in params.items() if name in found}


def gradient_step(loss: torch.Tensor, params: Params, inner_lr: InnerLR,
                  first_order: bool = False) -> Params:
    """One step of gradient descent, φ − α·∇φ loss, returned as new tensors.

    Args:
        loss: scalar loss computed from ``params`` (for many tasks at once: the sum of their
            losses, whose gradient holds every task's own gradient).
        params: φ, ``{name: tensor}``. Frozen tensors (``requires_grad=False``) and tensors the
            loss does not reach have a zero gradient and come back unchanged, the same tensor.
        inner_lr: α, a number or ``{name: scalar tensor}``.
        first_order: treat the gradient as a constant (see :func:`first_order_gradients`).

    Raises:
        TypeError, ValueError: the loss is not a scalar tensor, or has no graph to ``params``.
    """
    check_loss(loss)
    stepping = tensors_to_step(loss, params)
    if len(stepping) < len(params):
        stepped = gradient_step(loss, stepping, inner_lr, first_order) if stepping else {}
        return {name: stepped.get(name, p) for name, p in params.items()}
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

    Any ``nn.Module`` works. Tensors of θ with ``requires_grad=False`` are frozen (used, never
    adapted), tensors the loss never reaches keep their values (zero gradient), and neither
    the module (its buffers included) nor ``params`` change. A dict in which no tensor requires
    grad (weights loaded from a file) adapts every tensor.

    Returns:
        φ, the adapted parameters, a dict of tensors that are differentiable functions of θ.

    Raises:
        TypeError, ValueError: an argument does not fit (the message names it and says what is
            allowed), e.g. a non-finite ``inner_lr``, a loss that is not one number, float
            targets of another shape than the outputs (``(S,)`` against ``(S, 1)``), a model
            that returns a tuple, inputs of another dtype than θ, or a call under
            ``torch.no_grad()``.
    """
    if torch.is_inference_mode_enabled():
        raise ValueError("adapt is running under torch.inference_mode(): the inner loop needs gradients even at "
                         "test time; call it outside inference mode (mamlkit.evaluate.evaluate and "
                         "adaptation_curve work under it)")
    check_params(model, params)
    check_inner_loop_args(inner_lr, inner_steps, params)
    check_task(x_support, y_support, "support")
    check_inputs_match(params, x_support, "x_support")
    params = adaptable(params)  # weights loaded from a file have no requires_grad: adapt them all
    loss_fn = shape_checked(loss_fn)  # float targets of another shape than the outputs: refused
    ### BEGIN SOLUTION (Exercise 2.1)
    adapted = dict(params)  # φ₀ = θ: the same tensors, so gradients reach θ
    for _ in range(inner_steps):
        loss = loss_fn(forward(model, adapted, x_support), y_support)
        adapted = gradient_step(loss, adapted, inner_lr, first_order)
    return adapted
    ### END SOLUTION


def shape_checked(loss_fn: LossFn) -> LossFn:
    """``loss_fn`` that first checks, for each call, that float targets have the outputs' shape.

    See :func:`mamlkit.losses.check_loss_inputs`: no silent broadcasting of ``(S,)`` targets
    against ``(S, 1)`` outputs. Applying it twice checks once.
    """
    if getattr(loss_fn, "_shape_checked", False):
        return loss_fn

    def checked(outputs, targets):
        check_loss_inputs(outputs, targets)
        return loss_fn(outputs, targets)

    checked._shape_checked = True
    checked.__name__ = getattr(loss_fn, "__name__", "loss_fn")
    return checked
