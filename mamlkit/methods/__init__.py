"""Meta-learning algorithms behind one interface (see :mod:`mamlkit.methods.base`).

=============  ===========================================================================
``maml``       MAML; ``first_order=True`` is first-order MAML (:mod:`.maml`)
``anil``       ANIL: the inner loop adapts the head only (:mod:`.anil`)
``metasgd``    Meta-SGD: a learned inner rate per parameter element (:mod:`.metasgd`)
``protonet``   Prototypical Networks: no inner loop, nearest class mean (:mod:`.protonet`)
``reptile``    Reptile: θ moves towards each task's SGD-adapted weights (:mod:`.reptile`)
``protomaml``  ProtoMAML: MAML whose head starts at the prototypes (:mod:`.protomaml`)
=============  ===========================================================================
"""

from __future__ import annotations

from typing import Callable, Optional

import torch

from mamlkit.functional import Params
from mamlkit.losses import cross_entropy
from mamlkit.methods.anil import ANIL
from mamlkit.methods.base import MetaLearner, outer_step
from mamlkit.methods.maml import MAML
from mamlkit.methods.metasgd import MetaSGD
from mamlkit.methods.protomaml import ProtoMAML
from mamlkit.methods.protonet import ProtoNet
from mamlkit.methods.reptile import Reptile

ALGORITHMS: dict[str, type[MetaLearner]] = {cls.name: cls for cls in (MAML, ANIL, MetaSGD, ProtoNet, Reptile, ProtoMAML)}

__all__ = ["ALGORITHMS", "ANIL", "MAML", "MetaLearner", "MetaSGD", "ProtoMAML", "ProtoNet", "Reptile", "build_method", "outer_step"]


def build_method(algorithm: str, params: Params, inner_lr: float = 0.4, inner_steps: int = 1,
                 first_order: bool = False, learn_inner_lrs: bool = False,
                 saved_rates: Optional[dict[str, torch.Tensor]] = None,
                 loss_fn: Callable = cross_entropy) -> MetaLearner:
    """The algorithm called ``algorithm``, with its learned tensors fresh or from a checkpoint.

    Args:
        algorithm: one of :data:`ALGORITHMS` (``maml``, ``anil``, ``metasgd``, ``protonet``,
            ``reptile``, ``protomaml``).
        params: θ; learned rates are shaped after it and placed on its device.
        saved_rates: learned rates from a checkpoint (``state["inner_lrs"]``); when given they
            replace the fresh ones, as trainable tensors.

    Raises:
        ValueError: for an unknown algorithm name.
    """
    if algorithm not in ALGORITHMS:
        raise ValueError(f"algorithm must be one of {sorted(ALGORITHMS)}, got {algorithm!r}")
    cls = ALGORITHMS[algorithm]
    rates = cls.init_rates(params, inner_lr, learn_inner_lrs)
    if rates is not None:
        device = next(iter(params.values())).device
        source = saved_rates if saved_rates is not None else rates
        rates = {n: source[n].detach().to(device).clone().requires_grad_(True) for n in rates}
    return cls(inner_lr, inner_steps, first_order, rates, loss_fn)
