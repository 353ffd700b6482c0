"""The transfer baseline: rotated classes, pretraining, per-task heads (checked against one task alone)."""

import pytest
import torch

from mamlkit.functional import get_params
from mamlkit.lessons.transfer_baseline import (
    evaluate_transfer,
    features,
    fine_tune_heads,
    head_accuracy,
    pretrain_classifier,
    rotated_classes,
)
from mamlkit.models import Conv4
from mamlkit.tasks import TaskBatch


def test_rotated_classes_gives_each_rotation_of_each_character_its_own_label():
    images = torch.randint(0, 256, (5, 3, 6, 6), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    x, y = rotated_classes(images, [4, 1])
    assert x.shape == (2 * 4 * 3, 1, 6, 6) and y.shape == (24,) and y.max() == 7
    for label in range(8):
        i, r = divmod(label, 4)
        expected = torch.rot90(images[[4, 1][i]], r, dims=(-2, -1)).float() / 255
        torch.testing.assert_close(x[y == label, 0], expected)
    with pytest.raises(ValueError, match="empty"):
        rotated_classes(images, [])


def test_pretraining_lowers_the_loss():
    g = torch.Generator().manual_seed(0)
    prototypes = torch.rand(4, 1, 12, 12, generator=g)
    y = torch.arange(4).repeat(16)
    x = prototypes[y] + 0.1 * torch.rand(64, 1, 12, 12, generator=g)
    model, params, losses = pretrain_classifier(x, y, epochs=15, batch_size=16, lr=1e-2, channels=4)
    assert sum(losses[-4:]) < 0.5 * sum(losses[:4]), losses
    assert params.keys() == get_params(model).keys() and params["head.weight"].shape == (4, 4)
    with pytest.raises(ValueError, match="epochs"):
        pretrain_classifier(x, y, epochs=0)


def test_heads_trained_together_equal_heads_trained_one_task_at_a_time():
    g = torch.Generator().manual_seed(1)
    feats = torch.randn(3, 6, 5, generator=g, dtype=torch.float64)
    labels = torch.arange(3).repeat(2).expand(3, -1).clone()
    weight, bias = fine_tune_heads(feats, labels, 3, steps=20, lr=0.05)
    for t in range(3):
        w1, b1 = fine_tune_heads(feats[t:t + 1], labels[t:t + 1], 3, steps=20, lr=0.05)
        torch.testing.assert_close(weight[t:t + 1], w1, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(bias[t:t + 1], b1, rtol=1e-12, atol=1e-12)


def test_a_head_separates_separable_features_and_zero_steps_give_chance_ties():
    centres = torch.eye(4, dtype=torch.float64)[:3] * 5
    feats = centres.repeat(2, 1).unsqueeze(0)  # one task, 6 support points, 3 classes
    labels = torch.arange(3).repeat(2).unsqueeze(0)
    weight, bias = fine_tune_heads(feats, labels, 3, steps=50, lr=0.1)
    assert head_accuracy(feats, labels, weight, bias).item() == 1.0
    zero_w, zero_b = fine_tune_heads(feats, labels, 3, steps=0)
    assert torch.count_nonzero(zero_w) == 0 and torch.count_nonzero(zero_b) == 0
    with pytest.raises(ValueError, match="support_features"):
        fine_tune_heads(feats[0], labels, 3)


@pytest.mark.ex4_2
def test_features_normalise_each_task_as_one_batch_and_evaluation_runs_on_sampled_tasks():
    model = Conv4(2, channels=4, generator=torch.Generator().manual_seed(0))
    params = get_params(model)
    x = torch.rand(2, 3, 1, 28, 28, generator=torch.Generator().manual_seed(2))
    f = features(model, params, x)
    assert f.shape == (2, 3, 4)
    torch.testing.assert_close(f[1], model.blocks(x[1]).mean(dim=(-2, -1)).detach())

    def sample(n):
        g = torch.Generator().manual_seed(n)
        labels = torch.arange(2).repeat(2).expand(n, -1).clone()
        return TaskBatch(torch.rand(n, 4, 1, 28, 28, generator=g), labels, torch.rand(n, 4, 1, 28, 28, generator=g), labels)

    result = evaluate_transfer(model, params, sample, num_tasks=5, batch_size=2, steps=5)
    assert result["num_tasks"] == 5 and len(result["per_task"]) == 5 and 0 <= result["mean"] <= 1


@pytest.mark.ex3_2
def test_evaluate_transfer_draws_tasks_exactly_as_evaluate_does():
    from mamlkit.evaluate import evaluate
    from mamlkit.losses import cross_entropy

    model = Conv4(2, channels=4, generator=torch.Generator().manual_seed(0))
    params = get_params(model)
    calls = {"maml": [], "transfer": []}

    def recorder(name):
        def sample(n):
            calls[name].append(n)
            labels = torch.arange(2).repeat(1).expand(n, -1).clone()
            return TaskBatch(torch.rand(n, 2, 1, 28, 28), labels, torch.rand(n, 2, 1, 28, 28), labels)
        return sample

    evaluate(model, params, recorder("maml"), cross_entropy, 0.1, 1, num_tasks=120)
    evaluate_transfer(model, params, recorder("transfer"), num_tasks=120, steps=1)
    assert calls["maml"] == calls["transfer"] == [50, 50, 20]


def test_the_shipped_backbone_loads_with_weights_only_and_says_how_it_was_made():
    from pathlib import Path

    from mamlkit.lessons.transfer_baseline import load_backbone

    path = Path(__file__).resolve().parent.parent / "assets" / "omniglot_transfer_backbone.pt"
    assert path.stat().st_size < 2 * 2**20
    model, params, settings = load_backbone(path)
    # Made before the module moved to mamlkit.lessons; the old name still runs it.
    assert settings["command"].startswith(("python -m mamlkit.transfer_baseline",
                                           "python -m mamlkit.lessons.transfer_baseline"))
    assert all(name.startswith("blocks.") for name in params), "only the feature extractor is shipped"
    assert params.keys() == {n for n, _ in model.named_parameters() if n.startswith("blocks.")}


def test_population_statistics_are_those_of_the_images_and_make_features_independent_of_the_task_batch():
    import torch.nn.functional as F

    from mamlkit.lessons.transfer_baseline import batch_norm_statistics

    model = Conv4(2, channels=4, generator=torch.Generator().manual_seed(0))
    params = {n: p.detach() for n, p in get_params(model).items() if n.startswith("blocks.")}
    x = torch.rand(30, 1, 28, 28, generator=torch.Generator().manual_seed(3))
    statistics = batch_norm_statistics(params, x, batch_size=7)  # batches need not divide the images
    first = F.conv2d(x, params["blocks.0.conv.weight"], stride=2, padding=1)
    torch.testing.assert_close(statistics[0][0], first.mean(dim=(0, 2, 3)))
    torch.testing.assert_close(statistics[0][1], first.var(dim=(0, 2, 3), unbiased=False), rtol=1e-4, atol=1e-6)
    # All 30 images as one batch: normalising with their own statistics is normalising with these.
    torch.testing.assert_close(features(model, params, x[None], statistics), features(model, params, x[None]),
                               rtol=1e-4, atol=1e-5)
    # With fixed statistics an image's features do not depend on the other images of its task.
    tasks = x[:6].view(2, 3, 1, 28, 28)
    alone = features(model, params, tasks[:, :1], statistics)
    torch.testing.assert_close(features(model, params, tasks, statistics)[:, :1], alone)


def test_on_epoch_sees_every_epoch_and_a_longer_run_starts_as_the_shorter_one():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(32, 1, 12, 12, generator=g)
    y = torch.arange(4).repeat(8)
    seen = []
    _, short, _ = pretrain_classifier(x, y, epochs=2, batch_size=8, channels=4)
    _, _, _ = pretrain_classifier(x, y, epochs=3, batch_size=8, channels=4,
                                  on_epoch=lambda e, m, losses: seen.append(
                                      (e, len(losses), {n: p.detach().clone() for n, p in m.named_parameters()})))
    assert [(e, n) for e, n, _ in seen] == [(1, 4), (2, 8), (3, 12)]
    for name, tensor in short.items():
        torch.testing.assert_close(seen[1][2][name], tensor)


def test_features_and_heads_run_on_one_thread_with_the_same_numbers_and_restore_the_thread_count():
    from contextlib import nullcontext

    import mamlkit.lessons.transfer_baseline as transfer_baseline

    model = Conv4(3, channels=4, generator=torch.Generator().manual_seed(0))
    params = {n: p.detach() for n, p in get_params(model).items() if n.startswith("blocks.")}
    x = torch.rand(4, 3, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    y = torch.arange(3).expand(4, -1)
    threads = torch.get_num_threads()
    one = transfer_baseline.features(model, params, x)
    heads_one = transfer_baseline.fine_tune_heads(one, y, 3, steps=20, lr=0.1)
    assert torch.get_num_threads() == threads, "the thread count is restored"
    original = transfer_baseline._one_thread
    try:
        transfer_baseline._one_thread = nullcontext  # as many threads as torch has
        many = transfer_baseline.features(model, params, x)
        heads_many = transfer_baseline.fine_tune_heads(many, y, 3, steps=20, lr=0.1)
    finally:
        transfer_baseline._one_thread = original
    torch.testing.assert_close(one, many, rtol=1e-5, atol=1e-6)
    for a, b in zip(heads_one, heads_many):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
