"""Figures for the notebooks and the training command. Every helper returns a Figure."""

from __future__ import annotations

from typing import Sequence

import matplotlib.pyplot as plt


def plot_learning_curves(records: Sequence[dict], title: str = "Meta-training"):
    """Query accuracy during training and validation accuracy against outer steps.

    Args:
        records: the lines of a run's ``metrics.jsonl`` (``kind`` ``"train"`` or ``"val"``).
    """
    train = [r for r in records if r.get("kind") == "train"]
    val = [r for r in records if r.get("kind") == "val"]
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    if train:
        steps = [r["iteration"] for r in train]
        if "query_before_accuracy" in train[0]:
            ax.plot(steps, [100 * r["query_before_accuracy"] for r in train], color="0.7",
                    lw=1, label="train query, before adaptation")
        ax.plot(steps, [100 * r["query_accuracy"] for r in train], color="C0", lw=1,
                alpha=0.8, label="train query, after adaptation")
    if val:
        steps = [r["iteration"] for r in val]
        acc = [100 * r["val_accuracy"] for r in val]
        ci = [100 * r["val_ci95"] for r in val]
        ax.errorbar(steps, acc, yerr=ci, color="C3", marker="o", ms=3, capsize=2,
                    label="validation (new characters)")
    ax.set_xlabel("outer step")
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.legend(loc="center right", fontsize=8)
    ax.set_title(title)
    fig.tight_layout()
    return fig
