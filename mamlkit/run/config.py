"""The settings of a meta-training run, and what they describe: the network, the task samplers, the meta-lr schedule.

:class:`TrainConfig` holds every setting (defaults: the MAML paper's 5-way 1-shot run); which of them
may change when a run resumes, and how the cosine schedule of the meta learning rate continues, is
decided here too, as pure functions of the settings.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Optional

import torch

from mamlkit.errors import ConfigError
from mamlkit.methods import ALGORITHMS
from mamlkit.models import Conv4


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
    # Which meta-learner (mamlkit.methods): maml, anil, metasgd, protonet, reptile or protomaml.
    # first_order applies to those with a differentiated inner loop (maml + first_order is FOMAML).
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
    # A warm start: θ (and learned inner rates) from this weights file (``export``'s, or a run's
    # checkpoint.pt) instead of a random network; Adam, the meta-lr schedule, the first-order
    # warm-up and the step count start afresh. The file's network settings must be this run's.
    init_from: Optional[str] = None

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
        if self.init_from is not None and not isinstance(self.init_from, str):
            raise ConfigError(f"init_from must be the path of a weights file or None, got {self.init_from!r}")
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


def upgrade_config(config: dict) -> dict:
    """A saved config in today's field names: ``method`` became ``implementation``, and runs
    saved before ``algorithm`` existed were MAML."""
    config = dict(config)
    if "method" in config:
        config.setdefault("implementation", config.pop("method"))
    config.setdefault("algorithm", "maml")
    return config


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
