r"""Evaluation protocols: which images batch norm may look at when it classifies a query.

MAML's network normalises every layer with the statistics of the batch it is given, at
training and at test time (the paper's code keeps no running statistics). At test time the
query images are then normalised with *their own* mean and variance: the prediction for one
query image depends on the other query images evaluated with it. Such an evaluation is
*transductive*, and its accuracy changes with the number of query images per class — for the
shipped 5-way 1-shot checkpoint 99.2 ± 0.4% with 1 query per class against 97.8 ± 0.2% with 15
on the same 600 test tasks (docs/results.md, "MAML and its neighbours").

Two protocols are offered:

- ``"transductive"``: the query set is normalised with its own statistics — the protocol
  of the MAML paper and its public code, kept so that published numbers can be reproduced.
- ``"support-stats"``: every layer normalises the query images with the mean and variance of
  the *support* images at that layer (the task's labelled data). This is **MetaBN** (Bronskill
  et al., "TaskNorm: Rethinking Batch Normalization for Meta-Learning", ICML 2020, §3), here
  applied *at test time only* to a network meta-trained transductively: one of the baselines
  TaskNorm improves on, not TaskNorm itself. Each query image is classified on its own, so the
  result no longer depends on how many query images are evaluated together; but the network
  was trained with query statistics, so its support-stats accuracy is that of a mismatched
  protocol. :func:`support_stats_meta_loss` trains with MetaBN, so that both sides match
  (``benchmarks/metabn_training.py``; notebook 05 §4 compares the two).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mamlkit.functional import Params

PROTOCOLS = ("transductive", "support-stats")


def check_protocol(protocol: str) -> None:
    """Raise a ValueError unless ``protocol`` is one of :data:`PROTOCOLS`."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")


def support_stats_forward_tasks(params: Params, x_support: torch.Tensor,
                                x_query: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    r"""Conv4's task-batched forward with every batch norm using the support set's statistics.

    At each block the convolution runs on support and query images alike; the per-(task,
    channel) mean :math:`\mu` and biased variance :math:`\sigma^2` are taken over the support
    images and pixels only, and both sets are normalised with them,
    :math:`\gamma (h - \mu)/\sqrt{\sigma^2 + \epsilon} + \beta` (γ, β: batch norm's
    scale and shift, not the meta learning rate). The support images are
    therefore processed exactly as by ``Conv4.forward_tasks``; each query image's output depends
    on the support set and itself only. Differentiable with respect to ``params``, through the
    support statistics too (MetaBN training, :func:`support_stats_meta_loss`).

    Args:
        params: Conv4's parameters, each with a leading task axis ``(T, ...)``.
        x_support: ``(T, S, C, H, W)`` support images.
        x_query: ``(T, Q, C, H, W)`` query images.
        eps: batch norm's ε (that of ``nn.BatchNorm2d``).

    Returns:
        ``(T, Q, n_way)`` query logits.
    """
    num_tasks, num_support = x_support.shape[:2]
    x = torch.cat([x_support, x_query], dim=1)
    num_examples = x.shape[1]
    h = x.transpose(0, 1).reshape(num_examples, num_tasks * x.shape[2], *x.shape[3:])
    block = 0
    while f"blocks.{block}.conv.weight" in params:
        weight = params[f"blocks.{block}.conv.weight"]
        h = F.conv2d(h, weight.reshape(-1, *weight.shape[2:]), stride=2, padding=1, groups=num_tasks)
        support = h[:num_support]
        mean = support.mean(dim=(0, 2, 3), keepdim=True)
        var = ((support - mean) ** 2).mean(dim=(0, 2, 3), keepdim=True)
        # Written out (not F.batch_norm with training=False, which passes no gradient to the
        # statistics), so that MetaBN training differentiates through them.
        weight = params[f"blocks.{block}.norm.weight"].reshape(1, -1, 1, 1)
        bias = params[f"blocks.{block}.norm.bias"].reshape(1, -1, 1, 1)
        h = torch.relu((h - mean) * torch.rsqrt(var + eps) * weight + bias)
        block += 1
    features = h[num_support:].mean(dim=(2, 3)).reshape(num_examples - num_support, num_tasks, -1)
    logits = torch.einsum("qtc,tnc->tqn", features, params["head.weight"])
    return logits + params["head.bias"].unsqueeze(1)


def query_outputs(model: nn.Module, params: Params, x_support: torch.Tensor,
                  x_query: torch.Tensor, protocol: str = "transductive") -> torch.Tensor:
    """The outputs for the query images of ``T`` tasks under an evaluation protocol.

    Args:
        model: a network with ``forward_tasks``; ``"support-stats"`` needs Conv4's layout.
        params: each tensor with a leading task axis (e.g. every task's adapted φ).
        x_support: ``(T, S, ...)``; x_query: ``(T, Q, ...)``.
        protocol: one of :data:`PROTOCOLS`.

    Returns:
        ``(T, Q, out)``.
    """
    check_protocol(protocol)
    if protocol == "transductive":
        return model.forward_tasks(params, x_query)
    if "blocks.0.norm.weight" not in params:
        raise TypeError(f"protocol 'support-stats' needs a Conv4-like network with batch norm; "
                        f"{type(model).__name__} has none (use 'transductive')")
    return support_stats_forward_tasks(params, x_support, x_query)


def support_stats_meta_loss(model: nn.Module, params: Params, tasks, loss_fn, inner_lr, inner_steps: int,
                            first_order: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """MAML's meta-loss with MetaBN: the query set after adaptation is normalised with the support's statistics.

    The inner loop is MAML's (the support set is normalised with its own statistics, as in
    both protocols); only the query outputs differ from :func:`mamlkit.fast.meta_loss_batched`.
    Training with it gives a network whose ``"support-stats"`` evaluation matches its training.

    Returns:
        ``(mean query loss, (T, Q, n_way) detached query outputs)``.
    """
    from mamlkit.fast import adapt_tasks, per_task

    adapted = adapt_tasks(model, params, tasks.x_support, tasks.y_support, loss_fn, inner_lr,
                          inner_steps, first_order)
    outputs = query_outputs(model, adapted, tasks.x_support, tasks.x_query, "support-stats")
    return per_task(loss_fn, outputs, tasks.y_query).mean(), outputs.detach()
