import math

import pytest
import torch

from mamlkit.losses import accuracy, cross_entropy, mse


def test_cross_entropy_is_the_mean_negative_log_likelihood():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(7, 4, generator=g, dtype=torch.float64)
    labels = torch.randint(0, 4, (7,), generator=g)
    explicit = 0.0
    for j in range(7):
        p = math.exp(logits[j, labels[j]]) / sum(math.exp(v) for v in logits[j].tolist())
        explicit -= math.log(p) / 7
    assert cross_entropy(logits, labels).item() == pytest.approx(explicit, rel=1e-12)
    assert torch.allclose(cross_entropy(logits, labels), torch.nn.functional.cross_entropy(logits, labels))


def test_losses_keep_the_task_axis():
    logits = torch.randn(3, 5, 4)
    labels = torch.randint(0, 4, (3, 5))
    per_task = cross_entropy(logits, labels)
    assert per_task.shape == (3,)
    assert torch.allclose(per_task[1], cross_entropy(logits[1], labels[1]))
    assert mse(torch.zeros(3, 5, 1), torch.ones(3, 5, 1)).tolist() == [1.0, 1.0, 1.0]
    assert accuracy(torch.tensor([[[0.0, 1.0], [2.0, 1.0]]]), torch.tensor([[1, 1]])).tolist() == [0.5]


@pytest.mark.parametrize("bad", [[0, 5], [-1, 0]])
def test_labels_out_of_range_are_rejected(bad):
    with pytest.raises(ValueError, match=r"labels must lie in 0\.\.4"):
        cross_entropy(torch.zeros(2, 5), torch.tensor(bad))


def test_label_shape_and_dtype_are_checked():
    with pytest.raises(ValueError, match="integer"):
        cross_entropy(torch.zeros(2, 5), torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match="shape"):
        cross_entropy(torch.zeros(2, 5), torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match="must match"):
        mse(torch.zeros(3, 1), torch.zeros(4, 1))
