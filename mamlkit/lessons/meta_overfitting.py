r"""Meta-overfitting on sine waves: what goes wrong without disjoint query sets or enough tasks.

MAML's objective is the loss on a task's *query* set after adapting on its *support* set
(Finn et al. 2017, §2.2, Algorithm 1): the query examples stand for the task's new data, so
they must be held out from the inner loop, just as test data are held out from training.
Two ways to break that, each measured by :func:`train_meta_overfitting`:

- ``"query_is_support"``: score each adapted :math:`\phi` on the very points it adapted on.
  The outer loop then rewards a θ whose step memorises the support points, which is not what
  helps on new points of the same wave.
- ``"fixed_pool"``: draw every meta-batch from a small fixed pool of tasks. θ can then
  memorise the pool (the tasks, not how to learn), as a network memorises a small training set:
  the meta-loss on the pool keeps falling while the meta-loss on new tasks stops following it.

``"disjoint"`` is MAML as it should be: fresh tasks, support and query drawn apart. The
defences against meta-overfitting are more tasks (sampling them afresh when one can, as here),
task augmentation, and, for classification, shuffling the labels within each task so that θ
cannot memorise a class-to-label map (the Omniglot sampler of notebook 04 does this, and rotates
each class by a random multiple of 90°: four times as many classes).

Used in ``notebooks/03_outer_loop.ipynb``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from mamlkit.data.sinusoid import sample_sinusoid_tasks
from mamlkit.fast import meta_loss_batched
from mamlkit.functional import get_params
from mamlkit.losses import mse
from mamlkit.models import SineMLP
from mamlkit.outer_loop import outer_step
from mamlkit.tasks import TaskBatch

__all__ = ["MODES", "OverfittingRun", "train_meta_overfitting"]

MODES = ("disjoint", "query_is_support", "fixed_pool")


@dataclass
class OverfittingRun:
    """Learning curves of one run, measured every ``eval_every`` outer steps.

    Attributes:
        steps: the outer step after which each point was measured.
        train_meta_loss: the objective the run optimises, averaged over the last
            ``eval_every`` outer steps (for ``"query_is_support"``: the MSE on the support
            points after adapting on them).
        val_meta_loss: the honest meta-loss at that θ: the query MSE after one inner step on
            the support points, over fixed validation waves never used in training, with
            disjoint support and query points.
        mode: one of :data:`MODES`.
        params: θ at the end of the run.
    """

    steps: list
    train_meta_loss: list
    val_meta_loss: list
    mode: str
    params: dict


def _check(mode: str, iterations: int, eval_every: int, pool_size: int) -> None:
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    for name, value in (("iterations", iterations), ("eval_every", eval_every), ("pool_size", pool_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if iterations % eval_every:
        raise ValueError(f"iterations ({iterations}) must be a multiple of eval_every ({eval_every})")


def train_meta_overfitting(
    mode: str,
    iterations: int,
    eval_every: int = 100,
    pool_size: int = 5,
    meta_batch_size: int = 25,
    k_shot: int = 10,
    inner_lr: float = 0.01,
    meta_lr: float = 1e-3,
    num_val_tasks: int = 200,
    seed: int = 0,
) -> OverfittingRun:
    """Meta-train the sine network in one of :data:`MODES` and record train and validation meta-loss.

    Every mode starts from the same θ (``seed``), uses the paper's settings (one inner step,
    α = 0.01, Adam with β = 10⁻³, 25 tasks per outer step, K = 10) and the same validation
    waves.

    Args:
        mode: ``"disjoint"``, ``"query_is_support"`` or ``"fixed_pool"``.
        iterations: outer steps; a multiple of ``eval_every``.
        eval_every: outer steps between measurements.
        pool_size: tasks in the fixed pool (``"fixed_pool"`` only); each outer step draws its
            ``meta_batch_size`` tasks from the pool, with replacement.
        num_val_tasks: validation waves.

    Returns:
        An :class:`OverfittingRun`.
    """
    _check(mode, iterations, eval_every, pool_size)
    model = SineMLP(generator=torch.Generator().manual_seed(seed))
    params = get_params(model)
    generator = torch.Generator().manual_seed(seed + 1)
    validation = sample_sinusoid_tasks(num_val_tasks, k_shot, k_shot, torch.Generator().manual_seed(seed + 2)).batch
    pool = sample_sinusoid_tasks(pool_size, k_shot, k_shot, generator).batch if mode == "fixed_pool" else None
    optimizer = torch.optim.Adam(list(params.values()), lr=meta_lr)
    steps, train_curve, val_curve, window = [], [], [], []
    for step in range(1, iterations + 1):
        if mode == "fixed_pool":
            chosen = torch.randint(pool_size, (meta_batch_size,), generator=generator)
            tasks = TaskBatch(*(t[chosen] for t in pool))
        else:
            tasks = sample_sinusoid_tasks(meta_batch_size, k_shot, k_shot, generator).batch
            if mode == "query_is_support":
                tasks = TaskBatch(tasks.x_support, tasks.y_support, tasks.x_support, tasks.y_support)
        metrics = outer_step(model, params, tasks, optimizer, mse, inner_lr, 1, method="fast")
        window.append(metrics["query_loss"])
        if step % eval_every == 0:
            val = meta_loss_batched(model, params, validation, mse, inner_lr, 1, first_order=True)[0]
            steps.append(step)
            train_curve.append(sum(window) / len(window))
            val_curve.append(val.item())
            window = []
    return OverfittingRun(steps, train_curve, val_curve, mode, {n: p.detach() for n, p in params.items()})
