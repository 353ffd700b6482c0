r"""MAML on sine waves, against the pretrained baseline: the paper's 5-shot regression numbers.

It is one module because it is one experiment, training, evaluation and its command line,
that notebook 03 runs and its saved results reproduce.

Meta-training follows Finn et al. (2017, §5.1): the 1 → 40 → 40 → 1 ReLU network
(:class:`mamlkit.models.SineMLP`), K = 10 support and 10 query points per task, one inner SGD
step with α = 0.01, Adam with β = 10⁻³ on meta-batches of 25 tasks. Evaluation adapts to 600
new tasks from K = 5 points with up to 10 steps of the same SGD and measures the MSE on 100
evenly spaced points over [−5, 5].

The paper reports, for 5 points and 1 / 5 / 10 steps, an MSE of 0.67 / 0.38 / 0.35 for MAML and
2.41 / 2.23 / 2.19 for the pretrained baseline. The reference code's sine command trains 70,000
meta-iterations; the command below trains both methods for :data:`DEFAULT_ITERATIONS` on the same tasks from the same
initialisation, which takes about 3 CPU minutes on one core, and prints measured against paper::

    OMP_NUM_THREADS=1 python -m mamlkit.lessons.sine_experiment

**The baseline's step size.** The paper fine-tunes the pretrained network "with an
automatically tuned step size". The table shows it both ways: with MAML's α = 0.01, and with
the α from :data:`FINE_TUNE_LRS` that does best on 200 validation waves (:func:`tune_fine_tune_lr`;
the 600 test waves play no part in the choice).

**Divergent tasks.** A mean over tasks hides how the error is spread, and one task whose
fine-tuning blows up (the learned θ can sit where α = 0.01 is too large a step for some waves,
typically when the 5 support points bunch up near x = ±5) can dominate it.
:class:`SineEvaluation` keeps every task's MSE after every step and the table reports the mean
over *all* tasks (``inf``/``nan`` if any task overflowed), the median, the worst task, and how
many tasks *overshot*: at some step their own support MSE went above where fine-tuning
started (mildly, an oscillation that recovers; severely, divergence). Nothing is clipped or
dropped; only the last column, clearly labelled, leaves those tasks out.

Used in ``notebooks/03_outer_loop.ipynb``.
"""

from __future__ import annotations

import argparse
import math
import shlex
import sys
import time
from dataclasses import dataclass, field
from typing import Optional, Sequence

import torch

from mamlkit.data.sinusoid import SinusoidTasks, sample_sinusoid_tasks
from mamlkit.evaluate import adaptation_curve
from mamlkit.functional import Params, check_params, get_params
from mamlkit.inner_loop import InnerLR, init_inner_lrs
from mamlkit.lessons.baseline import choose_inner_lr, pretrain
from mamlkit.losses import mse
from mamlkit.models import SineMLP
from mamlkit.outer_loop import outer_step
from mamlkit.tasks import TaskBatch

__all__ = [
    "DEFAULT_ITERATIONS",
    "PAPER_MSE",
    "SineEvaluation",
    "SineRun",
    "SeedStudy",
    "evaluate_sine",
    "evaluation_tasks",
    "main",
    "markdown_table",
    "seed_study",
    "train_sine_maml",
    "train_sine_pretrained",
]

#: Meta-iterations of the command-line reproduction: a few CPU minutes (the reference code's command: 70,000).
DEFAULT_ITERATIONS = 20_000
#: The seed of the 600 evaluation tasks: every method is judged on the same waves.
EVAL_SEED = 2017
#: The seed of the validation waves on which the baseline's fine-tuning step size is chosen.
VALIDATION_SEED = 1
#: Step sizes tried for fine-tuning the pretrained baseline.
FINE_TUNE_LRS = (0.0001, 0.0003, 0.001, 0.003, 0.01)
#: The paper's 5-shot MSE after 1, 5 and 10 fine-tuning steps.
PAPER_MSE = {
    "MAML": {1: 0.67, 5: 0.38, 10: 0.35},
    "pretrained": {1: 2.41, 5: 2.23, 10: 2.19},
}


