"""A run's folder on disk: its checkpoint, its metrics log, its figure and its final weights.

- ``checkpoint.pt``  everything needed to continue (θ, learned rates, optimiser, sampler RNG,
  iteration), rewritten atomically (:func:`mamlkit.run.checkpoints.atomic_save`);
- ``metrics.jsonl``  one JSON object per logged step or validation;
- ``learning_curve.png``  training and validation accuracy against meta-steps;
- ``model.pt``  the final weights alone, written when the run ends.

Under ``torchrun`` every process holds the same state and only the main one writes
(:mod:`mamlkit.run.distributed`); the checkpoint is read by the main process and sent to the others.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Optional

from mamlkit.run import checkpoints, distributed


def read_metrics(path: str | Path) -> list[dict]:
    """The records of a ``metrics.jsonl`` file, in order."""
    path = Path(path)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def git_commit() -> Optional[str]:
    """The commit of the code that is running, when it runs from a git checkout."""
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent,
                              capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


class RunFolder:
    """The files of one run, in the folder ``path`` (listed in the module docstring).

    Every process of a distributed run holds the same state; only the main one writes.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)

    @property
    def checkpoint(self) -> Path:
        return self.path / "checkpoint.pt"

    @property
    def weights(self) -> Path:
        """The final weights, written when the run is complete."""
        return self.path / "model.pt"

    @property
    def metrics(self) -> Path:
        return self.path / "metrics.jsonl"

    @property
    def figure(self) -> Path:
        return self.path / "learning_curve.png"

    def save_checkpoint(self, state: dict) -> None:
        if distributed.is_main_process():
            checkpoints.atomic_save(state, self.checkpoint)

    def load_checkpoint(self) -> Optional[dict]:
        """The checkpoint's state, or None when there is none. The main process reads it and
        sends it to the others, which may run on machines without the run folder."""
        return distributed.broadcast_from_main(
            lambda: checkpoints.load(self.checkpoint) if self.checkpoint.exists() else None)

    def log(self, record: dict) -> None:
        """Append one JSON record (a logged step or a validation) to ``metrics.jsonl``."""
        if not distributed.is_main_process():
            return
        self.path.mkdir(parents=True, exist_ok=True)
        with open(self.metrics, "a") as f:
            f.write(json.dumps(record) + "\n")

    def drop_records_after(self, iteration: int) -> None:
        """Forget the records of steps after ``iteration``: a resumed run redoes those steps."""
        if self.metrics.exists() and distributed.is_main_process():
            kept = [line for line in self.metrics.read_text().splitlines()
                    if line and json.loads(line)["iteration"] <= iteration]
            self.metrics.write_text("".join(line + "\n" for line in kept))

    def plot_learning_curve(self) -> None:
        """Draw ``learning_curve.png`` from the records so far."""
        import matplotlib.pyplot as plt

        from mamlkit.run.plotting import plot_learning_curves

        # A skipped non-finite step logs only its count of skips: it has no accuracy to draw.
        records = [r for r in read_metrics(self.metrics) if r.get("kind") != "train" or "query_accuracy" in r]
        fig = plot_learning_curves(records)
        fig.savefig(self.figure, dpi=120)
        plt.close(fig)

    def save_weights(self, weights: dict, path: str | Path | None = None) -> Path:
        """Write ``weights`` (θ, learned rates, settings; no optimiser) to ``path`` (default ``model.pt``)."""
        return checkpoints.atomic_save(weights, self.weights if path is None else path)
