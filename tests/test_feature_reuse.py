"""CKA against its definition and invariances; per-layer change and outputs."""

import pytest
import torch
from helpers import image_tasks, tiny_conv

from mamlkit.functional import get_params
from mamlkit.lessons.feature_reuse import (
    layer_names,
    layer_outputs,
    linear_cka,
    relative_change,
    representation_similarity,
)


def test_cka_of_a_representation_with_itself_is_one_and_invariant_to_rotation_and_scale():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(20, 6, generator=g, dtype=torch.float64)
    q, _ = torch.linalg.qr(torch.randn(6, 6, generator=g, dtype=torch.float64))
    assert linear_cka(x, x).item() == pytest.approx(1.0)
    assert linear_cka(x, 3.0 * x @ q + 1.0).item() == pytest.approx(1.0)
    y = torch.randn(20, 4, generator=g, dtype=torch.float64)
    assert 0 <= linear_cka(x, y).item() < 0.9


def test_cka_matches_the_kernel_formula():
    """HSIC form: CKA = tr(K H L H) / sqrt(tr(K H K H) tr(L H L H)) with linear kernels."""
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(10, 5, generator=g, dtype=torch.float64), torch.randn(10, 3, generator=g, dtype=torch.float64)
    k, l_ = x @ x.T, y @ y.T
    h = torch.eye(10, dtype=torch.float64) - 1.0 / 10
    hsic = lambda a, b: torch.trace(a @ h @ b @ h)  # noqa: E731
    expected = hsic(k, l_) / torch.sqrt(hsic(k, k) * hsic(l_, l_))
    assert linear_cka(x, y).item() == pytest.approx(expected.item(), rel=1e-10)


def test_cka_refuses_mismatched_examples():
    with pytest.raises(ValueError, match="same n >= 2 examples"):
        linear_cka(torch.zeros(3, 2), torch.zeros(4, 2))


def test_layer_change_and_similarity_of_an_unchanged_network():
    model, tasks = tiny_conv(), image_tasks()
    params = get_params(model)
    assert layer_names(params) == ["blocks.0", "blocks.1", "blocks.2", "blocks.3", "head"]
    moved = {n: p + (0.1 * p if n.startswith("head.") else 0) for n, p in params.items()}
    change = relative_change(params, moved)
    assert change["head"] == pytest.approx(0.1) and change["blocks.0"] == 0
    similarity = representation_similarity(model, params, moved, tasks.x_query[0])
    assert all(similarity[f"blocks.{i}"] == pytest.approx(1.0) for i in range(4))
    outputs = layer_outputs(model, params, tasks.x_query[0])
    assert outputs["blocks.3"].shape[:2] == (tasks.x_query.shape[1], 3) and outputs["head"].shape == (6, 3)