@dataclass
class SineRun:
    """A trained sine-wave model and how it got there.

    Attributes:
        model: the architecture, a :class:`SineMLP`.
        params: θ, ``{name: tensor}``.
        inner_lr: α for fine-tuning: a float, or ``{name: scalar tensor}`` when it was learned.
        losses: the training loss at every iteration (MAML: mean query MSE after adaptation;
            pretrained: pooled MSE of θ itself).
        seconds: wall time of the training loop.
        settings: the arguments of the run.
    """

    model: SineMLP
    params: Params
    inner_lr: InnerLR
    losses: list[float]
    seconds: float
    settings: dict = field(default_factory=dict)


def _check_iterations(iterations: int) -> None:
    if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 1:
        raise ValueError(f"iterations must be a positive integer, got {iterations!r}")


def _init(seed: int) -> tuple[SineMLP, Params, torch.Generator]:
    """The model (initialised from ``seed``), θ, and the task generator (``seed + 1``).

    MAML and the baseline with the same seed start from the same θ and see the same tasks.
    """
    model = SineMLP(generator=torch.Generator().manual_seed(seed))
    return model, get_params(model), torch.Generator().manual_seed(seed + 1)


def train_sine_maml(
    iterations: int,
    meta_batch_size: int = 25,
    k_shot: int = 10,
    inner_lr: float = 0.01,
    inner_steps: int = 1,
    first_order: bool = False,
    meta_lr: float = 1e-3,
    seed: int = 0,
    progress: bool = True,
    learn_inner_lrs: bool = False,
    method: str = "fast",
) -> SineRun:
    """Meta-train the sine network with MAML (:func:`mamlkit.outer_loop.outer_step`).

    Args:
        iterations: outer steps (the reference code's command: 70,000).
        meta_batch_size: tasks per outer step.
        k_shot: support points per task; the query set has as many.
        inner_lr: α, the inner SGD step size (the initial value when ``learn_inner_lrs``).
        inner_steps: inner SGD steps during meta-training.
        first_order: drop the second-order terms (first-order MAML).
        meta_lr: β, Adam's learning rate.
        seed: initialisation and task sampling.
        progress: show a progress bar.
        learn_inner_lrs: learn one α per parameter tensor alongside θ (see
            :func:`mamlkit.inner_loop.init_inner_lrs`).
        method: ``"loop"`` trains with :func:`mamlkit.outer_loop.meta_loss`, the per-task loop
            of Exercise 3.1 (notebook 03 trains this way, so the learner's own code is what
            trains); ``"fast"`` with its task-batched twin :func:`mamlkit.fast.meta_loss_batched`,
            the same numbers about 8 times faster on sine waves.

    Returns:
        A :class:`SineRun`; ``losses[i]`` is the mean query MSE after adaptation at step ``i``.
    """
    _check_iterations(iterations)
    if method not in ("fast", "loop"):
        raise ValueError(f"method must be 'fast' or 'loop', got {method!r}")
    settings = dict(iterations=iterations, meta_batch_size=meta_batch_size, k_shot=k_shot,
                    inner_lr=inner_lr, inner_steps=inner_steps, first_order=first_order,
                    meta_lr=meta_lr, seed=seed, learn_inner_lrs=learn_inner_lrs, method=method)
    from tqdm.auto import tqdm

    model, params, generator = _init(seed)
    lr = init_inner_lrs(params, inner_lr) if learn_inner_lrs else inner_lr
    trainable = list(params.values()) + (list(lr.values()) if learn_inner_lrs else [])
    optimizer = torch.optim.Adam(trainable, lr=meta_lr)
    losses = []
    start = time.perf_counter()
    bar = tqdm(range(iterations), disable=not progress, desc="MAML", unit="step", mininterval=1.0)
    for _ in bar:
        tasks = sample_sinusoid_tasks(meta_batch_size, k_shot, k_shot, generator).batch
        metrics = outer_step(model, params, tasks, optimizer, mse, lr, inner_steps,
                             first_order=first_order, method=method)
        losses.append(metrics["query_loss"])
        if len(losses) % 500 == 0:
            bar.set_postfix(query_mse=f"{sum(losses[-500:]) / 500:.3f}")
    return SineRun(model, params, lr, losses, time.perf_counter() - start, settings)


