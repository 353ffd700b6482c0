"""Per-task losses and accuracy.

Every function reduces over the *examples* axis (the second-to-last axis of the model output)
and keeps any leading axes, so the same function serves one task, ``(S, C)``, and a batch of
tasks, ``(T, S, C)``.
"""

from __future__ import annotations

import torch


def check_labels(logits: torch.Tensor, labels: torch.Tensor) -> None:
    """Raise a ValueError unless ``labels`` index the classes of ``logits``.

    Args:
        logits: ``(..., S, C)`` unnormalised class scores.
        labels: ``(..., S)`` integer class labels, each in ``0..C-1``.
    """
    if labels.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8):
        raise ValueError(f"labels must be an integer tensor, got dtype {labels.dtype}")
    if labels.shape != logits.shape[:-1]:
        raise ValueError(
            f"labels have shape {tuple(labels.shape)} but the model gave outputs of shape "
            f"{tuple(logits.shape)}; expected labels of shape {tuple(logits.shape[:-1])}"
        )
    num_classes = logits.shape[-1]
    low, high = int(labels.min()), int(labels.max())
    if low < 0 or high >= num_classes:
        raise ValueError(
            f"labels must lie in 0..{num_classes - 1} (the model has {num_classes} outputs), "
            f"got labels from {low} to {high}"
        )


def check_loss_inputs(outputs: torch.Tensor, targets: torch.Tensor, what: str = "loss_fn") -> None:
    """Raise a ValueError when targets would be broadcast against the outputs by the loss.

    PyTorch's regression losses (``nn.MSELoss()``, ``nn.L1Loss()``, ``nn.BCEWithLogitsLoss()``, ...)
    broadcast mismatched shapes with only a warning: targets ``(S,)`` against outputs ``(S, 1)``
    become an ``(S, S)`` table of wrong differences, and the loss is a wrong number. So:

    - float targets (regression, soft labels) must have exactly the outputs' shape;
    - integer targets are class labels, ``(S,)`` against ``(S, C)`` logits (``(S, H, W)``
      against ``(S, C, H, W)``): refused only where they would broadcast, with as many axes
      as the outputs but another shape, or ``(S,)`` against a single output ``(S, 1)`` (a
      one-class classifier, so in fact a regression).

    Args:
        outputs: one task's model outputs, ``(S, *output_shape)``.
        targets: that task's targets.
        what: the function's name in the message (``loss_fn`` or ``metric``).

    Raises:
        ValueError: the shapes above do not hold.
    """
    if not (isinstance(targets, torch.Tensor) and isinstance(outputs, torch.Tensor)):
        return
    if targets.is_floating_point():
        wrong = targets.shape != outputs.shape
    elif targets.dim() == outputs.dim():
        wrong = targets.shape != outputs.shape
    else:
        wrong = outputs.dim() >= 1 and outputs.shape[-1] == 1 and targets.shape == outputs.shape[:-1]
    if wrong:
        hint = ("y.unsqueeze(-1)" if tuple(targets.shape) + (1,) == tuple(outputs.shape)
                else "reshaped to the outputs' shape")
        kind = "float" if targets.is_floating_point() else f"integer ({targets.dtype})"
        raise ValueError(
            f"{what} would compare targets of shape {tuple(targets.shape)} with the model's outputs of shape "
            f"{tuple(outputs.shape)} (one task): losses such as nn.MSELoss() broadcast them and give a wrong "
            f"number; give the {kind} targets the outputs' shape, e.g. {hint}")


def cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    r"""The per-task classification loss :math:`L(\phi, D) = -\frac{1}{|D|}\sum_j \log p_\phi(y^j \mid x^j)`.

    :math:`p_\phi` is the softmax of the logits, so ``log p`` is ``log_softmax``.

    Args:
        logits: ``(..., S, C)`` class scores for ``S`` examples.
        labels: ``(..., S)`` int64 labels in ``0..C-1``.

    Returns:
        ``(...)`` mean negative log-likelihood per task.
    """
    check_labels(logits, labels)
    log_probs = torch.log_softmax(logits, dim=-1)
    log_prob_of_label = log_probs.gather(-1, labels.long().unsqueeze(-1)).squeeze(-1)
    return -log_prob_of_label.mean(dim=-1)


def mse(predictions: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean squared error per task.

    Args:
        predictions: ``(..., S, D)`` regression outputs.
        targets: ``(..., S, D)`` targets.

    Returns:
        ``(...)`` mean of the squared error over examples and output dimensions.
    """
    if predictions.shape != targets.shape:
        raise ValueError(
            f"predictions have shape {tuple(predictions.shape)} but targets have shape "
            f"{tuple(targets.shape)}; they must match"
        )
    return (predictions - targets).pow(2).mean(dim=(-2, -1))


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Fraction of examples whose highest-scoring class is the label.

    Args:
        logits: ``(..., S, C)``; labels: ``(..., S)``.

    Returns:
        ``(...)`` accuracy per task, in ``[0, 1]``.
    """
    return (logits.argmax(dim=-1) == labels).float().mean(dim=-1)
