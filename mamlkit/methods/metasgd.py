r"""Meta-SGD (Li et al. 2017, "Meta-SGD: Learning to Learn Quickly for Few-Shot Learning").

The inner step gets one learned rate per parameter *element*, a tensor α shaped like θ:

.. math::  \phi = \theta - \alpha \circ \nabla_\theta L(\theta, D^{s})

and the outer loop learns θ and α together (Eq. 1–3 of the paper). The inner loop is MAML's:
:func:`mamlkit.inner_loop.gradient_step` multiplies rate and gradient elementwise, so a dict of
rate tensors shaped like the parameters is all Meta-SGD needs. The paper initialises α at
random in [0.005, 0.1]; here every element starts at ``inner_lr``, so that Meta-SGD begins as
MAML and the two can be compared from the same start.
"""

from __future__ import annotations

import torch

from mamlkit.functional import Params
from mamlkit.methods.maml import MAML


def init_elementwise_rates(params: Params, inner_lr: float) -> dict[str, torch.Tensor]:
    """One learnable rate per parameter element, each starting at ``inner_lr``.

    Returns:
        ``{name: tensor}`` with each tensor shaped like ``params[name]``, ``requires_grad=True``.
    """
    return {name: torch.full_like(p, float(inner_lr)).detach().requires_grad_(True)
            for name, p in params.items()}


class MetaSGD(MAML):
    """MAML with a learned inner rate per parameter element."""

    name = "metasgd"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if not isinstance(self.learned_rates, dict):
            raise ValueError("MetaSGD needs learned_rates: one tensor shaped like each parameter "
                             "(see init_elementwise_rates, or build_method('metasgd', params))")

    @staticmethod
    def init_rates(params: Params, inner_lr: float, learn: bool = True):
        """Per-element rates starting at α; Meta-SGD always learns them."""
        return init_elementwise_rates(params, inner_lr)