def train_sine_pretrained(
    iterations: int,
    meta_batch_size: int = 25,
    k_shot: int = 10,
    lr: float = 1e-3,
    inner_lr: float = 0.01,
    seed: int = 0,
    progress: bool = True,
) -> SineRun:
    """The baseline: the same network, seed and tasks, trained by plain regression on all points.

    Each step pools the ``meta_batch_size`` tasks' support and query points (the very points
    MAML sees) into one regression batch (:func:`mamlkit.lessons.baseline.pretrain`).

    Args:
        iterations, meta_batch_size, k_shot, seed, progress: as in :func:`train_sine_maml`.
        lr: Adam's learning rate (MAML's meta_lr).
        inner_lr: α used later for fine-tuning, stored in the run.

    Returns:
        A :class:`SineRun`; ``losses[i]`` is the pooled MSE at step ``i``.
    """
    _check_iterations(iterations)
    settings = dict(iterations=iterations, meta_batch_size=meta_batch_size, k_shot=k_shot,
                    lr=lr, inner_lr=inner_lr, seed=seed)
    model, params, generator = _init(seed)
    start = time.perf_counter()
    losses = pretrain(model, params,
                      lambda: sample_sinusoid_tasks(meta_batch_size, k_shot, k_shot, generator).batch,
                      mse, iterations, lr=lr, progress=progress)
    return SineRun(model, params, inner_lr, losses, time.perf_counter() - start, settings)


@dataclass
class SineEvaluation:
    """Every evaluation task's MSE after every fine-tuning step, and summaries of it.

    Fine-tuning *overshot* on a task by a given step when, at that step or an earlier one,
    plain SGD failed at its own job: the task's support MSE was above where it started (or
    anything overflowed), because α was too large a step for that task. The mild form
    oscillates and recovers; the severe form diverges. The test reads the support set only, so
    it does not peek at the grid the method is scored on, and a task that overshot stays
    counted even if a later step lands low on the support points again.

    Attributes:
        mse: ``(steps + 1, num_tasks)``; row ``s`` holds each task's grid MSE after ``s`` steps.
        support_mse: ``(steps + 1, num_tasks)``; the MSE on the task's own support points.
        k_shot: support points each task was fine-tuned on.
        inner_lr: the fine-tuning step size α (a float, or a description of learned rates).
    """

    mse: torch.Tensor
    support_mse: torch.Tensor
    k_shot: int
    inner_lr: object = None

    @property
    def steps(self) -> int:
        return self.mse.shape[0] - 1

    @property
    def num_tasks(self) -> int:
        return self.mse.shape[1]

    @property
    def overshot(self) -> torch.Tensor:
        """``(steps + 1, num_tasks)`` bool: fine-tuning of that task has overshot by that step."""
        blew_up = ~torch.isfinite(self.mse) | ~torch.isfinite(self.support_mse)
        above_start = blew_up | (self.support_mse > self.support_mse[0])
        return above_start.int().cummax(dim=0).values.bool()

    @property
    def num_overshot(self) -> list[int]:
        return self.overshot.sum(dim=1).tolist()

    @property
    def mean(self) -> list[float]:
        """Mean over *all* tasks after 0..steps steps (``inf`` or ``nan`` if a task overflowed)."""
        return self.mse.double().mean(dim=1).tolist()

    @property
    def ci95(self) -> list[float]:
        """Half-width of the 95% confidence interval of :attr:`mean`, 1.96·s/√n, per step."""
        return [_ci95(row) for row in self.mse]

    @property
    def median(self) -> list[float]:
        """Median over all tasks (an overflowed task counts as ``inf``)."""
        return self._overflow_as_inf().quantile(0.5, dim=1).tolist()

    @property
    def worst(self) -> list[float]:
        """The largest task MSE per step (an overflowed task counts as ``inf``)."""
        return self._overflow_as_inf().max(dim=1).values.tolist()

    def mean_without_overshot(self, step: int) -> tuple[float, float, int]:
        """``(mean, ci95, n)`` over the ``n`` tasks whose fine-tuning had not overshot by ``step``."""
        kept = self.mse[step][~self.overshot[step]].double()
        if kept.numel() < 2:
            return math.nan, math.nan, kept.numel()
        return kept.mean().item(), _ci95(kept), kept.numel()

    def row(self, step: int) -> dict:
        """Every summary after ``step`` steps, as one dict."""
        mean_kept, ci_kept, kept = self.mean_without_overshot(step)
        return {"step": step, "mean": self.mean[step], "ci95": self.ci95[step],
                "median": self.median[step], "worst": self.worst[step],
                "overshot": self.num_overshot[step], "mean_without_overshot": mean_kept,
                "ci95_without_overshot": ci_kept, "num_without_overshot": kept}

    def _overflow_as_inf(self) -> torch.Tensor:
        return torch.nan_to_num(self.mse.double(), nan=math.inf, posinf=math.inf)


