"""N-way K-shot Omniglot tasks, sampled the way the MAML code does, in a few tensor ops.

One task: draw ``n_way`` distinct characters, give them the labels ``0..n_way-1`` in random
order, draw ``k_shot + n_query`` distinct drawings of each, and rotate all images of a class
by its own random multiple of 90 degrees. The first ``k_shot`` drawings of a class form the
support set, the other ``n_query`` the query set.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from mamlkit.data.omniglot import SPLIT_NAMES, OmniglotData, split_characters
from mamlkit.tasks import TaskBatch

__all__ = ["OmniglotTaskSampler", "TaskInfo"]


class TaskInfo(NamedTuple):
    """Which images went into a batch of tasks; ``T`` tasks, ``N = n_way``.

    Attributes:
        characters: ``(T, N)`` int64 index into ``images`` of the character given label ``n``.
        drawings: ``(T, N, k_shot + n_query)`` int64 drawing indices (0..19); the first
            ``k_shot`` went to the support set.
        rotations: ``(T, N)`` int64 ``r`` in 0..3: class ``n`` was rotated by ``r * 90``
            degrees (``torch.rot90(image, r, dims=(-2, -1))``).
    """

    characters: torch.Tensor
    drawings: torch.Tensor
    rotations: torch.Tensor


class OmniglotTaskSampler:
    """Samples batches of N-way K-shot classification tasks from Omniglot characters.

    Args:
        images: ``(C, D, H, W)`` uint8, ``D`` drawings per character (20 for Omniglot), e.g.
            ``OmniglotData.images``; 255 maps to 1.0.
        character_indices: which characters tasks may use (e.g. one entry of
            :func:`~mamlkit.data.omniglot.split_characters`); None means all ``C``.
        n_way: classes per task.
        k_shot: support examples per class.
        n_query: query examples per class.
        rotate: give each class a random rotation by a multiple of 90 degrees, as the MAML
            code does at both training and test time.
        split_name: name of the split, only used in error messages.

    Example::

        data = load_omniglot()
        train = split_characters(data.characters, "maml")["train"]
        sampler = OmniglotTaskSampler(data.images, train, n_way=5, k_shot=1, n_query=1)
        batch = sampler.sample(32, torch.Generator().manual_seed(0))
    """

    def __init__(
        self,
        images: torch.Tensor,
        character_indices: list[int] | None,
        n_way: int,
        k_shot: int,
        n_query: int,
        *,
        rotate: bool = True,
        split_name: str | None = None,
    ) -> None:
        if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[-1] != images.shape[-2]:
            raise ValueError(
                "images must be a uint8 tensor of shape (characters, drawings, H, W) with "
                f"H == W, but got dtype {images.dtype} and shape {tuple(images.shape)}"
            )
        num_characters, num_drawings = images.shape[:2]
        if character_indices is None:
            character_indices = list(range(num_characters))
        indices = torch.as_tensor(character_indices, dtype=torch.int64)
        where = f"the {split_name!r} split" if split_name else "character_indices"
        if indices.ndim != 1 or len(indices) == 0:
            raise ValueError(f"{where} must be a non-empty list of character indices")
        if indices.min() < 0 or indices.max() >= num_characters:
            raise ValueError(
                f"{where} holds indices from {int(indices.min())} to {int(indices.max())}, but "
                f"images has only {num_characters} characters (allowed: 0..{num_characters - 1})"
            )
        if len(indices.unique()) != len(indices):
            raise ValueError(f"{where} lists some characters more than once")
        for name, value in (("n_way", n_way), ("k_shot", k_shot), ("n_query", n_query)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, but got {value!r}")
        if n_way > len(indices):
            raise ValueError(f"n_way={n_way}, but {where} has {len(indices)} characters")
        if k_shot + n_query > num_drawings:
            raise ValueError(
                f"k_shot + n_query = {k_shot + n_query}, but each Omniglot character has only "
                f"{num_drawings} drawings"
            )

        self.images = images
        self.character_indices = indices
        self.n_way, self.k_shot, self.n_query = n_way, k_shot, n_query
        self.rotate = rotate

    @classmethod
    def for_split(
        cls,
        data: OmniglotData,
        split: str,
        n_way: int,
        k_shot: int,
        n_query: int,
        *,
        scheme: str = "maml",
        seed: int = 1,
        rotate: bool = True,
    ) -> OmniglotTaskSampler:
        """A sampler over one split (``"train"``, ``"val"`` or ``"test"``) of ``data``."""
        if split not in SPLIT_NAMES:
            raise ValueError(
                f"unknown split {split!r}; allowed: {', '.join(map(repr, SPLIT_NAMES))}"
            )
        indices = split_characters(data.characters, scheme, seed)[split]
        return cls(data.images, indices, n_way, k_shot, n_query, rotate=rotate, split_name=split)

    def sample(self, meta_batch_size: int, generator: torch.Generator) -> TaskBatch:
        """A batch of ``T = meta_batch_size`` tasks; ``N = n_way``, ``K = k_shot``, ``Q = n_query``.

        Returns:
            :class:`~mamlkit.tasks.TaskBatch` with ``x_support`` ``(T, N*K, 1, H, W)`` float32 in
            [0, 1], ``y_support`` ``(T, N*K)`` int64, ``x_query`` ``(T, N*Q, 1, H, W)``,
            ``y_query`` ``(T, N*Q)``. Examples are grouped by label:
            ``y_support[t] = [0]*K + [1]*K + ... + [N-1]*K``, and likewise for the query set.
        """
        return self.sample_with_info(meta_batch_size, generator)[0]

    def sample_with_info(
        self, meta_batch_size: int, generator: torch.Generator
    ) -> tuple[TaskBatch, TaskInfo]:
        """Like :meth:`sample`, and also which characters, drawings and rotations were drawn.

        All randomness comes from ``generator``: the same generator state gives the same batch.
        """
        if not isinstance(meta_batch_size, int) or meta_batch_size < 1:
            raise ValueError(
                f"meta_batch_size must be a positive integer, but got {meta_batch_size!r}"
            )
        T, N, K, Q = meta_batch_size, self.n_way, self.k_shot, self.n_query
        num_drawings = self.images.shape[1]

        ### BEGIN SOLUTION (Exercise 4.1)
        # The positions of the N largest of i.i.d. random keys, largest first, are the first N
        # entries of a uniformly random permutation: N distinct characters in random order, so
        # label n (position n) goes to a random character. topk does this without a full sort;
        # float64 keys make ties practically impossible.
        keys = torch.rand(T, len(self.character_indices), generator=generator, dtype=torch.float64)
        characters = self.character_indices[keys.topk(N, dim=1).indices]  # (T, N)
        keys = torch.rand(T, N, num_drawings, generator=generator, dtype=torch.float64)
        drawings = keys.topk(K + Q, dim=2).indices  # (T, N, K+Q), distinct within each class
        if self.rotate:
            rotations = torch.randint(0, 4, (T, N), generator=generator)
        else:
            rotations = torch.zeros(T, N, dtype=torch.int64)

        x = self.images[characters[:, :, None], drawings]  # (T, N, K+Q, H, W) uint8
        for r in (1, 2, 3):
            # One rot90 call per angle for all classes that drew it, instead of one per class.
            selected = rotations == r
            if selected.any():
                x[selected] = torch.rot90(x[selected], r, dims=(-2, -1))
        x = x.to(torch.float32).div_(255.0).unsqueeze(3)  # (T, N, K+Q, 1, H, W)

        size = x.shape[-2:]
        labels = torch.arange(N)
        batch = TaskBatch(
            x_support=x[:, :, :K].reshape(T, N * K, 1, *size),
            y_support=labels.repeat_interleave(K).expand(T, N * K).clone(),
            x_query=x[:, :, K:].reshape(T, N * Q, 1, *size),
            y_query=labels.repeat_interleave(Q).expand(T, N * Q).clone(),
        )
        return batch, TaskInfo(characters, drawings, rotations)
        ### END SOLUTION

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(characters={len(self.character_indices)}, n_way={self.n_way}, "
            f"k_shot={self.k_shot}, n_query={self.n_query}, rotate={self.rotate})"
        )
