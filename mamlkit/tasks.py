"""A batch of few-shot tasks: the one data structure every loop in the course consumes."""

from __future__ import annotations

from typing import NamedTuple

import torch


class TaskBatch(NamedTuple):
    """Support and query sets of ``T`` tasks, stacked along a leading task dimension.

    Attributes:
        x_support: ``(T, S, *input_shape)`` inputs the inner loop adapts on.
        y_support: ``(T, S)`` class labels (int64) or ``(T, S, 1)`` regression targets.
        x_query: ``(T, Q, *input_shape)`` inputs the adapted parameters are judged on.
        y_query: ``(T, Q)`` or ``(T, Q, 1)``, like ``y_support``.
    """

    x_support: torch.Tensor
    y_support: torch.Tensor
    x_query: torch.Tensor
    y_query: torch.Tensor

    @property
    def num_tasks(self) -> int:
        return self.x_support.shape[0]

    def task(self, i: int) -> "TaskBatch":
        """The ``i``-th task alone, without the task dimension."""
        return TaskBatch(self.x_support[i], self.y_support[i], self.x_query[i], self.y_query[i])

    def to(self, device: torch.device | str) -> "TaskBatch":
        return TaskBatch(*(t.to(device) for t in self))