def _ci95(values: torch.Tensor) -> float:
    """1.96·s/√n for ``(n,)`` values: the paper's 95% interval (``nan`` if any value overflowed).

    The same formula as :func:`mamlkit.evaluate.mean_confidence_interval`, written out here
    because that function is an exercise of notebook 04, and notebook 03 comes first.
    """
    values = values.double()
    return 1.96 * values.std(unbiased=True).item() / math.sqrt(values.numel())


def evaluate_sine(
    params: Params,
    inner_lr: InnerLR = 0.01,
    k_shot: int = 5,
    steps: int = 10,
    num_tasks: int = 600,
    grid_points: int = 100,
    seed: int = EVAL_SEED,
    batch_size: int = 100,
) -> SineEvaluation:
    """Fine-tune θ on ``num_tasks`` new waves and record the grid MSE after 0..``steps`` steps.

    The same ``seed`` gives the same waves and support points, so two methods evaluated with
    it are compared task by task. Fine-tuning is plain SGD with step ``inner_lr``, run by
    :func:`mamlkit.evaluate.adaptation_curve` (MAML's inner loop, without its graph).

    Args:
        params: θ of a :class:`SineMLP` (any hidden width).
        inner_lr: α, a float or the learned ``{name: scalar tensor}``.
        k_shot: support points per task (the paper's table: 5).
        steps: fine-tuning steps (the table reports 1, 5 and 10).
        num_tasks: evaluation tasks (600, as in the literature).
        grid_points: query points, evenly spaced over [−5, 5].
        seed: of the evaluation tasks.
        batch_size: tasks fine-tuned at once (memory only; results do not depend on it).

    Returns:
        A :class:`SineEvaluation` holding the ``(steps + 1, num_tasks)`` per-task MSE.
    """
    if isinstance(num_tasks, bool) or not isinstance(num_tasks, int) or num_tasks < 2:
        raise ValueError(f"num_tasks must be an integer >= 2 (for a confidence interval), got {num_tasks!r}")
    model = SineMLP(hidden=params["layers.0.weight"].shape[0])
    check_params(model, params)
    tasks = evaluation_tasks(num_tasks, k_shot, grid_points, seed).batch
    grid_curves, support_curves = [], []
    for start in range(0, num_tasks, batch_size):
        part = TaskBatch(*(t[start:start + batch_size] for t in tasks))
        grid_curves.append(adaptation_curve(model, params, part, mse, inner_lr, steps, metric=mse))
        # The same steps again, scored on the support points themselves.
        on_support = TaskBatch(part.x_support, part.y_support, part.x_support, part.y_support)
        support_curves.append(adaptation_curve(model, params, on_support, mse, inner_lr, steps, metric=mse))
    described_lr = inner_lr if isinstance(inner_lr, (int, float)) else "learned"
    return SineEvaluation(torch.cat(grid_curves, dim=1), torch.cat(support_curves, dim=1), k_shot, described_lr)


