"""Checks and measurements during a run: does the model fit the tasks, and how well does it do.

:func:`check_model_fits` runs once, before the first meta-step, so that a model that cannot
train (another number of classes, a ``forward_tasks`` that no longer matches ``forward``) is
refused in one line instead of training the wrong network. :func:`validate` is the periodic
validation of :class:`mamlkit.run.train.Trainer`: the same tasks every time, without touching
the run's random state.
"""

from __future__ import annotations

from typing import Callable, Optional

import torch
from torch import nn

from mamlkit.evaluate import check_ways, evaluate, evaluation_mode
from mamlkit.functional import Params, check_params, forward
from mamlkit.losses import accuracy
from mamlkit.methods import MetaLearner
from mamlkit.run.reproducible import seeded_random_layers


def check_model_fits(model: nn.Module, params: Params, method: MetaLearner, tasks, implementation: str,
                     device: torch.device, num_tasks: int = 2) -> None:
    """Before the first step, on ``num_tasks`` tasks of its batch: does the model fit the tasks?

    - A model with its own ``forward_tasks`` (``Conv4``) trains through it on the fast path;
      it must compute what ``forward`` computes, task by task. A learner who edits
      ``ConvBlock``/``Conv4.forward`` (mamlkit/models/conv4.py) and not ``forward_tasks`` would
      otherwise train another network than ``forward`` shows.
    - For class labels, the model must have as many outputs as the tasks have classes.

    Costs one forward of ``num_tasks`` support sets each way, without gradients, once.

    Args:
        tasks: the first training batch, ``x_support`` ``(T, S, ...)``.
        implementation: the run's ``"fast"`` or ``"loop"``.

    Raises:
        ValueError: one line saying what differs and how to fix it.
    """
    part = type(tasks)(*(t[:num_tasks] for t in tasks))
    params = {n: p.detach() for n, p in params.items()}
    check_params(model, params)
    name = type(model).__name__
    with torch.no_grad(), evaluation_mode(model), seeded_random_layers(0, device):
        outputs = torch.stack([forward(model, params, x) for x in part.x_support])
        # θ that is no longer finite (a run resumed after a non-finite step) says nothing about
        # forward_tasks: the non-finite checks of the meta-step report it.
        if implementation == "fast" and hasattr(model, "forward_tasks") and bool(torch.isfinite(outputs).all()):
            batched = model.forward_tasks({n: p.expand(part.num_tasks, *p.shape) for n, p in params.items()},
                                          part.x_support)
            scale = float(outputs.nan_to_num(0.0, 0.0, 0.0).abs().max()) + 1e-6
            # inf/nan where forward has them too is θ's own trouble, for the step to report.
            agree = (isinstance(batched, torch.Tensor) and batched.shape == outputs.shape
                     and torch.allclose(batched, outputs, rtol=0.0, atol=1e-3 * scale, equal_nan=True))
            if not agree:
                shown = (f"largest difference {float((batched - outputs).abs().max()):.3g}"
                         if isinstance(batched, torch.Tensor) and batched.shape == outputs.shape else
                         f"outputs {tuple(getattr(batched, 'shape', ()))} against {tuple(outputs.shape)}")
                raise ValueError(
                    f"{name}.forward_tasks does not compute what {name}.forward computes ({shown} on "
                    f"{part.num_tasks} tasks of the first batch), and the fast path trains forward_tasks: "
                    f"make forward_tasks match your change of forward (mamlkit/models/conv4.py), or train "
                    f"forward itself with implementation='loop' (--implementation loop), slower")
    if not part.y_support.is_floating_point() and outputs.dim() == 3:
        width = (params["head.weight"].shape[0] if not method.has_inner_loop and "head.weight" in params
                 else outputs.shape[-1])
        check_ways(width, part.y_support, where="Trainer")


def validate(model: nn.Module, params: Params, method: MetaLearner, sampler, loss_fn: Callable,
             metric: Optional[Callable], inner_steps: int, num_tasks: int, device: torch.device,
             eval_mode: bool = True, seed: int = 1234) -> dict:
    """The metric on ``num_tasks`` tasks of ``sampler``, always the same tasks for a given seed.

    The model is in eval mode unless ``eval_mode`` is False (dropout off; see
    :func:`mamlkit.evaluate.evaluation_mode`); dropout left on draws from a generator seeded
    with ``seed``, so the result is repeatable and training's random numbers are untouched.

    Args:
        sampler: has ``sample(n, generator)`` returning a :class:`~mamlkit.tasks.TaskBatch`.
        metric: ``metric(outputs, targets)``, one number per task; ``None``: accuracy for class
            labels, else the loss.
        inner_steps: adaptation steps at test time (the run's ``eval_inner_steps``).

    Returns:
        :func:`mamlkit.evaluate.evaluate`'s summary with ``"metric"``, the metric's name
        (``"accuracy"``, ``"loss"`` or the ``__name__`` of the ``metric`` given).
    """
    generator = torch.Generator().manual_seed(seed)
    used = set()

    def accuracy_or_loss(outputs, targets):
        # Accuracy needs class labels; for anything else the loss is the measure at hand.
        used.add("loss" if targets.is_floating_point() else "accuracy")
        return loss_fn(outputs, targets) if targets.is_floating_point() else accuracy(outputs, targets)

    # Random layers left on (eval_mode=False) draw from a generator of their own: the same
    # numbers every time, and training's random state is not touched.
    with seeded_random_layers(seed, device):
        result = evaluate(model, params, lambda n: sampler.sample(n, generator), loss_fn, method.inner_lr,
                          inner_steps, num_tasks=num_tasks, device=device, method=method,
                          metric=metric or accuracy_or_loss, eval_mode=eval_mode)
    if metric is None:
        result["metric"] = "accuracy" if used == {"accuracy"} else "loss"
    else:
        name = getattr(metric, "__name__", "metric")
        result["metric"] = name if name.isidentifier() else "metric"
    return result
