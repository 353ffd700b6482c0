r"""ProtoMAML (Triantafillou et al. 2020, "Meta-Dataset", §4.2): MAML whose head starts at the prototypes.

Before each task's inner loop the linear head is replaced by the one that computes
Prototypical Networks' logits (Snell et al. 2017, Eq. 1–2, expanded):

.. math::  -\lVert f(x) - c_k\rVert^2 = 2 c_k^\top f(x) - \lVert c_k\rVert^2 - \lVert f(x)\rVert^2,
   \qquad W_k = 2 c_k,\quad b_k = -\lVert c_k\rVert^2

(the last term is the same for every class, so the softmax ignores it). The head then starts
where ProtoNet ends, with the task's own classes in it, and MAML's inner loop adapts every
layer from there. θ's own head is not used. Gradients reach the body through the prototypes as
well as through the inner loop (Triantafillou et al. keep that path in fo-Proto-MAML too).

Notebook 05 motivates it: on the shipped MAML checkpoint, adapting the head alone from θ's head
fails; :func:`prototype_head` gives head-only adaptation another starting point.
"""

from __future__ import annotations

import torch
from torch import nn

from mamlkit.evaluate import works_under_inference_mode
from mamlkit.fast import adapt_tasks_from, forward_tasks, per_task
from mamlkit.functional import Params, adaptable, forward
from mamlkit.inner_loop import gradient_step
from mamlkit.losses import accuracy
from mamlkit.methods.base import Metric, check_implementation
from mamlkit.methods.embedding import embed, embed_tasks, expand_tasks, split_head
from mamlkit.methods.maml import MAML
from mamlkit.methods.protonet import prototypes
from mamlkit.outer_loop import check_tasks
from mamlkit.protocols import check_protocol, query_outputs
from mamlkit.tasks import TaskBatch


def prototype_head(features: torch.Tensor, labels: torch.Tensor, n_way: int) -> Params:
    r"""The linear head whose logits are ProtoNet's up to a per-example constant: ``W = 2c``, ``b = -‖c‖²``.

    Args:
        features: ``(S, C)`` or ``(T, S, C)`` support embeddings; labels ``(S,)`` or ``(T, S)``.

    Returns:
        ``{"head.weight": (..., n_way, C), "head.bias": (..., n_way)}``.
    """
    centres = prototypes(features, labels, n_way)
    return {"head.weight": 2 * centres, "head.bias": -(centres ** 2).sum(dim=-1)}


def with_prototype_heads(model: nn.Module, params: Params, x_support: torch.Tensor,
                         y_support: torch.Tensor) -> Params:
    """θ for ``T`` tasks (a task axis on every tensor), each head set to its task's prototype head."""
    _, head = split_head(params)
    n_way = head["head.weight"].shape[0]
    params = adaptable(params)
    # Two expansions of θ: the inner loop's gradients are taken with respect to the start's
    # tensors, so they must not also be the tensors the prototypes were computed from (the
    # inner gradient would then include the path through the head's initialisation).
    start = expand_tasks(params, x_support.shape[0])
    features = embed_tasks(model, expand_tasks(params, x_support.shape[0]), x_support)
    return {**start, **prototype_head(features, y_support, n_way)}


class ProtoMAML(MAML):
    """MAML whose inner loop starts each task from the prototype head (θ's head is not used).

    Its inner rates are MAML's (learned per tensor from α with ``learn_inner_lrs``).
    """

    name = "protomaml"

    def meta_loss(self, model: nn.Module, params: Params, tasks: TaskBatch,
                  implementation: str = "fast") -> tuple[torch.Tensor, torch.Tensor]:
        """Mean query loss after adapting from the prototype head; ``(loss, (T, Q, n_way) outputs)``."""
        check_implementation(implementation)
        check_tasks(tasks)
        if implementation == "fast":
            start = with_prototype_heads(model, params, tasks.x_support, tasks.y_support)
            adapted = adapt_tasks_from(model, start, tasks.x_support, tasks.y_support, self.loss_fn,
                                 self.inner_lr, self.inner_steps, self.first_order)
            outputs = forward_tasks(model, adapted, tasks.x_query)
            return per_task(self.loss_fn, outputs, tasks.y_query).mean(), outputs.detach()
        n_way = params["head.weight"].shape[0]
        theta = adaptable(params)
        losses, outputs = [], []
        for i in range(tasks.num_tasks):
            task = tasks.task(i)
            start = {n: p.view_as(p) for n, p in theta.items()}  # see with_prototype_heads
            phi = {**start, **prototype_head(embed(model, theta, task.x_support), task.y_support, n_way)}
            for _ in range(self.inner_steps):
                phi = gradient_step(self.loss_fn(forward(model, phi, task.x_support), task.y_support),
                                    phi, self.inner_lr, self.first_order)
            out = forward(model, phi, task.x_query)
            losses.append(self.loss_fn(out, task.y_query))
            outputs.append(out.detach())
        return torch.stack(losses).mean(), torch.stack(outputs)

    @works_under_inference_mode
    def adaptation_curve(self, model: nn.Module, params: Params, tasks: TaskBatch, max_steps: int,
                         metric: Metric = accuracy, protocol: str = "transductive") -> torch.Tensor:
        """``(max_steps + 1, T)``: row 0 is the prototype head before any step (ProtoNet's accuracy)."""
        check_protocol(protocol)
        rates = self.inner_lr
        if isinstance(rates, dict):
            rates = {n: r.detach() for n, r in rates.items()}
        with torch.enable_grad():
            theta = {n: p.detach().requires_grad_(True) for n, p in params.items()}
            adapted = {n: t.detach().requires_grad_(True) for n, t in
                       with_prototype_heads(model, theta, tasks.x_support, tasks.y_support).items()}
            rows = []
            for step in range(max_steps + 1):
                with torch.no_grad():
                    outputs = query_outputs(model, adapted, tasks.x_support, tasks.x_query, protocol)
                    rows.append(per_task(metric, outputs, tasks.y_query, what="metric"))
                if step < max_steps:
                    adapted = {n: t.detach().requires_grad_(True) for n, t in
                               adapt_tasks_from(model, adapted, tasks.x_support, tasks.y_support, self.loss_fn,
                                          rates, 1, first_order=True).items()}
        return torch.stack(rows)