def evaluation_tasks(num_tasks: int = 600, k_shot: int = 5, grid_points: int = 100,
                     seed: int = EVAL_SEED) -> SinusoidTasks:
    """The waves :func:`evaluate_sine` fine-tunes on, with their amplitudes and phases.

    Returns:
        ``num_tasks`` tasks with ``k_shot`` random support points and a query set of
        ``grid_points`` evenly spaced points over [−5, 5]; column ``i`` of a
        :class:`SineEvaluation` made with the same arguments belongs to task ``i``.
    """
    return sample_sinusoid_tasks(num_tasks, k_shot, grid_points, torch.Generator().manual_seed(seed),
                                 query_grid=True)


def tune_fine_tune_lr(
    params: Params,
    candidates: Sequence[float] = FINE_TUNE_LRS,
    k_shot: int = 5,
    steps: int = 10,
    num_tasks: int = 200,
    seed: int = VALIDATION_SEED,
) -> tuple[float, dict[float, float]]:
    """The paper's "automatically tuned step size" for the baseline, chosen on validation waves.

    Each candidate α is scored by the grid MSE averaged over tasks and over 1..``steps``
    fine-tuning steps, on ``num_tasks`` waves drawn from ``seed`` (not the test waves).

    Returns:
        ``(best α, {α: score})``, as :func:`mamlkit.lessons.baseline.choose_inner_lr`.
    """
    def score(lr: float) -> float:
        return sum(evaluate_sine(params, lr, k_shot, steps, num_tasks, seed=seed).mean[1:]) / steps

    return choose_inner_lr(score, candidates)


def _number(value: float) -> str:
    return f"{value:.2f}" if math.isfinite(value) else str(value)


