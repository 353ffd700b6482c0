r"""MAML end to end: the whole meta-training loop on sine waves, in one function (Exercise 3.4).

Notebook 03 builds MAML from parts: :func:`mamlkit.inner_loop.adapt` (Exercise 2.1),
:func:`mamlkit.outer_loop.meta_loss` (Exercise 3.1), :func:`mamlkit.outer_loop.outer_step`,
:func:`mamlkit.lessons.sine_experiment.train_sine_maml`. :func:`train_maml_from_scratch` is the same
algorithm written out in one loop, with nothing from those parts: every outer step

1. **samples** a meta-batch of sine tasks (:func:`mamlkit.data.sinusoid.sample_sinusoid_tasks`),
2. **adapts** θ to each task's support set with one SGD step whose gradient keeps its graph
   (``torch.autograd.grad(..., create_graph=True)``),
3. scores each adapted φᵢ on its query set and averages: the **meta-loss**,
4. takes one Adam **step** on θ against the meta-loss's gradient,
5. **logs** the meta-loss.

Exercise 3.4 is graded on what it learns: the test trains the learner's loop (a short run,
``tests/test_maml_from_scratch.py``) and checks the 5-shot MSE after one fine-tuning step on
100 new waves against a threshold that a correct loop clears on every seed measured and a loop
without the second-order term, without the inner step, or without training does not.
"""

from __future__ import annotations

import time

import torch

from mamlkit.data.sinusoid import sample_sinusoid_tasks
from mamlkit.functional import forward, get_params
from mamlkit.lessons.sine_experiment import SineRun
from mamlkit.losses import mse
from mamlkit.models import SineMLP

__all__ = ["train_maml_from_scratch"]


def train_maml_from_scratch(
    iterations: int = 2_000,
    meta_batch_size: int = 4,
    k_shot: int = 10,
    inner_lr: float = 0.01,
    meta_lr: float = 0.01,
    hidden: int = 40,
    seed: int = 0,
    log_every: int = 0,
) -> SineRun:
    """Meta-train a sine network with second-order MAML, one inner SGD step, written out in full.

    The defaults are a short run (well under a minute on one CPU thread): meta-batches of 4
    tasks instead of the paper's 25, and β = 0.01 instead of 10⁻³, which trade the final error
    for speed. With the paper's settings the same loop is :func:`mamlkit.lessons.sine_experiment.train_sine_maml`
    with ``method="loop"``, only slower.

    What each outer step does (the body of the loop, Exercise 3.4):

    1. sample ``meta_batch_size`` tasks with ``sample_sinusoid_tasks(meta_batch_size, k_shot,
       k_shot, generator).batch``, once per step (the test replays your first step on the same
       tasks);
    2. for each task, the support MSE of θ (``forward(model, params, x)``), its gradient with
       ``torch.autograd.grad(..., create_graph=True)``, and the adapted
       ``{name: p - inner_lr * g}``;
    3. the meta-loss: the mean over tasks of the adapted parameters' query MSE;
    4. ``optimizer.zero_grad()``, ``backward()`` on the meta-loss, ``optimizer.step()``;
    5. append the meta-loss (a float) to ``losses``.

    Args:
        iterations: outer steps.
        meta_batch_size: tasks per outer step (T).
        k_shot: support points per task, and as many query points.
        inner_lr: α, the inner SGD step size.
        meta_lr: β, Adam's learning rate on θ.
        hidden: width of the two hidden layers of the :class:`~mamlkit.models.SineMLP`.
        seed: the network's initialisation (``seed``) and the task sampler (``seed + 1``).
        log_every: print the mean meta-loss of the last ``log_every`` steps every so often
            (0: silent).

    Returns:
        A :class:`~mamlkit.lessons.sine_experiment.SineRun`: ``params`` is the trained θ, ``losses[i]``
        the meta-loss (mean query MSE after the inner step) of outer step ``i``.
    """
    if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 1:
        raise ValueError(f"iterations must be a positive integer, got {iterations!r}")
    model = SineMLP(hidden=hidden, generator=torch.Generator().manual_seed(seed))
    params = get_params(model)  # θ: {name: leaf tensor}, what Adam moves
    optimizer = torch.optim.Adam(params.values(), lr=meta_lr)
    generator = torch.Generator().manual_seed(seed + 1)
    losses: list[float] = []
    start = time.perf_counter()
    for step in range(iterations):
        ### BEGIN SOLUTION (Exercise 3.4)
        tasks = sample_sinusoid_tasks(meta_batch_size, k_shot, k_shot, generator).batch
        query_losses = []
        for i in range(tasks.num_tasks):
            x_support, y_support, x_query, y_query = tasks.task(i)
            support_loss = mse(forward(model, params, x_support), y_support)
            grads = torch.autograd.grad(support_loss, tuple(params.values()), create_graph=True)
            adapted = {name: p - inner_lr * g for (name, p), g in zip(params.items(), grads)}
            query_losses.append(mse(forward(model, adapted, x_query), y_query))
        meta_loss = torch.stack(query_losses).mean()
        optimizer.zero_grad()
        meta_loss.backward()
        optimizer.step()
        losses.append(meta_loss.item())
        ### END SOLUTION
        if log_every and (step + 1) % log_every == 0:
            recent = losses[-log_every:]
            print(f"step {step + 1:5}: meta-loss {sum(recent) / len(recent):.3f} (mean of the last {len(recent)})")
    settings = dict(iterations=iterations, meta_batch_size=meta_batch_size, k_shot=k_shot, inner_lr=inner_lr,
                    meta_lr=meta_lr, hidden=hidden, seed=seed)
    return SineRun(model, params, inner_lr, losses, time.perf_counter() - start, settings)
