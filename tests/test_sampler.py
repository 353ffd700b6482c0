"""Tests of mamlkit.data.sampler: what goes into an N-way K-shot Omniglot task."""

import pytest
import torch

from mamlkit.data.omniglot import BACKGROUND_ALPHABETS, EVALUATION_ALPHABETS, OmniglotData
from mamlkit.data.sampler import OmniglotTaskSampler
from mamlkit.tasks import TaskBatch

NUM_CHARACTERS = 12


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    # Random pixels: no image equals another or any rotation of itself, so every comparison
    # below pins down exactly which image and which rotation was used.
    generator = torch.Generator().manual_seed(0)
    return torch.randint(
        0, 256, (NUM_CHARACTERS, 20, 28, 28), dtype=torch.uint8, generator=generator
    )


def rotated(images: torch.Tensor, character: int, drawing: int, r: int) -> torch.Tensor:
    return torch.rot90(images[character, drawing], r, dims=(-2, -1)).float() / 255


@pytest.mark.ex4_1
def test_shapes_dtypes_and_range(images):
    sampler = OmniglotTaskSampler(images, None, n_way=3, k_shot=2, n_query=4)
    batch = sampler.sample(5, torch.Generator().manual_seed(1))
    assert isinstance(batch, TaskBatch)
    assert batch.x_support.shape == (5, 6, 1, 28, 28)
    assert batch.y_support.shape == (5, 6)
    assert batch.x_query.shape == (5, 12, 1, 28, 28)
    assert batch.y_query.shape == (5, 12)
    assert batch.x_support.dtype == batch.x_query.dtype == torch.float32
    assert batch.y_support.dtype == batch.y_query.dtype == torch.int64
    for x in (batch.x_support, batch.x_query):
        assert 0.0 <= x.min() and x.max() <= 1.0


@pytest.mark.ex4_1
def test_labels_are_balanced_and_grouped(images):
    sampler = OmniglotTaskSampler(images, None, n_way=4, k_shot=3, n_query=2)
    batch = sampler.sample(6, torch.Generator().manual_seed(2))
    for t in range(6):
        assert batch.y_support[t].tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]
        assert batch.y_query[t].tolist() == [0, 0, 1, 1, 2, 2, 3, 3]


@pytest.mark.ex4_1
def test_every_image_is_its_class_drawing_rotated_by_the_class_rotation(images):
    n_way, k_shot, n_query = 5, 2, 3
    sampler = OmniglotTaskSampler(images, None, n_way, k_shot, n_query)
    batch, info = sampler.sample_with_info(8, torch.Generator().manual_seed(3))
    for t in range(8):
        for n in range(n_way):
            c, r = int(info.characters[t, n]), int(info.rotations[t, n])
            drawings = info.drawings[t, n].tolist()
            for j, d in enumerate(drawings[:k_shot]):
                assert torch.equal(batch.x_support[t, n * k_shot + j, 0], rotated(images, c, d, r))
            for j, d in enumerate(drawings[k_shot:]):
                assert torch.equal(batch.x_query[t, n * n_query + j, 0], rotated(images, c, d, r))


@pytest.mark.ex4_1
def test_classes_and_drawings_are_distinct(images):
    sampler = OmniglotTaskSampler(images, None, n_way=10, k_shot=5, n_query=15)
    _, info = sampler.sample_with_info(16, torch.Generator().manual_seed(4))
    for t in range(16):
        assert len(set(info.characters[t].tolist())) == 10, "a character appears twice in one task"
        for n in range(10):
            assert sorted(info.drawings[t, n].tolist()) == list(range(20))


@pytest.mark.ex4_1
def test_each_class_gets_its_own_rotation(images):
    # The bug to catch: one rotation shared by a whole task (or by the whole batch).
    sampler = OmniglotTaskSampler(images, None, n_way=5, k_shot=1, n_query=1)
    _, info = sampler.sample_with_info(32, torch.Generator().manual_seed(5))
    assert set(info.rotations.flatten().tolist()) == {0, 1, 2, 3}
    tasks_with_mixed_rotations = sum(len(set(row.tolist())) > 1 for row in info.rotations)
    # With 5 independent uniform draws, all equal has probability 4 / 4**5 per task.
    assert tasks_with_mixed_rotations >= 30


@pytest.mark.ex4_1
def test_no_rotation_when_disabled(images):
    sampler = OmniglotTaskSampler(images, None, n_way=3, k_shot=1, n_query=1, rotate=False)
    batch, info = sampler.sample_with_info(4, torch.Generator().manual_seed(6))
    assert torch.all(info.rotations == 0)
    c, d = int(info.characters[0, 0]), int(info.drawings[0, 0, 0])
    assert torch.equal(batch.x_support[0, 0, 0], images[c, d].float() / 255)