def markdown_table(rows: Sequence[tuple[str, SineEvaluation, Optional[str]]],
                   report_steps: Sequence[int] = (1, 5, 10), paper: Optional[dict] = None) -> str:
    """A Markdown table of paper and measured MSE, per method and number of fine-tuning steps.

    Args:
        rows: ``(label, evaluation, paper key or None)`` per method; the key picks the paper's
            numbers from ``paper``.
        report_steps: which numbers of fine-tuning steps to show.
        paper: ``{key: {steps: mse}}``, by default :data:`PAPER_MSE`.
    """
    paper = PAPER_MSE if paper is None else paper
    lines = [
        "| method | steps | paper | mean ± 95% CI, all tasks | median | worst task | overshot | mean ± 95% CI, without overshot |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for label, result, key in rows:
        for step in report_steps:
            r = result.row(step)
            reference = paper.get(key, {}).get(step) if key else None
            lines.append(
                f"| {label} | {step} | {'–' if reference is None else f'{reference:.2f}'} "
                f"| {_number(r['mean'])} ± {_number(r['ci95'])} | {_number(r['median'])} "
                f"| {_number(r['worst'])} | {r['overshot']} / {result.num_tasks} "
                f"| {_number(r['mean_without_overshot'])} ± {_number(r['ci95_without_overshot'])} |"
            )
    return "\n".join(lines)


#: The methods of :func:`seed_study`, in the order it trains them.
SEED_STUDY_METHODS = ("MAML", "first-order MAML", "pretrained, tuned α")


@dataclass
class SeedStudy:
    """The 5-shot test MSE of each method, once per training seed: how much a verdict moves with the seed.

    Every seed trains all methods from the same θ on the same tasks (``seed``), and every run is
    tested on the same waves (:data:`EVAL_SEED`), so the spread over seeds is the spread of
    *training*, not of the test set.

    Attributes:
        seeds: the training seeds, one row each.
        iterations: outer steps (or pretraining steps) of every run.
        mean: ``{method: (num_seeds, steps + 1)}``, each run's mean test MSE after 0..steps steps
            (``inf``/``nan`` where a task overflowed).
        median: ``{method: (num_seeds, steps + 1)}``, each run's median test MSE.
        tuned_lrs: the baseline's fine-tuning step size per seed (chosen on validation waves).
        seconds: ``{method: [training seconds per seed]}``.
    """

    seeds: list[int]
    iterations: int
    mean: dict[str, torch.Tensor]
    median: dict[str, torch.Tensor]
    tuned_lrs: list[float]
    seconds: dict[str, list[float]]

    def spread(self, method: str, step: int, statistic: str = "mean") -> dict[str, float]:
        """Over seeds, of one method's ``statistic`` ("mean" or "median") after ``step`` steps.

        Returns:
            ``{"mean", "std", "min", "max"}`` over the seeds (``std`` with n − 1).
        """
        values = getattr(self, statistic)[method][:, step].double()
        return {"mean": values.mean().item(), "std": values.std(unbiased=True).item() if len(values) > 1 else 0.0,
                "min": values.min().item(), "max": values.max().item()}

    def wins(self, better: str, worse: str, step: int, worse_step: Optional[int] = None,
             statistic: str = "mean") -> int:
        """On how many seeds ``better`` after ``step`` steps is below ``worse`` after ``worse_step``."""
        worse_step = step if worse_step is None else worse_step
        table = getattr(self, statistic)
        return int((table[better][:, step] < table[worse][:, worse_step]).sum())

    def markdown(self, report_steps: Sequence[int] = (1, 5, 10)) -> str:
        """A table: per method and step, mean ± std over seeds of the runs' mean test MSE, and the range."""
        lines = [f"| method | steps | mean test MSE, mean ± std over {len(self.seeds)} seeds | range over seeds "
                 "| median test MSE, mean over seeds |", "|---|---|---|---|---|"]
        for method in self.mean:
            for step in report_steps:
                s, m = self.spread(method, step), self.spread(method, step, "median")
                lines.append(f"| {method} | {step} | {_number(s['mean'])} ± {_number(s['std'])} "
                             f"| {_number(s['min'])}–{_number(s['max'])} | {_number(m['mean'])} |")
        return "\n".join(lines)


def seed_study(
    seeds: Sequence[int] = (0, 1, 2, 3, 4),
    iterations: int = 10_000,
    num_tasks: int = 600,
    runs: Optional[dict[tuple[str, int], SineRun]] = None,
    progress: bool = False,
) -> SeedStudy:
    """Train MAML, first-order MAML and the pretrained baseline once per seed, and test each run.

    Each run has the paper's settings (:func:`train_sine_maml`, :func:`train_sine_pretrained`,
    with the fast twin of the meta-loss); the baseline is fine-tuned with the step size that
    :func:`tune_fine_tune_lr` picks for that seed's θ. Every run is tested on the same
    ``num_tasks`` waves with :func:`evaluate_sine`.

    Args:
        seeds: training seeds (initialisation and tasks).
        iterations: training steps of every run.
        num_tasks: test waves.
        runs: runs already trained, ``{(method, seed): run}`` with a method of
            :data:`SEED_STUDY_METHODS` (the baseline's run is the pretrained one, before tuning):
            they are used instead of training again, and must have ``iterations`` steps.
        progress: show progress bars.

    Returns:
        A :class:`SeedStudy`.
    """
    _check_iterations(iterations)
    seeds = list(seeds)
    if not seeds:
        raise ValueError("seeds must name at least one seed")
    runs = dict(runs or {})
    for (method, seed), run in runs.items():
        if method not in SEED_STUDY_METHODS:
            raise ValueError(f"runs: unknown method {method!r}; the methods are {SEED_STUDY_METHODS}")
        if run.settings.get("iterations") != iterations:
            raise ValueError(f"runs[{method!r}, {seed}] trained {run.settings.get('iterations')} steps, not {iterations}")
    train = {
        "MAML": lambda seed: train_sine_maml(iterations, seed=seed, progress=progress),
        "first-order MAML": lambda seed: train_sine_maml(iterations, seed=seed, first_order=True, progress=progress),
        "pretrained, tuned α": lambda seed: train_sine_pretrained(iterations, seed=seed, progress=progress),
    }
    means = {m: [] for m in SEED_STUDY_METHODS}
    medians = {m: [] for m in SEED_STUDY_METHODS}
    seconds = {m: [] for m in SEED_STUDY_METHODS}
    tuned_lrs = []
    for seed in seeds:
        for method in SEED_STUDY_METHODS:
            run = runs.get((method, seed)) or train[method](seed)
            lr = run.inner_lr
            if method.startswith("pretrained"):
                lr, _ = tune_fine_tune_lr(run.params, num_tasks=min(200, num_tasks))
                tuned_lrs.append(lr)
            result = evaluate_sine(run.params, lr, num_tasks=num_tasks)
            means[method].append(torch.tensor(result.mean, dtype=torch.float64))
            medians[method].append(torch.tensor(result.median, dtype=torch.float64))
            seconds[method].append(run.seconds)
    return SeedStudy(seeds, iterations, {m: torch.stack(v) for m, v in means.items()},
                     {m: torch.stack(v) for m, v in medians.items()}, tuned_lrs, seconds)


def main(argv: Optional[list[str]] = None) -> int:
    """``python -m mamlkit.lessons.sine_experiment``: train MAML and the baseline, print the table."""
    parser = argparse.ArgumentParser(prog="python -m mamlkit.lessons.sine_experiment",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=DEFAULT_ITERATIONS,
                        help=f"meta-iterations for both methods (default {DEFAULT_ITERATIONS}; the reference code's command: 70000)")
    parser.add_argument("--seed", type=int, default=0, help="initialisation and training tasks")
    parser.add_argument("--tasks", type=int, default=600, help="evaluation tasks")
    parser.add_argument("--first-order", action="store_true", help="also train first-order MAML")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    args = parser.parse_args(argv)

    progress = not args.no_progress
    start = time.perf_counter()
    runs = {"MAML": train_sine_maml(args.iterations, seed=args.seed, progress=progress)}
    if args.first_order:
        runs["first-order MAML"] = train_sine_maml(args.iterations, seed=args.seed, first_order=True,
                                                   progress=progress)
    pretrained = train_sine_pretrained(args.iterations, seed=args.seed, progress=progress)
    tuned_lr, scores = tune_fine_tune_lr(pretrained.params)

    rows = [(name, evaluate_sine(run.params, run.inner_lr, num_tasks=args.tasks), name)
            for name, run in runs.items()]
    rows.append((f"pretrained, α = {pretrained.inner_lr:g} (MAML's)",
                 evaluate_sine(pretrained.params, pretrained.inner_lr, num_tasks=args.tasks), None))
    rows.append((f"pretrained, tuned α = {tuned_lr:g}",
                 evaluate_sine(pretrained.params, tuned_lr, num_tasks=args.tasks), "pretrained"))
    total = time.perf_counter() - start

    command = "OMP_NUM_THREADS=1 python -m mamlkit.lessons.sine_experiment " + " ".join(
        shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))
    print(f"\n5-shot sine regression, MSE on a 100-point grid over [-5, 5], {args.tasks} tasks, "
          f"after {args.iterations} meta-iterations (the reference code's command: 70000)\n")
    print(markdown_table(rows))
    print("\nOvershot: tasks on which fine-tuning, at this step or before, pushed the task's own support MSE"
          "\nabove its starting value (or overflowed): α was too large a step for them. They stay in every"
          "\ncolumn but the last.")
    print("The baseline's step size was chosen on 200 validation waves, mean grid MSE over 1..10 steps: "
          + ", ".join(f"α = {lr:g}: {_number(score)}" for lr, score in scores.items()))
    print()
    for name, run in [*runs.items(), ("pretrained", pretrained)]:
        print(f"{name}: trained in {run.seconds:.0f} s")
    print(f"total wall time {total:.0f} s on {torch.get_num_threads()} thread(s), torch {torch.__version__}")
    print(f"command: {command.strip()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
