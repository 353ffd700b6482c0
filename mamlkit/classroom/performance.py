"""A graded performance target: points for the accuracy of a trained checkpoint.

In the spirit of the tiered Omniglot homework of Hung-yi Lee's ML course (HW15: thresholds for
transfer learning, first-order MAML, MAML), a learner submits the weights of a run trained with
their own code, and the grader measures them on a *fixed* set of meta-validation tasks
(Omniglot 5-way 1-shot; a seeded generator, so every submission meets the same tasks) with the
course's own evaluation code, within a time limit, and awards points by threshold::

    python -m mamlkit.classroom grade-checkpoint submissions/alice/model.pt

Default tiers for 5-way 1-shot: 4 points at 90%, 7 at 95%, 10 at 97% mean accuracy (a tier
counts when the measured mean reaches it). The evaluation runs ``python -m mamlkit evaluate``
in a subprocess of the grader's ``mamlkit``: the submission's code plays no part.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

__all__ = ["DEFAULT_TIERS", "PerformanceResult", "grade_checkpoint", "points_for"]

#: ``(accuracy reached, points)``, lowest first: 5-way 1-shot Omniglot tiers.
DEFAULT_TIERS: tuple[tuple[float, int], ...] = ((0.90, 4), (0.95, 7), (0.97, 10))
#: The fixed validation tasks: their number and the seed of the generator that draws them.
DEFAULT_TASKS = 200
DEFAULT_SEED = 2024


def points_for(accuracy: float, tiers: tuple[tuple[float, int], ...] = DEFAULT_TIERS) -> int:
    """The points of the highest tier whose threshold ``accuracy`` (a fraction) reaches; else 0.

    Raises:
        ValueError: ``accuracy`` outside [0, 1], or tiers not increasing in both threshold and points.
    """
    if not 0.0 <= accuracy <= 1.0:
        raise ValueError(f"accuracy must be a fraction in [0, 1], got {accuracy}")
    if any(a[0] >= b[0] or a[1] > b[1] for a, b in zip(tiers, tiers[1:])):
        raise ValueError(f"tiers must rise in threshold and points, got {tiers}")
    earned = 0
    for threshold, points in tiers:
        if accuracy >= threshold:
            earned = points
    return earned


@dataclass
class PerformanceResult:
    """What :func:`grade_checkpoint` measured and awarded."""

    checkpoint: str
    points: int
    max_points: int
    accuracy: float | None
    ci95: float | None
    seconds: float
    message: str

    def to_dict(self) -> dict:
        return asdict(self)


def grade_checkpoint(
    checkpoint: str | os.PathLike,
    *,
    tiers: tuple[tuple[float, int], ...] = DEFAULT_TIERS,
    num_tasks: int = DEFAULT_TASKS,
    seed: int = DEFAULT_SEED,
    split: str = "val",
    time_limit_s: float = 600.0,
    extra_args: tuple[str, ...] = (),
    env: dict[str, str] | None = None,
) -> PerformanceResult:
    """Evaluate a submitted checkpoint on fixed tasks within a time limit, and award points.

    Args:
        checkpoint: the submitted weights (``model.pt``, as ``python -m mamlkit export`` writes,
            or a run's ``checkpoint.pt``).
        tiers: ``(accuracy, points)`` thresholds, lowest first.
        num_tasks, seed, split: the fixed evaluation tasks (the same for every submission).
        time_limit_s: seconds the evaluation may take; past it the submission earns 0.
        extra_args: more options for ``python -m mamlkit evaluate`` (``--data-root DIR``).
        env: the evaluation's environment (default: this process's).

    Returns:
        A :class:`PerformanceResult`; a checkpoint that cannot be evaluated (missing, not a
        5-way model, too slow) earns 0 with a message saying why.
    """
    max_points = max((p for _, p in tiers), default=0)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="mamlkit-perf-") as tmp:
        out = Path(tmp) / "result.json"
        command = [
            sys.executable, "-m", "mamlkit", "evaluate", str(checkpoint), "--split", split,
            "--tasks", str(num_tasks), "--seed", str(seed), "--json", str(out), *extra_args,
        ]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=time_limit_s, env=env, check=False)
        except subprocess.TimeoutExpired:
            seconds = time.perf_counter() - start
            return PerformanceResult(str(checkpoint), 0, max_points, None, None, seconds,
                                     f"the evaluation did not finish within the time limit of {time_limit_s:g} s")
        seconds = time.perf_counter() - start
        if done.returncode != 0 or not out.exists():
            tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-5:])
            return PerformanceResult(str(checkpoint), 0, max_points, None, None, seconds,
                                     f"the checkpoint could not be evaluated:\n{tail}")
        result = json.loads(out.read_text(encoding="utf-8"))
    accuracy, ci95 = float(result["mean"]), float(result["ci95"])
    points = points_for(accuracy, tiers)
    reached = [f"{100 * t:g}%" for t, _ in tiers if accuracy >= t]
    message = (
        f"{100 * accuracy:.2f} ± {100 * ci95:.2f}% on {num_tasks} fixed {split} tasks in {seconds:.0f} s: "
        + (f"tier {reached[-1]} reached" if reached else f"below the first tier ({100 * tiers[0][0]:g}%)")
    )
    return PerformanceResult(str(checkpoint), points, max_points, accuracy, ci95, seconds, message)