@pytest.mark.ex4_1
def test_labels_go_to_characters_in_random_order(images):
    # With exactly n_way characters every task uses all of them, so only the labelling varies.
    sampler = OmniglotTaskSampler(images, [2, 5, 7], n_way=3, k_shot=1, n_query=1)
    _, info = sampler.sample_with_info(20, torch.Generator().manual_seed(7))
    assert all(sorted(row.tolist()) == [2, 5, 7] for row in info.characters)
    assert len({tuple(row.tolist()) for row in info.characters}) > 1


@pytest.mark.ex4_1
def test_only_characters_of_the_split_are_used(images):
    split = [0, 3, 4, 8, 11]
    sampler = OmniglotTaskSampler(images, split, n_way=2, k_shot=1, n_query=1)
    _, info = sampler.sample_with_info(30, torch.Generator().manual_seed(8))
    assert set(info.characters.flatten().tolist()) <= set(split)


@pytest.mark.ex4_1
def test_same_seed_same_batch_and_no_global_randomness(images):
    sampler = OmniglotTaskSampler(images, None, n_way=5, k_shot=1, n_query=2)
    torch.manual_seed(100)
    first = sampler.sample(4, torch.Generator().manual_seed(9))
    torch.manual_seed(200)  # the global generator must not matter
    second = sampler.sample(4, torch.Generator().manual_seed(9))
    other = sampler.sample(4, torch.Generator().manual_seed(10))
    assert all(torch.equal(a, b) for a, b in zip(first, second, strict=True))
    assert not torch.equal(first.x_support, other.x_support)


def fake_omniglot() -> OmniglotData:
    """Published character names with blank images (expanded, so they take no memory)."""
    names = [
        f"{alphabet}/character{i:02d}"
        for alphabets in (BACKGROUND_ALPHABETS, EVALUATION_ALPHABETS)
        for alphabet, count in alphabets.items()
        for i in range(1, count + 1)
    ]
    names.sort()
    images = torch.zeros(1, 1, 28, 28, dtype=torch.uint8).expand(len(names), 20, 28, 28)
    background = [name.split("/")[0] in BACKGROUND_ALPHABETS for name in names]
    return OmniglotData(images, names, background)


def test_for_split_uses_the_split_and_names_it_in_errors():
    data = fake_omniglot()
    sampler = OmniglotTaskSampler.for_split(data, "val", n_way=5, k_shot=1, n_query=1)
    assert len(sampler.character_indices) == 100
    with pytest.raises(ValueError, match=r"n_way=2000, but the 'train' split has 1100 characters"):
        OmniglotTaskSampler.for_split(data, "train", n_way=2000, k_shot=1, n_query=1)
    with pytest.raises(
        ValueError, match=r"unknown split 'validation'; allowed: 'train', 'val', 'test'"
    ):
        OmniglotTaskSampler.for_split(data, "validation", n_way=5, k_shot=1, n_query=1)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(n_way=13, k_shot=1, n_query=1), r"n_way=13, but character_indices has 12 characters"),
        (
            dict(n_way=5, k_shot=5, n_query=16),
            r"k_shot \+ n_query = 21, but each Omniglot character has only 20 drawings",
        ),
        (dict(n_way=0, k_shot=1, n_query=1), r"n_way must be a positive integer, but got 0"),
        (dict(n_way=5, k_shot=0, n_query=1), r"k_shot must be a positive integer, but got 0"),
        (dict(n_way=5, k_shot=1, n_query=-1), r"n_query must be a positive integer, but got -1"),
    ],
)
def test_bad_task_sizes_are_explained(images, kwargs, message):
    with pytest.raises(ValueError, match=message):
        OmniglotTaskSampler(images, None, **kwargs)


def test_bad_meta_batch_size_is_explained(images):
    sampler = OmniglotTaskSampler(images, None, n_way=5, k_shot=1, n_query=1)
    with pytest.raises(ValueError, match=r"meta_batch_size must be a positive integer, but got 0"):
        sampler.sample(0, torch.Generator().manual_seed(0))


@pytest.mark.parametrize(
    "indices, message",
    [
        (
            [0, 12],
            r"holds indices from 0 to 12, but images has only 12 characters \(allowed: 0..11\)",
        ),
        ([1, 1, 2], r"lists some characters more than once"),
        ([], r"must be a non-empty list"),
    ],
)
def test_bad_character_indices_are_explained(images, indices, message):
    with pytest.raises(ValueError, match=message):
        OmniglotTaskSampler(images, indices, n_way=1, k_shot=1, n_query=1)


def test_images_must_be_uint8_characters_by_drawings(images):
    with pytest.raises(
        ValueError, match=r"images must be a uint8 tensor of shape \(characters, drawings, H, W\)"
    ):
        OmniglotTaskSampler(images.float(), None, n_way=5, k_shot=1, n_query=1)
