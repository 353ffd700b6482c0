"""Models as functions of an explicit parameter dictionary.

MAML evaluates the *same* network with *different* parameters: θ, and every task's adapted
φᵢ. Instead of copying modules, the course keeps parameters in a plain ``{name: tensor}``
dictionary and runs the module through :func:`torch.func.functional_call`, so that φ can be
any tensor computed from θ (and gradients flow from φ back to θ).
"""

from __future__ import annotations

from typing import Dict

import torch
from torch import nn
from torch.func import functional_call

Params = Dict[str, torch.Tensor]


def get_params(model: nn.Module) -> Params:
    """The model's parameters as a fresh ``{name: tensor}`` dict of leaf tensors θ.

    The tensors are detached copies with ``requires_grad=True``: the outer optimiser owns
    them, and the module itself only serves as the architecture.
    """
    return {name: p.detach().clone().requires_grad_(True) for name, p in model.named_parameters()}


def check_params(model: nn.Module, params: Params) -> None:
    """Raise a ValueError unless ``params`` has exactly the names and shapes of ``model``'s."""
    expected = {name: tuple(p.shape) for name, p in model.named_parameters()}
    missing = sorted(set(expected) - set(params))
    unexpected = sorted(set(params) - set(expected))
    if missing or unexpected:
        problems = []
        if missing:
            problems.append(f"missing {missing}")
        if unexpected:
            problems.append(f"unexpected {unexpected}")
        raise ValueError(
            f"params does not match {type(model).__name__}: {'; '.join(problems)}. "
            f"Expected exactly these names: {sorted(expected)}"
        )
    for name, shape in expected.items():
        if tuple(params[name].shape) != shape:
            raise ValueError(
                f"params[{name!r}] has shape {tuple(params[name].shape)}, but "
                f"{type(model).__name__} needs {shape}"
            )


def forward(model: nn.Module, params: Params, x: torch.Tensor) -> torch.Tensor:
    """Run ``model`` on ``x`` with the parameters in ``params`` instead of its own."""
    return functional_call(model, params, (x,))
