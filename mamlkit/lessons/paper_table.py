"""The MAML paper's Omniglot table (Finn et al. 2017, Table 1, conv net) beside the shipped checkpoints.

Every row is one setting, its published accuracy and the stem of its checkpoint in ``assets/``
(``<stem>.pt`` with the manifest ``<stem>.json`` that :func:`mamlkit.run.publish.export_run` wrote).
Numbers are test accuracies in [0, 1] on 600 tasks; ``±`` is the 95% confidence interval.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

ASSETS = Path(__file__).resolve().parents[1] / "assets"


@dataclass(frozen=True)
class Setting:
    """One column of the paper's table: ``n_way``-way ``k_shot``-shot and what the paper reports."""

    n_way: int
    k_shot: int
    paper_accuracy: float
    paper_ci95: float

    @property
    def name(self) -> str:
        return f"{self.n_way}-way {self.k_shot}-shot"

    @property
    def stem(self) -> str:
        return f"omniglot_{self.n_way}w{self.k_shot}s"


PAPER_SETTINGS = (
    Setting(5, 1, 0.987, 0.004),
    Setting(5, 5, 0.999, 0.001),
    Setting(20, 1, 0.958, 0.003),
    Setting(20, 5, 0.989, 0.002),
)


def shipped_results(assets: str | Path = ASSETS) -> list[tuple[Setting, dict | None]]:
    """Each setting with the manifest of its shipped checkpoint, or ``None`` where none is shipped."""
    rows = []
    for setting in PAPER_SETTINGS:
        path = Path(assets) / f"{setting.stem}.json"
        rows.append((setting, json.loads(path.read_text()) if path.exists() else None))
    return rows
