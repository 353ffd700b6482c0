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


def as_task_batch(tasks, what: str = "tasks") -> TaskBatch:
    """``tasks`` as a :class:`TaskBatch`; a plain 4-tuple ``(x_support, y_support, x_query, y_query)`` is accepted.

    Raises:
        TypeError: ``tasks`` is not four tensors in that order.
        ValueError: a part has no task axis, or the parts disagree on the number of tasks,
            the number of examples, or the input shape.
    """
    if not isinstance(tasks, TaskBatch):
        if not isinstance(tasks, (tuple, list)) or len(tasks) != 4:
            raise TypeError(f"{what} must be a TaskBatch(x_support, y_support, x_query, y_query), got "
                            f"{type(tasks).__name__}" + (f" of length {len(tasks)}" if isinstance(tasks, (tuple, list)) else ""))
        tasks = TaskBatch(*tasks)
    for name, part in zip(TaskBatch._fields, tasks):
        if not isinstance(part, torch.Tensor):
            raise TypeError(f"{what}.{name} must be a torch.Tensor, got {type(part).__name__}")
        if part.dim() < 2:
            raise ValueError(
                f"{what}.{name} has shape {tuple(part.shape)}, but a TaskBatch needs a task axis and an "
                f"examples axis, (T, S, ...); for a single task add the task axis with "
                f"TaskBatch(*(t.unsqueeze(0) for t in task))"
            )
    sizes = {name: t.shape[0] for name, t in zip(TaskBatch._fields, tasks)}
    if len(set(sizes.values())) != 1:
        raise ValueError(f"every part of a TaskBatch needs the same number of tasks, got {sizes}")
    for part in ("support", "query"):
        x, y = getattr(tasks, f"x_{part}"), getattr(tasks, f"y_{part}")
        if x.shape[1] != y.shape[1]:
            raise ValueError(f"x_{part} has {x.shape[1]} examples but y_{part} has {y.shape[1]}; "
                             f"every {part} input needs exactly one target")
        if x.shape[1] == 0:
            raise ValueError(f"the {part} set is empty; it needs at least one example")
    if tasks.x_support.shape[2:] != tasks.x_query.shape[2:]:
        raise ValueError(f"support inputs have shape {tuple(tasks.x_support.shape[2:])} per example but query "
                         f"inputs {tuple(tasks.x_query.shape[2:])}; both sets must look alike")
    if tasks.num_tasks == 0:
        raise ValueError(f"{what} holds no tasks")
    return tasks
