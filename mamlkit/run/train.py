"""The training loop: :class:`Trainer` moves one run forward a meta-step at a time.

A run is a :class:`~mamlkit.run.config.TrainConfig` and a folder
(:class:`~mamlkit.run.run_folder.RunFolder`: checkpoint, metrics log, figure, final weights).
Each step samples a meta-batch, sets the meta learning rate of the schedule and calls the
algorithm's outer step (:func:`mamlkit.methods.outer_step`, or the distributed one under
``torchrun``); validation (:mod:`mamlkit.run.validation`), logging and checkpointing happen every
``val_every``, ``log_every`` and ``checkpoint_every`` steps, and Ctrl-C stops after the step in
progress with a checkpoint (:mod:`mamlkit.run.reproducible`).

Resuming replays nothing: the checkpoint holds the sampler's generator state, so a run that
was stopped and resumed takes exactly the steps an uninterrupted run would have taken.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import time
from pathlib import Path
from typing import Optional

import torch

from mamlkit.errors import ConfigError
from mamlkit.functional import get_params
from mamlkit.losses import cross_entropy
from mamlkit.methods import build_method
from mamlkit.methods import outer_step as method_outer_step
from mamlkit.outer_loop import NonFiniteError, frozen_everywhere, nonfinite_guard
from mamlkit.run import checkpoints, distributed
from mamlkit.run.config import (
    TrainConfig,
    build_model,
    changed_settings,
    check_samplers,
    meta_lr_at,
    omniglot_task_samplers,
    schedule_after_resume,
)
from mamlkit.run.reproducible import deferred_interrupt, seeded_random_layers, step_seed
from mamlkit.run.run_folder import RunFolder, git_commit, read_metrics  # noqa: F401  (read_metrics: also imported from here)
from mamlkit.run.saved_models import evaluate_checkpoint, load_method, load_weights  # noqa: F401  (see below)
from mamlkit.run.validation import check_model_fits, validate

# TrainConfig, read_metrics, load_weights, load_method and evaluate_checkpoint lived in this module
# before it was split by idea; they stay importable from here for one release.


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
        self.folder = RunFolder(run_dir)
        self.device = torch.device(config.device)
        self.samplers = check_samplers(samplers) if samplers is not None else omniglot_task_samplers(config)
        self.warm_start = None
        if model is None:
            model = build_model(config, torch.Generator().manual_seed(config.seed))
        elif config.init_from is not None:
            raise ConfigError("init_from starts the course's Conv4 from a weights file; with a model of "
                              "your own, load its weights into it before handing it to Trainer")
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
        if config.init_from is not None and not self.folder.checkpoint.exists():
            self.warm_start = self.start_from_weights(config.init_from)  # a resume restores it instead
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

    def start_from_weights(self, path: str) -> dict:
        """Copy θ (and learned inner rates) from the weights file ``path`` (``config.init_from``).

        Returns what the run's state records of it: the file, its SHA-256 and the meta-steps it
        had been trained for.

        Raises:
            CheckpointError: the file cannot be loaded as Conv4 weights (see ``load_weights``).
            ConfigError: its network (``n_way``, ``channels``) is not this run's, or it holds
                learned inner rates and this run does not learn them (they would be lost).
        """
        _, params, _, saved = load_weights(path)
        for name in ("n_way", "channels"):
            if saved[name] != getattr(self.config, name):
                raise ConfigError(f"init_from {path}: its network has {name}={saved[name]}, this run "
                                  f"{name}={getattr(self.config, name)}; start from a file of the same network")
        state = checkpoints.load(path)
        saved_rates = state.get("inner_lrs")
        if saved_rates and self.inner_lrs is None:
            raise ConfigError(f"init_from {path}: the file holds learned inner rates; pass "
                              "--learn-inner-lrs to keep training them (without it they would be lost)")
        with torch.no_grad():
            for name, tensor in params.items():
                self.params[name].copy_(tensor)
            for name, tensor in (saved_rates or {}).items():
                self.inner_lrs[name].copy_(tensor)
        start = {"file": str(path), "sha256": checkpoints.sha256(path), "iterations": state.get("iteration"),
                 "training_seconds": state.get("train_seconds")}
        manifest = Path(path).with_suffix(".json")  # an exported file's manifest says how it was made
        if manifest.is_file():
            made = json.loads(manifest.read_text())
            start.update({k: made[k] for k in ("command", "training_seconds", "test_accuracy") if k in made})
        return start

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
            "warm_start": self.warm_start,
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
        self.warm_start = state.get("warm_start")

    @property
    def run_dir(self) -> Path:
        return self.folder.path

    @property
    def checkpoint_path(self) -> Path:
        return self.folder.checkpoint

    @property
    def model_path(self) -> Path:
        """The final weights, written by :meth:`train` when the run is complete."""
        return self.folder.weights

    def save_checkpoint(self) -> None:
        self.folder.save_checkpoint(self.state())

    def resume_if_possible(self) -> bool:
        """Continue from ``checkpoint.pt`` if the run folder has one; drop log lines past it."""
        state = self.folder.load_checkpoint()
        if state is None:
            return False
        self.load_state(state)
        self.folder.drop_records_after(self.iteration)  # those steps will be redone
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
        """Before the first step: does the model fit the tasks? (:func:`mamlkit.run.validation.check_model_fits`)."""
        check_model_fits(self.model, self.params, self.method, tasks, self.config.implementation,
                         self.device, num_tasks)
        self.model_checked = True

    def evaluate(self, split: str = "val", num_tasks: Optional[int] = None, seed: int = 1234) -> dict:
        """The metric on ``num_tasks`` tasks of ``split`` (default ``config.val_tasks``), always the
        same tasks for a given seed; see :func:`mamlkit.run.validation.validate`."""
        return validate(self.model, self.params, self.method, self.samplers[split], self.loss_fn, self.metric,
                        self.config.eval_inner_steps, num_tasks or self.config.val_tasks, self.device,
                        self.config.eval_mode, seed)

    def log(self, record: dict) -> None:
        self.folder.log(record)

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
        self.folder.plot_learning_curve()

    def export(self, path: str | Path, extra: Optional[dict] = None) -> Path:
        """Write the weights alone (θ and learned rates, no optimiser) for sharing."""
        weights = {
            "config": dataclasses.asdict(self.config),
            "iteration": self.iteration,
            "params": {n: p.detach().cpu().clone() for n, p in self.params.items()},
            "inner_lrs": None if self.inner_lrs is None else {n: t.detach().cpu().clone() for n, t in self.inner_lrs.items()},
        }
        weights.update(extra or {})
        return self.folder.save_weights(weights, path)

