r"""Prototypical Networks (Snell et al. 2017, "Prototypical Networks for Few-shot Learning").

No inner loop. Each class k is represented by its *prototype*, the mean embedding of its
support examples, and a query is scored by its negative squared Euclidean distance to each
prototype (Eq. 1–2 of the paper):

.. math::  c_k = \frac{1}{|S_k|}\sum_{(x, y) \in S_k} f_\theta(x), \qquad
           \text{logit}_k(x) = -\lVert f_\theta(x) - c_k \rVert^2

Training minimises the cross-entropy of these logits on the query set. The embedding f is the
network's body (:mod:`mamlkit.methods.embedding`); the head is not used.
"""

from __future__ import annotations

import torch
from torch import nn

from mamlkit.evaluate import works_under_inference_mode
from mamlkit.functional import Params
from mamlkit.losses import accuracy
from mamlkit.methods.base import MetaLearner, Metric, check_implementation
from mamlkit.methods.embedding import (
    embed,
    embed_tasks,
    expand_tasks,
    identity_head,
    split_head,
    task_query_outputs,
)
from mamlkit.outer_loop import check_tasks
from mamlkit.protocols import check_protocol
from mamlkit.tasks import TaskBatch


def prototypes(features: torch.Tensor, labels: torch.Tensor, n_way: int) -> torch.Tensor:
    """The mean support embedding of each class.

    Args:
        features: ``(S, C)`` or ``(T, S, C)`` support embeddings.
        labels: ``(S,)`` or ``(T, S)`` int64 labels in ``0..n_way-1``.
        n_way: number of classes.

    Returns:
        ``(n_way, C)`` or ``(T, n_way, C)``.

    Raises:
        ValueError: if a class has no support example (its prototype would be undefined).
    """
    one_hot = torch.nn.functional.one_hot(labels.long(), n_way).to(features.dtype)  # (..., S, n_way)
    counts = one_hot.sum(dim=-2)  # (..., n_way)
    if (counts == 0).any():
        raise ValueError(f"every one of the {n_way} classes needs at least one support example; "
                         f"support labels per class: {counts.tolist()}")
    ### BEGIN SOLUTION (Exercise 5.1)
    return (one_hot.transpose(-1, -2) @ features) / counts.unsqueeze(-1)
    ### END SOLUTION


def prototype_logits(features: torch.Tensor, prototypes: torch.Tensor) -> torch.Tensor:
    """Negative squared Euclidean distances from each query embedding to each prototype.

    Args:
        features: ``(Q, C)`` or ``(T, Q, C)`` query embeddings.
        prototypes: ``(n_way, C)`` or ``(T, n_way, C)``.

    Returns:
        ``(Q, n_way)`` or ``(T, Q, n_way)`` logits.
    """
    ### BEGIN SOLUTION (Exercise 5.1)
    differences = features.unsqueeze(-2) - prototypes.unsqueeze(-3)  # (..., Q, n_way, C)
    return -(differences ** 2).sum(dim=-1)
    ### END SOLUTION


class ProtoNet(MetaLearner):
    """Prototypical Networks: classify by distance to the class means of the support set."""

    name = "protonet"
    has_inner_loop = False

    @staticmethod
    def init_rates(params: Params, inner_lr: float, learn: bool):
        """None: ProtoNet has no inner loop, hence no rates."""
        return None

    def meta_loss(self, model: nn.Module, params: Params, tasks: TaskBatch,
                  implementation: str = "fast") -> tuple[torch.Tensor, torch.Tensor]:
        """Mean query cross-entropy of the prototype logits; ``(loss, (T, Q, n_way) logits)``."""
        check_implementation(implementation)
        check_tasks(tasks)
        _, head = split_head(params)
        n_way = head["head.weight"].shape[0]
        if implementation == "fast":
            theta = expand_tasks(params, tasks.num_tasks)
            centres = prototypes(embed_tasks(model, theta, tasks.x_support), tasks.y_support, n_way)
            logits = prototype_logits(embed_tasks(model, theta, tasks.x_query), centres)
            return self.loss_fn(logits, tasks.y_query).mean(), logits.detach()
        losses, outputs = [], []
        for i in range(tasks.num_tasks):
            task = tasks.task(i)
            centres = prototypes(embed(model, params, task.x_support), task.y_support, n_way)
            logits = prototype_logits(embed(model, params, task.x_query), centres)
            losses.append(self.loss_fn(logits, task.y_query))
            outputs.append(logits.detach())
        return torch.stack(losses).mean(), torch.stack(outputs)

    @works_under_inference_mode
    def adaptation_curve(self, model: nn.Module, params: Params, tasks: TaskBatch, max_steps: int,
                         metric: Metric = accuracy, protocol: str = "transductive") -> torch.Tensor:
        """``(1, T)``: each task's query metric; there are no steps, so one row whatever ``max_steps``.

        The query embeddings follow ``protocol`` (see :mod:`mamlkit.protocols`).
        """
        check_protocol(protocol)
        _, head = split_head(params)
        n_way = head["head.weight"].shape[0]
        with torch.no_grad():
            theta = identity_head(expand_tasks({n: p.detach() for n, p in params.items()}, tasks.num_tasks))
            centres = prototypes(embed_tasks(model, theta, tasks.x_support), tasks.y_support, n_way)
            query = task_query_outputs(model, theta, tasks.x_support, tasks.x_query, protocol)
            return metric(prototype_logits(query, centres), tasks.y_query).unsqueeze(0)
