"""Embeddings from a network with a linear head, per task and for many tasks at once.

ANIL and Prototypical Networks treat the network as a *body* f (everything before the last
linear layer ``head``) followed by the head. The body's output, the embedding f(x), is exactly
what the head receives; with the head replaced by the identity (weight I, bias 0) the network
outputs f(x) itself. So the one tested forward of the model — per task through
:func:`mamlkit.functional.forward`, or ``forward_tasks`` for many tasks — also computes
embeddings, and there is no second copy of the body to keep in step with it.
"""

from __future__ import annotations

import threading
import weakref

import torch
from torch import nn

from mamlkit.fast import forward_tasks
from mamlkit.functional import Params, forward
from mamlkit.protocols import query_outputs

HEAD = ("head.weight", "head.bias")


def check_has_head(params: Params) -> None:
    """Raise a TypeError unless ``params`` has a linear ``head`` (like Conv4's)."""
    missing = [name for name in HEAD if name not in params]
    if missing and all(f"module.{name}" in params for name in HEAD):
        raise TypeError(
            "params are those of a wrapper (nn.DataParallel or DistributedDataParallel: 'module.head.weight'), "
            "which torch.func.functional_call cannot run through; pass the network inside it (model.module) "
            "and its parameters")
    if missing:
        raise TypeError(
            f"this algorithm needs a network whose last layer is a linear layer named 'head' "
            f"(like mamlkit.models.Conv4); params has no {missing}: name your last linear layer "
            f"'head' (self.head = nn.Linear(...)), or wrap the network in a module whose 'head' it is"
        )


def split_head(params: Params) -> tuple[Params, Params]:
    """``(body, head)``: the parameters before the head, and the head's weight and bias."""
    check_has_head(params)
    body = {name: p for name, p in params.items() if name not in HEAD}
    return body, {name: params[name] for name in HEAD}


def identity_head(params: Params) -> Params:
    """``params`` with the head replaced by the identity, so the network outputs f(x).

    The head weight ``(..., n_way, C)`` becomes ``I`` ``(..., C, C)`` and the bias zeros
    ``(..., C)``, keeping any leading task axis.
    """
    check_has_head(params)
    weight = params["head.weight"]
    width = weight.shape[-1]
    eye = torch.eye(width, dtype=weight.dtype, device=weight.device).expand(*weight.shape[:-2], width, width)
    zeros = weight.new_zeros(*weight.shape[:-2], width)
    return {**params, "head.weight": eye, "head.bias": zeros}


def embed(model: nn.Module, params: Params, x: torch.Tensor) -> torch.Tensor:
    """f(x) for one task: ``x`` ``(S, *input_shape)`` → ``(S, C)``."""
    return forward(model, identity_head(params), x)


def embed_tasks(model: nn.Module, params: Params, x: torch.Tensor) -> torch.Tensor:
    """f(x) for ``T`` tasks: params with a task axis, ``x`` ``(T, S, ...)`` → ``(T, S, C)``.

    Any module with a ``head``: its own ``forward_tasks`` when it has one, else
    :func:`mamlkit.fast.forward_tasks` (vmap where exact, else task by task).
    """
    return forward_tasks(model, identity_head(params), x)


def task_query_outputs(model: nn.Module, params: Params, x_support: torch.Tensor, x_query: torch.Tensor,
                       protocol: str = "transductive") -> torch.Tensor:
    """The query outputs ``(T, Q, out)`` of ``T`` tasks under an evaluation protocol, any module.

    ``"transductive"`` runs :func:`mamlkit.fast.forward_tasks` (a plain module without
    ``forward_tasks`` included); ``"support-stats"`` needs Conv4's layout
    (:func:`mamlkit.protocols.query_outputs`).
    """
    if protocol == "transductive":
        return forward_tasks(model, params, x_query)
    return query_outputs(model, params, x_support, x_query, protocol)


# Modules whose forward was checked to end with its head (check_head_is_last).
_HEAD_IS_LAST: "weakref.WeakSet[nn.Module]" = weakref.WeakSet()
_CHECKING = threading.Lock()


def check_head_is_last(model: nn.Module, params: Params, x: torch.Tensor) -> None:
    """Raise a ValueError unless ``forward`` is ``head(f(x))``, as ANIL's head-only loop assumes.

    ANIL computes the logits from the body's features with the head alone
    (:func:`head_logits`); a ``forward`` that does more after its head (a temperature, a
    softmax, a second layer) would be another network. Checked once per module, without
    gradients, on the examples ``x`` ``(S, ...)`` of one task.

    Raises:
        ValueError: ``head_logits(head, embed(x))`` differs from ``forward(x)``.
    """
    if model in _HEAD_IS_LAST:
        return
    with _CHECKING:  # training's task threads: one check at a time (it runs the module itself)
        if model not in _HEAD_IS_LAST:
            _check_head_is_last(model, params, x)


def _check_head_is_last(model: nn.Module, params: Params, x: torch.Tensor) -> None:
    from mamlkit.evaluate import evaluation_mode  # evaluate builds on the methods' modules

    # Dropout off, and any other random layer drawing the same numbers in both forwards.
    devices = [x.device] if x.device.type == "cuda" else []
    with torch.no_grad(), evaluation_mode(model), torch.random.fork_rng(devices=devices):
        theta = {n: p.detach() for n, p in params.items()}
        torch.manual_seed(0)
        expected = forward(model, theta, x)
        torch.manual_seed(0)
        got = head_logits(split_head(theta)[1], embed(model, theta, x))
        difference = float((got - expected).abs().max()) if got.shape == expected.shape else float("inf")
    if not difference <= 1e-4 * (float(expected.abs().max()) + 1e-6):
        raise ValueError(f"{type(model).__name__}.forward does not end with its linear layer 'head' (head(features) "
                         f"differs from forward by {difference:.3g}), but ANIL adapts and applies the head alone; "
                         "make head the last operation of forward (move what comes after it into the loss)")
    _HEAD_IS_LAST.add(model)


def expand_tasks(params: Params, num_tasks: int) -> Params:
    """θ broadcast to a leading task axis, ``(T, *shape)``, without copying."""
    return {name: p.expand(num_tasks, *p.shape) for name, p in params.items()}


def head_logits(head: Params, features: torch.Tensor) -> torch.Tensor:
    r"""The linear head, :math:`f W^\top + b`, for one task or many.

    Args:
        head: ``head.weight`` ``(n_way, C)`` and ``head.bias`` ``(n_way,)``, or both with a
            leading task axis ``(T, ...)``.
        features: ``(S, C)``, or ``(T, S, C)`` with a task axis.

    Returns:
        ``(S, n_way)`` or ``(T, S, n_way)`` logits.
    """
    return features @ head["head.weight"].transpose(-1, -2) + head["head.bias"].unsqueeze(-2)
