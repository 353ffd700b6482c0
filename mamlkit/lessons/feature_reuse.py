r"""What adaptation changes: per-layer parameter change and representation similarity (CKA).

Raghu et al. (2020, "Rapid Learning or Feature Reuse?", §3) asked whether MAML's inner loop
changes the network's features or only its last layer. Two measurements answer it:

- how far each layer's parameters move during adaptation, relative to their size,
  :math:`\lVert\phi_\ell - \theta_\ell\rVert / \lVert\theta_\ell\rVert`;
- how similar each layer's representation of the same images is before and after adaptation,
  by linear centred kernel alignment (CKA, Kornblith et al. 2019, Eq. 5): 1 means the same
  representation up to rotation and scale, lower values mean the layer changed what it computes.

If the body's CKA stays near 1 while the head changes, MAML mostly *reuses* features; the
paper found exactly that, and ANIL (:mod:`mamlkit.methods.anil`) builds on it.

Use enough images. Linear CKA compares two ``n × n`` centred Gram matrices, whose rank is at
most ``n − 1``; with few images any two representations look alike and CKA is biased upwards.
On the shipped 5-way 1-shot MAML checkpoint (notebook 05 §3, 50 test tasks) the last conv
block's CKA before/after adaptation is about 0.83 on 5 query images per task and 0.69 on 75,
the head's 0.70 and 0.49. Measure on 15 or more query images per class.
"""

from __future__ import annotations

import torch
from torch import nn

from mamlkit.functional import Params, forward


def linear_cka(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    r"""Linear CKA between two representations of the same ``n`` examples.

    .. math::  \mathrm{CKA}(X, Y) = \frac{\lVert Y_c^\top X_c \rVert_F^2}
               {\lVert X_c^\top X_c \rVert_F \, \lVert Y_c^\top Y_c \rVert_F}

    with :math:`X_c, Y_c` the column-centred matrices (Kornblith et al. 2019, Eq. 5).

    Args:
        x: ``(n, p)`` one row per example (any trailing shape is flattened).
        y: ``(n, q)`` the same examples in another representation.

    Returns:
        a scalar in [0, 1]; invariant to orthogonal transforms and isotropic scaling of either.

    Raises:
        ValueError: if ``x`` and ``y`` hold different numbers of examples, or fewer than 2.
    """
    if x.shape[0] != y.shape[0] or x.shape[0] < 2:
        raise ValueError(f"CKA compares two representations of the same n >= 2 examples, got "
                         f"{x.shape[0]} and {y.shape[0]} rows")
    x = x.reshape(x.shape[0], -1).double()
    y = y.reshape(y.shape[0], -1).double()
    x = x - x.mean(dim=0)
    y = y - y.mean(dim=0)
    # The same quantities through the n × n Gram matrices, K = X_c X_c^T and L = Y_c Y_c^T:
    # ‖Y_c^T X_c‖_F² = ⟨K, L⟩ and ‖X_c^T X_c‖_F = ‖K‖_F. With few examples and wide layers
    # (5 images × 12,544 activations) they are far smaller than the p × p matrices.
    k, l_ = x @ x.T, y @ y.T
    return (k * l_).sum() / (k.norm() * l_.norm())


def layer_names(params: Params) -> list[str]:
    """The layers of a parameter dict, in order: ``blocks.0``, ..., ``head`` (name prefixes)."""
    layers: list[str] = []
    for name in params:
        layer = name.rsplit(".", 2)[0] if name.startswith("blocks.") else name.rsplit(".", 1)[0]
        if layer not in layers:
            layers.append(layer)
    return layers


def relative_change(params: Params, adapted: Params) -> dict[str, float]:
    r"""Per layer, :math:`\lVert\phi_\ell - \theta_\ell\rVert / \lVert\theta_\ell\rVert` over all its tensors."""
    result = {}
    for layer in layer_names(params):
        names = [n for n in params if n.startswith(layer + ".")]
        delta = torch.cat([(adapted[n] - params[n]).detach().flatten() for n in names])
        size = torch.cat([params[n].detach().flatten() for n in names])
        result[layer] = (delta.norm() / size.norm()).item()
    return result


def layer_outputs(model: nn.Module, params: Params, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Every block's output and the logits, for images ``x`` ``(S, ...)`` under ``params``.

    Returns:
        ``{"blocks.0": (S, C, H, W), ..., "head": (S, n_way)}``.
    """
    outputs: dict[str, torch.Tensor] = {}
    hooks = [block.register_forward_hook(
        lambda module, inputs, output, name=f"blocks.{i}": outputs.__setitem__(name, output.detach()))
        for i, block in enumerate(model.blocks)]
    try:
        with torch.no_grad():
            outputs["head"] = forward(model, params, x).detach()
    finally:
        for hook in hooks:
            hook.remove()
    return outputs


def representation_similarity(model: nn.Module, params: Params, adapted: Params,
                              x: torch.Tensor) -> dict[str, float]:
    """Per layer, linear CKA between the outputs for ``x`` under θ and under the adapted φ.

    ``x`` should hold many images (15 or more per class): with few, CKA is biased upwards (see
    the module's documentation).
    """
    before = layer_outputs(model, params, x)
    after = layer_outputs(model, adapted, x)
    return {layer: linear_cka(before[layer], after[layer]).item() for layer in before}
