"""Saved weights back into a network: loading a run's checkpoint or exported weights, and testing them.

:func:`load_weights` and :func:`load_method` rebuild the network and the algorithm a file's settings
describe, refusing files that do not fit; :func:`evaluate_checkpoint` is ``python -m mamlkit evaluate``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Optional

import torch

from mamlkit.errors import CheckpointError, ConfigError
from mamlkit.evaluate import evaluate
from mamlkit.losses import cross_entropy
from mamlkit.methods import build_method
from mamlkit.run import checkpoints
from mamlkit.run.config import (
    TrainConfig,
    build_model,
    check_device,
    evaluation_n_query,
    omniglot_task_samplers,
    upgrade_config,
)


def load_method(path: str | Path, device: str = "cpu"):
    """``(model, params, method, config)``: saved weights with their algorithm (:mod:`mamlkit.methods`)."""
    model, params, _, config = load_weights(path, device)
    state = checkpoints.load(path, map_location=device)
    method = build_method(config["algorithm"], params, config["inner_lr"], config["inner_steps"],
                          config["first_order"], config.get("learn_inner_lrs", False),
                          saved_rates=state.get("inner_lrs"), loss_fn=cross_entropy)
    return model, params, method, config


def load_weights(path: str | Path, device: str = "cpu"):
    """``(model, params, inner_lr, config)`` from a weights file or a run checkpoint.

    Raises:
        CheckpointError: the file is missing, damaged, unsafe, a bare ``state_dict`` or lacks
            settings (see :func:`mamlkit.run.checkpoints.load` and ``require_weights``), or its
            tensors do not fit the network its settings describe.
        ConfigError: ``device`` is not usable here.
    """
    check_device(device)
    state = checkpoints.load(path, map_location=device)
    checkpoints.require_weights(state, path)
    config = upgrade_config(state["config"])
    model = build_model(config).to(device)
    params = {n: t.to(device) for n, t in state["params"].items()}
    from mamlkit.functional import check_params
    if set(params) != set(dict(model.named_parameters())):
        shown = ", ".join(sorted(params)[:3]) + (", ..." if len(params) > 3 else "")
        raise CheckpointError(
            f"{path} holds the weights of another network ({shown}), not of the Omniglot Conv4: the "
            "command line evaluates Conv4 checkpoints made by `python -m mamlkit train` or `export`. "
            "Evaluate other models in Python: mamlkit.evaluate.evaluate(model, params, sample_tasks, "
            "loss_fn, inner_lr, inner_steps), with params = checkpoints.load(path)['params']"
        )
    try:
        check_params(model, params)
    except ValueError as error:
        raise CheckpointError(f"{path}: its tensors do not fit the network its settings describe "
                              f"(n_way={config['n_way']}, channels={config['channels']}): {error}") from error
    inner_lr = state.get("inner_lrs") or config["inner_lr"]
    return model, params, inner_lr, config


def evaluate_checkpoint(path: str | Path, split: str = "test", num_tasks: int = 600,
                        inner_steps: Optional[int] = None, seed: int = 0, device: str = "cpu",
                        data_root: Optional[str] = None, n_query: Optional[int] = None,
                        protocol: str = "transductive") -> dict:
    """Mean accuracy ± 95% CI of saved weights on ``num_tasks`` tasks of ``split``.

    Args:
        n_query: query images per class (default: the run's ``eval_n_query``, else its
            ``n_query``); with the transductive protocol the accuracy depends on it (see
            :mod:`mamlkit.protocols`).
        protocol: ``"transductive"`` (the paper's) or ``"support-stats"``.
    """
    from mamlkit.data.omniglot import SPLIT_NAMES, check_task_settings

    # Everything that can be checked without data is checked before the data is loaded.
    if split not in SPLIT_NAMES:
        raise ConfigError(f"unknown split {split!r}; choose one of {list(SPLIT_NAMES)}")
    if isinstance(num_tasks, bool) or not isinstance(num_tasks, int) or num_tasks < 2:
        raise ConfigError(f"the number of tasks must be at least 2 (a 95% confidence interval needs "
                          f"two), got {num_tasks!r}")
    if inner_steps is not None and (isinstance(inner_steps, bool) or not isinstance(inner_steps, int)
                                    or inner_steps < 0):
        raise ConfigError(f"inner_steps must be an integer >= 0, got {inner_steps!r}")
    model, params, method, saved = load_method(path, device)
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    config = TrainConfig(**{k: v for k, v in saved.items() if k in fields})
    if data_root is not None:
        config.data_root = data_root
    config.eval_n_query = evaluation_n_query(config) if n_query is None else n_query
    check_task_settings(config.n_way, config.k_shot, config.eval_n_query, config.split)
    samplers = omniglot_task_samplers(config)
    if split not in samplers:
        raise ValueError(f"unknown split {split!r}; choose one of {sorted(samplers)}")
    generator = torch.Generator().manual_seed(seed)
    steps = config.eval_inner_steps if inner_steps is None else inner_steps
    return evaluate(model, params, lambda n: samplers[split].sample(n, generator),
                    cross_entropy, method.inner_lr, steps, num_tasks=num_tasks, device=device,
                    method=method, protocol=protocol)
