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

The *target* fixes the protocol (:data:`TARGET_PROTOCOL`: 5-way 1-shot, one query per class,
three inner steps, the ``maml`` split with rotations), never the submitted file: the settings
stored in the file's ``config`` are replaced by the target's before evaluating, so editing them
(``k_shot`` 1 → 5, say, for five support images per class) changes nothing. What the file
contributes is what was learned: θ, learned inner rates, the algorithm and its step size α. A
file whose network does not fit the target (another number of classes or input channels) is
refused with 0 points and the reason, and the command exits non-zero.
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

__all__ = ["DEFAULT_TIERS", "TARGET_PROTOCOL", "PerformanceResult", "grade_checkpoint", "points_for"]

#: ``(accuracy reached, points)``, lowest first: 5-way 1-shot Omniglot tiers.
DEFAULT_TIERS: tuple[tuple[float, int], ...] = ((0.90, 4), (0.95, 7), (0.97, 10))
#: The fixed validation tasks: their number and the seed of the generator that draws them.
DEFAULT_TASKS = 200
DEFAULT_SEED = 2024
#: The evaluation protocol of the target, written over the submitted file's own settings.
TARGET_PROTOCOL: dict = {
    "n_way": 5, "k_shot": 1, "n_query": 1, "eval_n_query": 1, "eval_inner_steps": 3,
    "split": "maml", "rotate": True,
}


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
    protocol: str = ""

    @property
    def graded(self) -> bool:
        """Whether the checkpoint was evaluated (``False``: it earned 0 because it could not be)."""
        return self.accuracy is not None

    def to_dict(self) -> dict:
        return asdict(self) | {"graded": self.graded}


def describe_protocol(protocol: dict, num_tasks: int, seed: int, split: str) -> str:
    """``"5-way 1-shot, 1 query per class, 3 inner steps, 200 val tasks (seed 2024)"``."""
    return (f"{protocol['n_way']}-way {protocol['k_shot']}-shot, {protocol['eval_n_query']} query per class, "
            f"{protocol['eval_inner_steps']} inner steps, {num_tasks} {split} tasks of the "
            f"{protocol['split']!r} split (seed {seed})")


def _with_target_protocol(checkpoint: Path, out: Path, protocol: dict) -> str | None:
    """Write ``checkpoint`` to ``out`` with its settings replaced by ``protocol``.

    Returns why the file cannot be graded under the protocol, or ``None`` when ``out`` was written.
    """
    import torch

    try:
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        return f"no file {checkpoint}"
    except Exception as err:  # a file torch cannot read as a plain checkpoint
        return f"{checkpoint} is not a checkpoint that loads with weights_only=True ({type(err).__name__}: {err})"
    if not isinstance(state, dict) or not isinstance(state.get("config"), dict) or not isinstance(state.get("params"), dict):
        return f"{checkpoint} holds no 'config' and 'params': save it with python -m mamlkit export"
    head = state["params"].get("head.weight")
    if head is not None and head.shape[0] != protocol["n_way"]:
        return (f"the network's head has {head.shape[0]} outputs, but the target is {protocol['n_way']}-way: "
                f"train with --n-way {protocol['n_way']}")
    first = state["params"].get("blocks.0.conv.weight")
    if first is not None and first.shape[1] != 1:
        return f"the network's first convolution takes {first.shape[1]} channels; Omniglot images have 1"
    state["config"] = dict(state["config"]) | protocol
    torch.save(state, out)
    return None


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
    protocol: dict | None = None,
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

        protocol: the target's task shape and evaluation settings (default
            :data:`TARGET_PROTOCOL`); the file's own settings are replaced by these.

    Returns:
        A :class:`PerformanceResult`; a checkpoint that cannot be evaluated (missing, not a
        5-way model, too slow) earns 0 with a message saying why (``result.graded`` is False).
    """
    protocol = dict(TARGET_PROTOCOL if protocol is None else protocol)
    described = describe_protocol(protocol, num_tasks, seed, split)
    max_points = max((p for _, p in tiers), default=0)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="mamlkit-perf-") as tmp:
        out = Path(tmp) / "result.json"
        graded_file = Path(tmp) / "submission.pt"
        refusal = _with_target_protocol(Path(checkpoint), graded_file, protocol)
        if refusal is not None:
            return PerformanceResult(str(checkpoint), 0, max_points, None, None, time.perf_counter() - start,
                                     f"not graded: {refusal}", described)
        command = [
            sys.executable, "-m", "mamlkit", "evaluate", str(graded_file), "--split", split,
            "--tasks", str(num_tasks), "--seed", str(seed), "--n-query", str(protocol["eval_n_query"]),
            "--inner-steps", str(protocol["eval_inner_steps"]), "--json", str(out), *extra_args,
        ]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=time_limit_s, env=env, check=False)
        except subprocess.TimeoutExpired:
            seconds = time.perf_counter() - start
            return PerformanceResult(str(checkpoint), 0, max_points, None, None, seconds,
                                     f"the evaluation did not finish within the time limit of {time_limit_s:g} s", described)
        seconds = time.perf_counter() - start
        if done.returncode != 0 or not out.exists():
            tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-5:])
            return PerformanceResult(str(checkpoint), 0, max_points, None, None, seconds,
                                     f"the checkpoint could not be evaluated:\n{tail}", described)
        result = json.loads(out.read_text(encoding="utf-8"))
    accuracy, ci95 = float(result["mean"]), float(result["ci95"])
    points = points_for(accuracy, tiers)
    reached = [f"{100 * t:g}%" for t, _ in tiers if accuracy >= t]
    message = (
        f"{100 * accuracy:.2f} ± {100 * ci95:.2f}% ({described}) in {seconds:.0f} s: "
        + (f"tier {reached[-1]} reached" if reached else f"below the first tier ({100 * tiers[0][0]:g}%)")
    )
    return PerformanceResult(str(checkpoint), points, max_points, accuracy, ci95, seconds, message, described)
