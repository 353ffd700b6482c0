"""Figures of Omniglot data, tasks and results. Every helper returns a matplotlib Figure.

Used in ``notebooks/04_omniglot_maml.ipynb``. Images are drawn as ink on paper: a pixel value
of 1 (or 255 for uint8) is a black stroke, 0 is white background.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import torch

from mamlkit.tasks import TaskBatch

__all__ = ["plot_adaptation_curve", "plot_alphabets", "plot_predictions", "plot_task"]

CORRECT_COLOR = "tab:green"
WRONG_COLOR = "tab:red"


def _as_image(x: torch.Tensor):
    """One image as a ``(H, W)`` float array in [0, 1] for ``imshow``.

    Args:
        x: ``(H, W)`` or ``(1, H, W)``; uint8 (0..255) or float (0..1).
    """
    x = x.detach().cpu()
    if x.ndim == 3 and x.shape[0] == 1:
        x = x[0]
    if x.ndim != 2:
        raise ValueError(f"expected an image of shape (H, W) or (1, H, W), got {tuple(x.shape)}")
    if x.dtype == torch.uint8:
        x = x.float() / 255
    return x.float().numpy()


def _show(ax, image: torch.Tensor) -> None:
    ax.imshow(_as_image(image), cmap="gray_r", vmin=0.0, vmax=1.0, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])


def _pretty(name: str, max_chars: int = 18) -> str:
    """``"Japanese_(hiragana)"`` -> ``"Japanese (hiragana)"``, shortened to fit a small label."""
    text = name.replace("_", " ")
    return text if len(text) <= max_chars else text[: max_chars - 1] + "…"


def _character_label(name: str) -> str:
    """``"Mkhedruli_(Georgian)/character12"`` -> ``"Mkhedruli (Geor… #12"``; other names shortened."""
    alphabet, _, character = name.partition("/character")
    if character.isdigit():
        return f"{_pretty(alphabet, 16)} #{int(character)}"
    return _pretty(name, 22)


def plot_alphabets(
    images: torch.Tensor,
    characters: Sequence[str],
    num_alphabets: int = 20,
    ncols: int = 10,
    drawing: int = 0,
):
    """One drawing of the first character of each of the first ``num_alphabets`` alphabets.

    Args:
        images: ``(C, D, H, W)`` all characters' drawings, e.g. ``OmniglotData.images``.
        characters: ``C`` names ``"Alphabet/characterNN"``; the alphabet is the part before
            the slash. Alphabets are taken in sorted order.
        num_alphabets: how many alphabets to show (at most the number there are).
        ncols: panels per row.
        drawing: which of the ``D`` drawings to show.

    Returns:
        A Figure with one labelled panel per alphabet.
    """
    if len(characters) != images.shape[0]:
        raise ValueError(f"images has {images.shape[0]} characters but {len(characters)} names were given")
    first_character: dict[str, int] = {}
    for index, name in enumerate(characters):
        first_character.setdefault(name.split("/")[0], index)
    alphabets = sorted(first_character)[:num_alphabets]
    if not alphabets:
        raise ValueError("no characters to show")
    ncols = min(ncols, len(alphabets))
    nrows = -(-len(alphabets) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(1.3 * ncols, 1.45 * nrows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, alphabet in zip(axes.flat, alphabets):
        ax.axis("on")
        _show(ax, images[first_character[alphabet], drawing])
        ax.set_title(_pretty(alphabet, 15), fontsize=6.5)
    fig.suptitle(f"One character from each of {len(alphabets)} alphabets", fontsize=10)
    fig.tight_layout()
    return fig


def plot_task(
    tasks: TaskBatch,
    rotations: torch.Tensor | None = None,
    task_index: int = 0,
    class_names: Sequence[str] | None = None,
):
    """The support and query images of one task, one row per class.

    Args:
        tasks: a batch of classification tasks; ``x_support`` ``(T, N*K, 1, H, W)``,
            ``y_support`` ``(T, N*K)``, ``x_query`` ``(T, N*Q, 1, H, W)``, ``y_query``
            ``(T, N*Q)`` (a single task without the ``T`` axis works too).
        rotations: ``(T, N)`` or ``(N,)`` rotation index ``r`` of each class (the class was
            rotated by ``r * 90`` degrees), e.g. ``TaskInfo.rotations``; shown in the row
            label when given.
        task_index: which task of the batch to show.
        class_names: ``N`` names shown in the row labels, e.g. the characters' names
            ``"Alphabet/characterNN"`` (shown shortened, as ``"Alphabet #NN"``).

    Returns:
        A Figure with ``N`` rows: the class's ``K`` support images, then its ``Q`` query images.
    """
    task = tasks.task(task_index) if tasks.y_support.ndim == 2 else tasks
    if rotations is not None and rotations.ndim == 2:
        rotations = rotations[task_index]
    n_way = int(task.y_support.max()) + 1
    support = [task.x_support[task.y_support == n] for n in range(n_way)]
    query = [task.x_query[task.y_query == n] for n in range(n_way)]
    k_shot, n_query = max(len(s) for s in support), max(len(q) for q in query)
    ncols = k_shot + n_query

    fig, axes = plt.subplots(n_way, ncols, figsize=(1.1 * ncols + 1.6, 1.1 * n_way + 0.5), squeeze=False)
    for n in range(n_way):
        for j in range(ncols):
            ax = axes[n, j]
            images = support[n] if j < k_shot else query[n]
            i = j if j < k_shot else j - k_shot
            if i < len(images):
                _show(ax, images[i])
                for spine in ax.spines.values():
                    spine.set_edgecolor("tab:blue" if j < k_shot else "tab:orange")
                    spine.set_linewidth(1.5)
            else:
                ax.axis("off")
            if n == 0:
                ax.set_title("support" if j < k_shot else "query", fontsize=8,
                             color="tab:blue" if j < k_shot else "tab:orange")
        label = f"label {n}"
        if class_names is not None:
            label += f"\n{_character_label(class_names[n])}"
        if rotations is not None:
            label += f"\nrotated {90 * int(rotations[n])}°"
        axes[n, 0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize=7.5)
    fig.suptitle(f"One {n_way}-way {k_shot}-shot task ({n_query} query per class)", fontsize=10)
    fig.tight_layout()
    return fig


def plot_predictions(
    images: torch.Tensor,
    predicted: torch.Tensor,
    true: torch.Tensor,
    ncols: int = 5,
    row_labels: Sequence[str] | None = None,
):
    """Query images titled with their predicted and true label: green if right, red if wrong.

    Args:
        images: ``(S, 1, H, W)`` or ``(S, H, W)``.
        predicted: ``(S,)`` predicted labels (e.g. ``logits.argmax(-1)``).
        true: ``(S,)`` true labels.
        ncols: images per row.
        row_labels: one label per row, e.g. ``"task 3"``.

    Returns:
        A Figure with one panel per image.
    """
    predicted, true = predicted.reshape(-1), true.reshape(-1)
    if not len(images) == len(predicted) == len(true):
        raise ValueError(
            f"got {len(images)} images, {len(predicted)} predictions and {len(true)} labels; "
            "they must be equally many"
        )
    ncols = min(ncols, len(images))
    nrows = -(-len(images) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(1.2 * ncols + 0.8, 1.35 * nrows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for i, ax in enumerate(axes.flat[: len(images)]):
        ax.axis("on")
        _show(ax, images[i])
        right = int(predicted[i]) == int(true[i])
        color = CORRECT_COLOR if right else WRONG_COLOR
        ax.set_title(f"pred {int(predicted[i])} · true {int(true[i])}", fontsize=7, color=color)
        for spine in ax.spines.values():
            spine.set_edgecolor(color)
            spine.set_linewidth(2)
    if row_labels is not None:
        for row, label in zip(range(nrows), row_labels):
            axes[row, 0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize=8)
    num_right = int((predicted == true).sum())
    fig.suptitle(f"{num_right} of {len(images)} query images classified correctly", fontsize=10)
    fig.tight_layout()
    return fig


def plot_adaptation_curve(
    per_step_mean: Sequence[float],
    per_step_ci95: Sequence[float],
    chance: float | None = None,
    train_inner_steps: int | None = None,
    eval_inner_steps: int | None = None,
    title: str = "Accuracy on new tasks against inner steps",
):
    """Query accuracy after 0, 1, ..., S inner steps, with 95% confidence intervals.

    Args:
        per_step_mean: ``S + 1`` accuracies in [0, 1], after 0..S steps (e.g. the
            ``per_step_mean`` of :func:`mamlkit.evaluate.evaluate`).
        per_step_ci95: ``S + 1`` half-widths of the 95% CI, in [0, 1].
        chance: accuracy of guessing (``1 / n_way``), drawn as a dashed line.
        train_inner_steps: inner steps used in meta-training, marked with a vertical line.
        eval_inner_steps: inner steps of the reported test accuracy, marked with a vertical line.
        title: the axes title.

    Returns:
        A Figure with one curve and error bars, accuracy in percent.
    """
    if len(per_step_mean) != len(per_step_ci95):
        raise ValueError(
            f"per_step_mean has {len(per_step_mean)} values but per_step_ci95 has "
            f"{len(per_step_ci95)}; give one of each per number of steps"
        )
    steps = list(range(len(per_step_mean)))
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    ax.errorbar(steps, [100 * m for m in per_step_mean], yerr=[100 * c for c in per_step_ci95],
                color="C0", marker="o", ms=4, capsize=3, label="query accuracy ± 95% CI")
    if chance is not None:
        ax.axhline(100 * chance, color="0.5", ls="--", lw=1, label=f"chance ({100 * chance:.0f}%)")
    if train_inner_steps is not None:
        ax.axvline(train_inner_steps, color="C2", ls=":", lw=1.2,
                   label=f"steps in meta-training ({train_inner_steps})")
    if eval_inner_steps is not None:
        ax.axvline(eval_inner_steps, color="C3", ls=":", lw=1.2,
                   label=f"steps of the reported test accuracy ({eval_inner_steps})")
    ax.set_xticks(steps)
    ax.set_xlabel("inner steps on the support set")
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title(title)
    fig.tight_layout()
    return fig


def plot_paper_table(rows) -> plt.Figure:
    """Test accuracy against inner steps for each shipped checkpoint of the paper's table.

    Args:
        rows: ``(setting, manifest)`` pairs from :func:`mamlkit.lessons.paper_table.shipped_results`;
            each manifest's ``test_accuracy_per_step`` (after 0..S inner steps on 600 test
            tasks) is drawn, with the paper's accuracy as a marker at the step it reports; the
            legend names each checkpoint's steps and whether its command learned the inner rates.

    Returns:
        A Figure with one curve per shipped setting, accuracy in percent.
    """
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    for index, (setting, manifest) in enumerate(rows):
        if manifest is None:
            continue
        color = f"C{index}"
        curve = [100 * a for a in manifest["test_accuracy_per_step"]]
        recipe = "learned rates" if "--learn-inner-lrs" in manifest.get("command", "") else "fixed α"
        ax.plot(range(len(curve)), curve, marker="o", ms=4, color=color,
                label=f"{setting.name}: {manifest['iterations']:,} steps, {recipe}")
        ax.errorbar([manifest["eval_inner_steps"]], [100 * setting.paper_accuracy],
                    yerr=[100 * setting.paper_ci95], color=color, marker="*", ms=10, ls="none",
                    capsize=3)
    ax.plot([], [], "k*", ms=8, ls="none", label="the paper (Finn et al. 2017, Table 1)")
    ax.set_xlabel("inner steps on the support set")
    ax.set_ylabel("test accuracy (%)")
    ax.set_ylim(0, 101)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title("Shipped checkpoints against inner steps (600 test tasks each)")
    fig.tight_layout()
    return fig
