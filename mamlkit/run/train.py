"""Meta-training on Omniglot with checkpoints, a metrics log and resume.

A run lives in one folder:

- ``checkpoint.pt``  everything needed to continue (θ, learned rates, optimiser, sampler RNG,
  iteration), rewritten atomically every ``checkpoint_every`` steps and on Ctrl-C;
- ``metrics.jsonl``  one JSON object per logged step or validation;
- ``learning_curve.png``  training and validation accuracy against meta-steps;
- ``model.pt`` + ``manifest.json``  the final weights alone, written when the run ends.

Resuming replays nothing: the checkpoint holds the sampler's generator state, so a run that
was stopped and resumed takes exactly the steps an uninterrupted run would have taken.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import math
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch

from mamlkit.errors import CheckpointError, ConfigError
from mamlkit.evaluate import evaluate
from mamlkit.functional import get_params
from mamlkit.losses import accuracy, cross_entropy
from mamlkit.methods import ALGORITHMS, build_method
from mamlkit.methods import outer_step as method_outer_step
from mamlkit.models import Conv4
from mamlkit.outer_loop import NonFiniteError, frozen_everywhere, nonfinite_guard
from mamlkit.run import checkpoints, distributed


@dataclass
class TrainConfig:
    """Every setting of a meta-training run (defaults: the MAML paper's 5-way 1-shot run)."""

    n_way: int = 5
    k_shot: int = 1
    n_query: int = 1
    meta_batch_size: int = 32
    inner_lr: float = 0.4
    inner_steps: int = 1
    eval_inner_steps: int = 3
    # Query images per class in validation and test tasks; None: n_query. Training with more
    # queries than the evaluation protocol uses (e.g. 2 against the paper's 1) gives each
    # meta-step more signal, while the accuracy stays comparable with the literature's.
    eval_n_query: Optional[int] = None
    first_order: bool = False
    learn_inner_lrs: bool = False
    # Which meta-learner (mamlkit.methods): maml, anil, metasgd or protonet. first_order
    # applies to the three with an inner loop (algorithm=maml, first_order=true is FOMAML).
    algorithm: str = "maml"
    meta_lr: float = 1e-3
    # "cosine" anneals the meta learning rate from meta_lr to meta_lr_min over `iterations`
    # steps (SGDR, Loshchilov & Hutter 2017, as MAML++ uses it, Antoniou et al. 2019, §4).
    meta_lr_schedule: str = "constant"
    meta_lr_min: float = 0.0
    # Resuming a cosine run with another `iterations` changes its schedule, so it must be chosen:
    # "keep" the schedule of the checkpoint (past its end the meta-lr stays at meta_lr_min), or
    # "stretch" the cosine over the new total, from the resumed step on (the meta-lr jumps up
    # when the run gets longer). None: such a resume is refused with the two choices.
    extend_schedule: Optional[str] = None
    # The first this many meta-steps are first-order, the rest second-order: MAML++'s
    # derivative-order annealing (Antoniou et al. 2019, §4), cheaper steps while θ is far off.
    first_order_steps: int = 0
    iterations: int = 60_000
    channels: int = 64
    split: str = "maml"
    rotate: bool = True
    seed: int = 0
    device: str = "cpu"
    # How the meta-step is computed, not what: "fast" (tasks at once) or "loop" (per task).
    # Saved configs from before it was renamed call it "method" (see upgrade_config).
    implementation: str = "fast"
    # Adapting 8 tasks at a time (gradients accumulated) gives the same update as all at once
    # and is faster on a CPU: the working set stays in cache, and the groups of tasks run in
    # parallel threads (outer_step's task_threads; see python -m mamlkit bench).
    task_chunk_size: Optional[int] = 8
    log_every: int = 50
    val_every: int = 500
    val_tasks: int = 200
    # Validate (and test) with the model in eval mode: dropout off; batch norm on batch
    # statistics keeps normalising each task with its own (mamlkit.evaluate.evaluation_mode).
    eval_mode: bool = True
    checkpoint_every: int = 200
    # A meta-step whose loss or meta-gradient is inf/nan is always refused (θ unchanged). By
    # default training then stops with the reason; with skip_nonfinite it skips that batch of
    # tasks and counts the skips in the log instead.
    skip_nonfinite: bool = False
    data_root: Optional[str] = None

    def validate(self) -> None:
        """Check every setting that can be checked without data.

        Raises:
            ConfigError: a ``ValueError`` naming the setting, its value and what is allowed
                (e.g. a learning rate that is NaN or infinite, which would write NaN into θ).
        """
        positive = ["n_way", "k_shot", "n_query", "meta_batch_size", "iterations", "channels",
                    "log_every", "val_every", "val_tasks", "checkpoint_every"]
        for name in positive:
            value = getattr(self, name)
            if not is_positive_int(value):
                raise ConfigError(f"{name} must be a positive integer, got {value!r}")
        for name in ("inner_steps", "eval_inner_steps"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ConfigError(f"{name} must be an integer >= 0, got {value!r}")
        if self.n_way < 2:
            raise ConfigError(f"n_way must be at least 2, got {self.n_way}")
        for name, low in (("inner_lr", ">= 0"), ("meta_lr", "> 0")):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ConfigError(f"{name} must be a finite number {low}, got {value!r}")
        if self.inner_lr < 0:
            raise ConfigError(f"inner_lr must be >= 0 (0 adapts nothing), got {self.inner_lr}")
        if self.meta_lr <= 0:
            raise ConfigError(f"meta_lr must be > 0, got {self.meta_lr}")
        for name in ("first_order", "learn_inner_lrs", "rotate"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name} must be True or False, got {getattr(self, name)!r}")
        if self.task_chunk_size is not None and not is_positive_int(self.task_chunk_size):
            raise ConfigError(f"task_chunk_size must be a positive integer or None (all tasks at once; "
                              f"`all` on the command line), "
                              f"got {self.task_chunk_size!r}")
        if self.val_tasks < 2:
            raise ConfigError(f"val_tasks must be at least 2, got {self.val_tasks}")
        if self.eval_n_query is not None and not is_positive_int(self.eval_n_query):
            raise ConfigError(f"eval_n_query must be a positive integer or None (the same as "
                              f"n_query), got {self.eval_n_query!r}")
        check_device(self.device)
        if self.algorithm not in ALGORITHMS:
            raise ValueError(f"algorithm must be one of {sorted(ALGORITHMS)}, got {self.algorithm!r}")
        if self.implementation not in ("fast", "loop"):
            raise ValueError(f"implementation must be 'fast' or 'loop', got {self.implementation!r}")
        if not ALGORITHMS[self.algorithm].has_inner_loop and (self.first_order or self.learn_inner_lrs):
            raise ValueError(f"algorithm {self.algorithm!r} has no inner loop: first_order and "
                             "learn_inner_lrs must be false")
        if self.extend_schedule not in EXTEND_SCHEDULES:
            raise ConfigError(f"extend_schedule must be one of {EXTEND_SCHEDULES} (None: refuse to resume a "
                              f"cosine run with other iterations), got {self.extend_schedule!r}")
        if not isinstance(self.eval_mode, bool):
            raise ConfigError(f"eval_mode must be True or False, got {self.eval_mode!r}")
        if self.meta_lr_schedule not in META_LR_SCHEDULES:
            raise ValueError(f"meta_lr_schedule must be one of {META_LR_SCHEDULES}, "
                             f"got {self.meta_lr_schedule!r}")
        if not 0 <= self.meta_lr_min <= self.meta_lr:
            raise ValueError(f"meta_lr_min must be between 0 and meta_lr={self.meta_lr}, "
                             f"got {self.meta_lr_min!r}")
        if isinstance(self.first_order_steps, bool) or not isinstance(self.first_order_steps, int) \
                or self.first_order_steps < 0:
            raise ValueError(f"first_order_steps must be an integer >= 0, got {self.first_order_steps!r}")


def is_positive_int(value) -> bool:
    """An ``int`` of at least 1 (``True`` is an int to Python, but not a count)."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


META_LR_SCHEDULES = ("constant", "cosine")
EXTEND_SCHEDULES = (None, "keep", "stretch")

#: Settings a run may change when it resumes: how the steps are computed, how long the run
#: goes on, and what is logged, validated and saved; not what a meta-step computes. Every
#: other setting (the task shape, the learning rates, the algorithm, the network, the seed)
#: is part of the run, so a checkpoint made with another value is refused.
RESUMABLE_SETTINGS = ("iterations", "device", "data_root", "implementation", "task_chunk_size",
                      "skip_nonfinite", "log_every", "val_every", "val_tasks", "eval_inner_steps",
                      "eval_n_query", "checkpoint_every", "eval_mode", "extend_schedule")


def changed_settings(saved_config: dict, config: TrainConfig) -> dict:
    """``{name: (saved, now)}`` for the settings outside :data:`RESUMABLE_SETTINGS` that differ."""
    saved = upgrade_config(saved_config)
    current = dataclasses.asdict(config)
    return {name: (value, current[name]) for name, value in saved.items()
            if name in current and name not in RESUMABLE_SETTINGS and value != current[name]}


def meta_lr_at(config: TrainConfig, iteration: int, schedule_iterations: Optional[int] = None) -> float:
    """The meta learning rate of meta-step ``iteration + 1`` (``iteration`` steps done).

    A pure function of the step count, so a resumed run uses exactly the rates an
    uninterrupted one would: there is no scheduler state to save. ``"cosine"``:
    ``meta_lr_min + (meta_lr - meta_lr_min) · (1 + cos(π · iteration / n)) / 2`` with ``n`` =
    ``schedule_iterations`` (default: ``config.iterations``); past ``n`` it stays at ``meta_lr_min``.
    """
    if config.meta_lr_schedule == "constant":
        return config.meta_lr
    progress = min(iteration / (schedule_iterations or config.iterations), 1.0)
    return config.meta_lr_min + (config.meta_lr - config.meta_lr_min) * 0.5 * (1 + math.cos(math.pi * progress))


def schedule_after_resume(state: dict, config: TrainConfig) -> int:
    """The number of steps the cosine meta-lr schedule runs over once ``config`` resumes ``state``.

    The checkpoint's own schedule (``state["schedule_iterations"]``, else its ``iterations``)
    unless the run's length changes: a cosine run resumed with other ``iterations`` takes
    ``config.extend_schedule``: ``"keep"`` keeps the checkpoint's schedule, ``"stretch"``
    recomputes the cosine over the new total from the resumed step.

    Raises:
        ConfigError: a cosine run resumed with other ``iterations`` and no ``extend_schedule``;
            the message says what each choice does to the meta-lr.
    """
    saved_total = upgrade_config(state["config"])["iterations"]
    schedule = state.get("schedule_iterations") or saved_total
    if config.meta_lr_schedule != "cosine" or config.iterations == saved_total:
        return schedule
    if config.extend_schedule == "keep":
        return schedule
    if config.extend_schedule == "stretch":
        return config.iterations
    step = state["iteration"]
    now, stretched = meta_lr_at(config, step, schedule), meta_lr_at(config, step, config.iterations)
    raise ConfigError(
        f"cannot resume: this run's cosine meta-lr schedule goes over {schedule} steps (at step {step} the "
        f"meta-lr is {now:.3g}) but iterations is now {config.iterations}; choose: --extend-schedule keep "
        f"(the same schedule, the meta-lr stays at meta_lr_min={config.meta_lr_min:g} after step {schedule}) or "
        f"--extend-schedule stretch (the cosine recomputed over {config.iterations} steps: the meta-lr "
        f"becomes {stretched:.3g} at step {step + 1}); in Python extend_schedule='keep' or 'stretch'")


def build_model(config: TrainConfig | dict, generator: Optional[torch.Generator] = None) -> Conv4:
    """The conv4 network a config describes (``channels`` filters, ``n_way`` outputs)."""
    config = config if isinstance(config, dict) else dataclasses.asdict(config)
    return Conv4(config["n_way"], channels=config["channels"], generator=generator)


def omniglot_task_samplers(config: TrainConfig):
    """``{split name: sampler}`` for the config's Omniglot split scheme.

    The training sampler draws ``n_query`` query images per class, the validation and test
    samplers ``eval_n_query`` (``n_query`` when that is None).
    """
    from mamlkit.data.omniglot import load_omniglot, split_characters
    from mamlkit.data.sampler import OmniglotTaskSampler

    data = load_omniglot(config.data_root)
    splits = split_characters(data.characters, scheme=config.split)
    return {
        name: OmniglotTaskSampler(data.images, indices, config.n_way, config.k_shot,
                                  config.n_query if name == "train" else evaluation_n_query(config),
                                  rotate=config.rotate, split_name=name)
        for name, indices in splits.items()
    }


def evaluation_n_query(config: TrainConfig) -> int:
    """Query images per class of the validation and test tasks: ``eval_n_query`` or ``n_query``."""
    return config.n_query if config.eval_n_query is None else config.eval_n_query


def check_samplers(samplers) -> dict:
    """Raise unless ``samplers`` maps ``"train"`` and ``"val"`` to objects with ``sample(n, generator)``."""
    if not isinstance(samplers, dict) or not {"train", "val"} <= set(samplers):
        raise ValueError(f"samplers must be a dict with 'train' and 'val' task samplers, got "
                         f"{sorted(samplers) if isinstance(samplers, dict) else type(samplers).__name__}")
    for name, sampler in samplers.items():
        if not callable(getattr(sampler, "sample", None)):
            raise TypeError(f"samplers[{name!r}] must have a method sample(n, generator) -> TaskBatch, "
                            f"got {type(sampler).__name__}")
    return samplers


class Trainer:
    """Owns the state of one run and moves it forward one meta-step at a time."""

    def __init__(self, config: TrainConfig, run_dir: str | Path, samplers=None,
                 model: Optional[torch.nn.Module] = None, loss_fn=None, metric=None):
        """
        Args:
            config: the run's settings.
            run_dir: the run folder (checkpoint, metrics, figures).
            samplers: ``{"train": sampler, "val": sampler}``, each with ``sample(n, generator)``
                returning a :class:`~mamlkit.tasks.TaskBatch`; default: Omniglot per ``config``.
            model: any ``nn.Module`` to meta-train; default: the ``Conv4`` ``config`` describes.
                Its parameters are copied into θ (frozen ones stay frozen); the module itself is
                never changed (a copy is moved when ``config.device`` is another device).
            loss_fn: ``loss_fn(outputs, targets)``, one loss per task; default: cross-entropy.
            metric: ``metric(outputs, targets)``, one number per task, reported at validation
                and logged as ``val_<its __name__>``; default: accuracy (``val_accuracy``) when
                the targets are integer class labels, else the loss itself (``val_loss``), so
                that a regression run validates without further settings.
        """
        config.validate()
        self.config = config
        self.run_dir = Path(run_dir)
        self.device = torch.device(config.device)
        self.samplers = check_samplers(samplers) if samplers is not None else omniglot_task_samplers(config)
        if model is None:
            model = build_model(config, torch.Generator().manual_seed(config.seed))
        elif not isinstance(model, torch.nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        elif any(t.device != self.device for t in [*model.parameters(), *model.buffers()]):
            model = copy.deepcopy(model)  # move a copy: the learner's module stays where it is
        self.model = model.to(self.device)
        self.loss_fn = cross_entropy if loss_fn is None else loss_fn
        if not callable(self.loss_fn):
            raise TypeError(f"loss_fn must be a function (outputs, targets) -> loss per task, "
                            f"got {type(loss_fn).__name__}")
        if metric is not None and not callable(metric):
            raise TypeError(f"metric must be a function (outputs, targets) -> one number per task, "
                            f"got {type(metric).__name__}")
        self.metric = metric
        # θ: leaf copies on the device, each keeping its module's requires_grad (frozen layers).
        self.params = {n: p.to(self.device).detach().requires_grad_(p.requires_grad)
                       for n, p in get_params(self.model).items()}
        if not any(p.requires_grad for p in self.params.values()):
            raise ValueError(frozen_everywhere(self.model))
        # The algorithm owns its extra learned tensors (learned inner rates), saved as inner_lrs.
        self.method = build_method(config.algorithm, self.params, config.inner_lr, config.inner_steps,
                                   config.first_order, config.learn_inner_lrs, loss_fn=self.loss_fn)
        self.inner_lrs = self.method.learned_rates
        trainable = list(self.params.values()) + list((self.inner_lrs or {}).values())
        self.optimizer = torch.optim.Adam(trainable, lr=config.meta_lr)
        # Whatever computes the meta-gradient, a non-finite one never reaches θ.
        self.optimizer.register_step_pre_hook(nonfinite_guard(self.params, self.inner_lrs or 0.0))
        self.skipped_nonfinite = 0
        # Training tasks come from their own generator, saved in checkpoints for exact resume.
        self.task_generator = torch.Generator().manual_seed(config.seed + 1)
        self.iteration = 0
        # The steps the cosine meta-lr schedule runs over (the run's length, unless it was
        # resumed with other iterations and extend_schedule="keep"; see schedule_after_resume).
        self.schedule_iterations = config.iterations
        self.train_seconds = 0.0
        self.code_commit = git_commit()  # of the code that started the run; kept on resume
        self.model_checked = False  # check_model runs once, on the first batch

    # -- state ---------------------------------------------------------------------------
    @property
    def inner_lr(self):
        return self.inner_lrs if self.inner_lrs is not None else self.config.inner_lr

    def state(self) -> dict:
        return {
            "config": dataclasses.asdict(self.config),
            "iteration": self.iteration,
            "train_seconds": self.train_seconds,
            "params": {n: p.detach().cpu() for n, p in self.params.items()},
            "inner_lrs": None if self.inner_lrs is None else {n: t.detach().cpu() for n, t in self.inner_lrs.items()},
            "optimizer": self.optimizer.state_dict(),
            "task_generator": self.task_generator.get_state(),
            "schedule_iterations": self.schedule_iterations,
            "code_commit": self.code_commit,
            "skipped_nonfinite": self.skipped_nonfinite,
        }

    def load_state(self, state: dict) -> None:
        # Only the settings in RESUMABLE_SETTINGS may differ from the checkpoint's.
        changed = changed_settings(state["config"], self.config)
        if changed:
            raise ValueError(
                "cannot resume: the checkpoint was made with different settings "
                + ", ".join(f"{k}={old!r} (now {new!r})" for k, (old, new) in changed.items())
            )
        schedule = schedule_after_resume(state, self.config)  # raises before anything is loaded
        with torch.no_grad():
            for n, p in self.params.items():
                p.copy_(state["params"][n])
            for n, t in (self.inner_lrs or {}).items():
                t.copy_(state["inner_lrs"][n])
        self.optimizer.load_state_dict(state["optimizer"])
        self.task_generator.set_state(state["task_generator"])
        self.iteration = state["iteration"]
        self.schedule_iterations = schedule
        self.train_seconds = state.get("train_seconds", 0.0)
        self.code_commit = state.get("code_commit", self.code_commit)
        self.skipped_nonfinite = state.get("skipped_nonfinite", 0)

    @property
    def checkpoint_path(self) -> Path:
        return self.run_dir / "checkpoint.pt"

    @property
    def model_path(self) -> Path:
        """The final weights, written by :meth:`train` when the run is complete."""
        return self.run_dir / "model.pt"

    def save_checkpoint(self) -> None:
        if not distributed.is_main_process():  # every rank holds the same state; one writes it
            return
        checkpoints.atomic_save(self.state(), self.checkpoint_path)

    def resume_if_possible(self) -> bool:
        """Continue from ``checkpoint.pt`` if the run folder has one; drop log lines past it."""
        # Rank 0 reads the checkpoint and sends it to the others, which may run on machines
        # without the run folder.
        state = distributed.broadcast_from_main(
            lambda: checkpoints.load(self.checkpoint_path) if self.checkpoint_path.exists() else None)
        if state is None:
            return False
        self.load_state(state)
        log = self.run_dir / "metrics.jsonl"
        if log.exists() and distributed.is_main_process():
            # Lines written after the last checkpoint belong to steps that will be redone.
            kept = [line for line in log.read_text().splitlines()
                    if line and json.loads(line)["iteration"] <= self.iteration]
            log.write_text("".join(line + "\n" for line in kept))
        return True

    # -- work ----------------------------------------------------------------------------
    def skip_nonfinite_step(self, error: NonFiniteError) -> dict:
        """After a refused step (θ unchanged): count it as skipped, or stop with the reason.

        Raises:
            NonFiniteError: unless ``config.skip_nonfinite``; the message says which step and
                that the last checkpoint, written before it, is intact.
        """
        if not self.config.skip_nonfinite:
            saved = (f"the last checkpoint, {self.checkpoint_path}, is intact"
                     if self.checkpoint_path.exists() else "no checkpoint was written yet")
            raise NonFiniteError(
                f"training stopped at step {self.iteration + 1}: {error}. θ is unchanged and {saved}. "
                "To go on: start a new run (another run folder) with a smaller learning rate, since "
                "meta_lr and inner_lr are part of a run and a checkpoint does not resume with other "
                "values; or, if only some batches are bad, resume this run with --skip-nonfinite "
                "(skip_nonfinite=True in Python), which skips them and counts the skips in the log"
            ) from error
        self.iteration += 1
        self.skipped_nonfinite += 1
        return {}

    def step(self, metrics_before: bool = False) -> dict:
        """One meta-step on the next batch of training tasks.

        Random layers (dropout) draw from torch's generator seeded for this step alone
        (:func:`step_seed`: the run's seed and the step's number): the same masks whether the
        run was resumed or not, however often it validates, and the caller's own random
        state is left as it was.

        Raises:
            ValueError: on the first step, a model that does not fit the tasks (see
                :meth:`check_model`); NonFiniteError: a refused step (θ unchanged).
        """
        c = self.config
        generator_state = None if self.model_checked else self.task_generator.get_state()
        tasks = self.samplers["train"].sample(c.meta_batch_size, self.task_generator).to(self.device)
        if not self.model_checked:
            try:
                self.check_model(tasks)
            except Exception:
                self.task_generator.set_state(generator_state)  # a refused run has taken no step
                raise
        for group in self.optimizer.param_groups:
            group["lr"] = meta_lr_at(c, self.iteration, self.schedule_iterations)
        first_order = c.first_order or self.iteration < c.first_order_steps
        self.method.first_order = first_order
        # Under torchrun each process adapts its share of the tasks (see mamlkit.run.distributed).
        update = distributed.outer_step if distributed.world_size() > 1 else method_outer_step
        with seeded_random_layers(step_seed(c.seed, self.iteration), self.device):
            metrics = update(self.method, self.model, self.params, tasks, self.optimizer,
                             c.implementation, c.task_chunk_size, metrics_before)
        self.iteration += 1
        return metrics

    def check_model(self, tasks, num_tasks: int = 2) -> None:
        """Before the first step, on ``num_tasks`` tasks of its batch: does the model fit the tasks?

        - A model with its own ``forward_tasks`` (``Conv4``) trains through it on the fast path;
          it must compute what ``forward`` computes, task by task. A learner who edits
          ``ConvBlock``/``Conv4.forward`` (mamlkit/models/conv4.py) and not ``forward_tasks`` would
          otherwise train another network than ``forward`` shows.
        - For class labels, the model must have as many outputs as the tasks have classes.

        Costs one forward of ``num_tasks`` support sets each way, without gradients, once.

        Raises:
            ValueError: one line saying what differs and how to fix it.
        """
        from mamlkit.evaluate import check_ways, evaluation_mode
        from mamlkit.functional import check_params, forward

        c = self.config
        part = type(tasks)(*(t[:num_tasks] for t in tasks))
        params = {n: p.detach() for n, p in self.params.items()}
        check_params(self.model, params)
        name = type(self.model).__name__
        with torch.no_grad(), evaluation_mode(self.model), seeded_random_layers(0, self.device):
            outputs = torch.stack([forward(self.model, params, x) for x in part.x_support])
            # θ that is no longer finite (a run resumed after a non-finite step) says nothing about
            # forward_tasks: the non-finite checks of the meta-step report it.
            if (c.implementation == "fast" and hasattr(self.model, "forward_tasks")
                    and bool(torch.isfinite(outputs).all())):
                batched = self.model.forward_tasks({n: p.expand(part.num_tasks, *p.shape) for n, p in params.items()},
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
            width = (params["head.weight"].shape[0] if not self.method.has_inner_loop and "head.weight" in params
                     else outputs.shape[-1])
            check_ways(width, part.y_support, where="Trainer")
        self.model_checked = True

    def evaluate(self, split: str = "val", num_tasks: Optional[int] = None, seed: int = 1234) -> dict:
        """The metric on ``num_tasks`` tasks of ``split``, always the same tasks for a given seed.

        The model is in eval mode unless ``config.eval_mode`` is False (dropout off; see
        :func:`mamlkit.evaluate.evaluation_mode`); dropout left on draws from a generator seeded
        with ``seed``, so the result is repeatable and training's random numbers are untouched.

        Returns :func:`mamlkit.evaluate.evaluate`'s summary with ``"metric"``, the metric's
        name (``"accuracy"``, ``"loss"`` or the ``__name__`` of the ``metric`` given).
        """
        c = self.config
        generator = torch.Generator().manual_seed(seed)
        used = set()

        def accuracy_or_loss(outputs, targets):
            # Accuracy needs class labels; for anything else the loss is the measure at hand.
            used.add("loss" if targets.is_floating_point() else "accuracy")
            return self.loss_fn(outputs, targets) if targets.is_floating_point() else accuracy(outputs, targets)

        # Random layers left on (eval_mode=False) draw from a generator of their own: the same
        # numbers every time, and training's random state is not touched.
        with seeded_random_layers(seed, self.device):
            result = evaluate(self.model, self.params,
                              lambda n: self.samplers[split].sample(n, generator),
                              self.loss_fn, self.inner_lr, c.eval_inner_steps,
                              num_tasks=num_tasks or c.val_tasks, device=self.device, method=self.method,
                              metric=self.metric or accuracy_or_loss, eval_mode=c.eval_mode)
        if self.metric is None:
            result["metric"] = "accuracy" if used == {"accuracy"} else "loss"
        else:
            name = getattr(self.metric, "__name__", "metric")
            result["metric"] = name if name.isidentifier() else "metric"
        return result

    def log(self, record: dict) -> None:
        if not distributed.is_main_process():
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        with open(self.run_dir / "metrics.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")

    def train(self, progress: bool = True) -> None:
        """Run until ``config.iterations`` meta-steps are done.

        Ctrl-C (SIGINT) is deferred to the end of the current step: the run then saves a
        checkpoint and raises KeyboardInterrupt, so a stopped run loses nothing and resumes
        exactly. A second Ctrl-C stops at once; the last periodic checkpoint is kept then.
        A run that reaches ``config.iterations`` ends by writing its weights alone to
        ``run_dir/model.pt`` (:meth:`export`), as the command line does.
        """
        from tqdm.auto import tqdm

        c = self.config
        self.run_dir.mkdir(parents=True, exist_ok=True)
        bar = tqdm(total=c.iterations, initial=self.iteration,
                   disable=not progress or not distributed.is_main_process(),
                   unit="step", dynamic_ncols=True)
        session_start, session_first = time.perf_counter(), self.iteration
        try:
            with deferred_interrupt() as stop:
                while self.iteration < c.iterations:
                    start = time.perf_counter()
                    try:
                        metrics = self.step(metrics_before=(self.iteration + 1) % c.log_every == 0)
                    except NonFiniteError as error:
                        metrics = self.skip_nonfinite_step(error)  # raises unless skip_nonfinite
                    if c.skip_nonfinite:
                        metrics["skipped_nonfinite"] = self.skipped_nonfinite  # skips so far
                    self.train_seconds += time.perf_counter() - start
                    # All ranks stop after the same step, when Ctrl-C reached any of them.
                    stop.requested = distributed.any_rank(stop.requested)
                    bar.update(1)
                    if self.iteration % c.log_every == 0:
                        self.log({"iteration": self.iteration, "kind": "train",
                                  "seconds": round(self.train_seconds, 2), **metrics})
                        tasks_per_second = (c.meta_batch_size * (self.iteration - session_first)
                                            / (time.perf_counter() - session_start))
                        bar.set_postfix(acc=f"{metrics.get('query_accuracy', float('nan')):.3f}",
                                        tasks_per_s=f"{tasks_per_second:.0f}")
                    if ((self.iteration % c.val_every == 0 or self.iteration == c.iterations)
                            and distributed.is_main_process()):  # the others wait at the next step
                        result = self.evaluate("val")
                        name = result["metric"]
                        self.log({"iteration": self.iteration, "kind": "val",
                                  "seconds": round(self.train_seconds, 2),
                                  f"val_{name}": result["mean"], "val_ci95": result["ci95"],
                                  f"val_{name}_per_step": result["per_step_mean"]})
                        shown = (f"{100 * result['mean']:.1f} ± {100 * result['ci95']:.1f}%" if name == "accuracy"
                                 else f"{result['mean']:.4g} ± {result['ci95']:.2g}")
                        bar.write(f"step {self.iteration}: validation {name} {shown}")
                        if name == "accuracy":  # the learning-curve figure shows accuracies
                            self.plot()
                    if (self.iteration % c.checkpoint_every == 0 or self.iteration == c.iterations
                            or stop.requested):
                        self.save_checkpoint()
                    if stop.requested:
                        if distributed.is_main_process():
                            bar.write(f"interrupted: saved step {self.iteration} to {self.checkpoint_path}; "
                                      "run the same command again to continue")
                        raise KeyboardInterrupt
        finally:
            bar.close()
        if distributed.is_main_process():
            self.export(self.model_path)

    def plot(self) -> None:
        from mamlkit.run.plotting import plot_learning_curves

        # A skipped non-finite step logs only its count of skips: it has no accuracy to draw.
        records = [r for r in read_metrics(self.run_dir / "metrics.jsonl")
                   if r.get("kind") != "train" or "query_accuracy" in r]
        fig = plot_learning_curves(records)
        fig.savefig(self.run_dir / "learning_curve.png", dpi=120)
        import matplotlib.pyplot as plt
        plt.close(fig)

    def export(self, path: str | Path, extra: Optional[dict] = None) -> Path:
        """Write the weights alone (θ and learned rates, no optimiser) for sharing."""
        weights = {
            "config": dataclasses.asdict(self.config),
            "iteration": self.iteration,
            "params": {n: p.detach().cpu().clone() for n, p in self.params.items()},
            "inner_lrs": None if self.inner_lrs is None else {n: t.detach().cpu().clone() for n, t in self.inner_lrs.items()},
        }
        weights.update(extra or {})
        return checkpoints.atomic_save(weights, path)


def step_seed(seed: int, iteration: int) -> int:
    """The seed of torch's generator during meta-step ``iteration + 1`` of a run with ``seed``.

    A pure function of the two, like :func:`meta_lr_at`: a checkpoint's seed and step count
    are all the random state a resumed run needs for bit-exact dropout masks.
    """
    return (0x5EED_0000 + 1_000_003 * seed + iteration) % 2 ** 63


@contextlib.contextmanager
def seeded_random_layers(seed: int, device: torch.device):
    """Run the body with torch's generator (the CPU's, and ``device``'s) seeded with ``seed``.

    Dropout and other random layers draw from torch's global generator; here it starts from
    ``seed``, and the caller's state of it is restored afterwards (:func:`torch.random.fork_rng`).
    """
    device = torch.device(device)
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.random.default_generator.manual_seed(seed)
        if devices:
            with torch.cuda.device(device):
                torch.cuda.manual_seed(seed)
        yield


class _StopRequest:
    requested = False


@contextlib.contextmanager
def deferred_interrupt():
    """Turn the first Ctrl-C into a request (``.requested``) to stop after the current step.

    Stopping in the middle of an optimiser step could save half-updated parameters; stopping
    between steps never does. A second Ctrl-C raises KeyboardInterrupt at once. Outside the
    main thread, where Python delivers no signals, this does nothing.
    """
    stop = _StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def request_stop(signum, frame):
        if stop.requested:
            raise KeyboardInterrupt
        stop.requested = True

    previous = signal.signal(signal.SIGINT, request_stop)
    try:
        yield stop
    finally:
        signal.signal(signal.SIGINT, previous)


def read_metrics(path: str | Path) -> list[dict]:
    """The records of a ``metrics.jsonl`` file, in order."""
    path = Path(path)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def upgrade_config(config: dict) -> dict:
    """A saved config in today's field names: ``method`` became ``implementation``, and runs
    saved before ``algorithm`` existed were MAML."""
    config = dict(config)
    if "method" in config:
        config.setdefault("implementation", config.pop("method"))
    config.setdefault("algorithm", "maml")
    return config


def load_method(path: str | Path, device: str = "cpu"):
    """``(model, params, method, config)``: saved weights with their algorithm (:mod:`mamlkit.methods`)."""
    model, params, _, config = load_weights(path, device)
    state = checkpoints.load(path, map_location=device)
    method = build_method(config["algorithm"], params, config["inner_lr"], config["inner_steps"],
                          config["first_order"], config.get("learn_inner_lrs", False),
                          saved_rates=state.get("inner_lrs"), loss_fn=cross_entropy)
    return model, params, method, config


def check_device(device) -> None:
    """Raise a ConfigError unless ``device`` names a device torch knows and this machine has."""
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError, ValueError) as error:
        raise ConfigError(f"device must be a torch device such as 'cpu', 'cuda' or 'cuda:1', "
                          f"got {device!r} ({str(error).splitlines()[0]})") from None
    if parsed.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ConfigError(f"device {device!r}: CUDA is not available on this machine "
                              f"(torch {torch.__version__}); use 'cpu'")
        if parsed.index is not None and parsed.index >= count:
            raise ConfigError(f"device {device!r}: this machine has {count} CUDA device(s), "
                              f"numbered 0 to {count - 1}")
    elif parsed.type == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise ConfigError(f"device {device!r}: MPS is not available on this machine; use 'cpu'")


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


def git_commit() -> Optional[str]:
    """The commit of the code that is running, when it runs from a git checkout."""
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent,
                              capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
