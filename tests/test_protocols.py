"""Evaluation protocols: the support-statistics forward against its defining properties."""

import pytest
import torch
from helpers import image_tasks, tiny_conv

from mamlkit.evaluate import evaluate
from mamlkit.functional import get_params
from mamlkit.methods import ALGORITHMS, build_method
from mamlkit.methods.embedding import expand_tasks
from mamlkit.protocols import query_outputs, support_stats_forward_tasks


def setup(num_tasks=2, n_query=3):
    model = tiny_conv()
    params = get_params(model)
    tasks = image_tasks(num_tasks=num_tasks, n_query=n_query)
    # Different parameters per task, so a mix-up between tasks would show.
    per_task = {n: torch.stack([p.detach() * (1 + 0.2 * i) for i in range(num_tasks)]) for n, p in params.items()}
    return model, per_task, tasks


def test_support_stats_on_the_support_set_is_the_ordinary_forward():
    model, params, tasks = setup()
    expected = model.forward_tasks(params, tasks.x_support)
    actual = support_stats_forward_tasks(params, tasks.x_support, tasks.x_support)
    assert torch.allclose(actual, expected, atol=1e-10), \
        "normalising the support set with its own statistics must reproduce forward_tasks"


def test_support_stats_classifies_each_query_on_its_own():
    model, params, tasks = setup()
    together = support_stats_forward_tasks(params, tasks.x_support, tasks.x_query)
    for q in range(tasks.x_query.shape[1]):
        alone = support_stats_forward_tasks(params, tasks.x_support, tasks.x_query[:, q:q + 1])
        assert torch.allclose(alone[:, 0], together[:, q], atol=1e-10), \
            "a query image's output must not depend on the other query images"


def test_the_transductive_forward_does_depend_on_the_other_queries():
    model, params, tasks = setup()
    together = query_outputs(model, params, tasks.x_support, tasks.x_query, "transductive")
    alone = query_outputs(model, params, tasks.x_support, tasks.x_query[:, :2], "transductive")
    assert not torch.allclose(alone, together[:, :2], atol=1e-6)


def test_support_stats_matches_a_per_task_batch_norm_with_support_statistics():
    """Oracle: Conv4 per task with each BatchNorm2d fed the support set's mean and variance."""
    model, params, tasks = setup(num_tasks=1)
    theta = {n: p[0] for n, p in params.items()}
    stats = {}

    def remember(module, inputs, output):  # record the support set's statistics of each layer
        x = inputs[0]
        stats[module] = (x.mean(dim=(0, 2, 3)), x.var(dim=(0, 2, 3), unbiased=False))

    def with_stats(module, inputs):
        mean, var = stats[module]
        x = inputs[0]
        return ((x - mean[:, None, None]) / torch.sqrt(var[:, None, None] + module.eps),)

    norms = [b.norm for b in model.blocks]
    handles = [n.register_forward_hook(remember) for n in norms]
    torch.func.functional_call(model, theta, (tasks.x_support[0],))
    for h in handles:
        h.remove()
    # Replace each norm's input by its support-normalised version, then let BN apply γ, β
    # to an input already standardised: with batch statistics it would re-normalise, so
    # compute the affine part by hand instead.
    h = tasks.x_query[0]
    for i, block in enumerate(model.blocks):
        h = torch.nn.functional.conv2d(h, theta[f"blocks.{i}.conv.weight"], stride=2, padding=1)
        (h,) = with_stats(block.norm, (h,))
        h = torch.relu(h * theta[f"blocks.{i}.norm.weight"][:, None, None] + theta[f"blocks.{i}.norm.bias"][:, None, None])
    expected = h.mean(dim=(2, 3)) @ theta["head.weight"].T + theta["head.bias"]
    actual = support_stats_forward_tasks(params, tasks.x_support, tasks.x_query)[0]
    assert torch.allclose(actual, expected, atol=1e-10)


def test_unknown_protocol_is_a_clear_error():
    model, params, tasks = setup()
    with pytest.raises(ValueError, match="protocol must be one of"):
        query_outputs(model, params, tasks.x_support, tasks.x_query, "inductive")


# Evaluation adapts first-order (3.2) and reports a confidence interval (4.2).
EVAL_EX = {"maml": ("ex3_2", "ex4_2"), "metasgd": ("ex3_2", "ex4_2"), "anil": ("ex5_2", "ex3_2", "ex4_2"),
           "protonet": ("ex5_1", "ex4_2"), "reptile": ("ex3_2", "ex4_2"), "protomaml": ("ex5_1", "ex3_2", "ex4_2")}


@pytest.mark.parametrize("name", [pytest.param(n, marks=[getattr(pytest.mark, m) for m in EVAL_EX[n]])
                                  for n in sorted(ALGORITHMS)])
def test_evaluate_runs_every_method_under_both_protocols(name):
    model = tiny_conv()
    params = get_params(model)
    method = build_method(name, params, 0.4, 1)
    generator = torch.Generator().manual_seed(0)

    def sample(n):
        return image_tasks(num_tasks=n, seed=int(torch.randint(1000, (1,), generator=generator)))

    results = {p: evaluate(model, params, sample, None, None, 2, num_tasks=4, batch_size=2,
                           method=method, protocol=p) for p in ("transductive", "support-stats")}
    for p, r in results.items():
        assert 0 <= r["mean"] <= 1 and r["num_tasks"] == 4, p


@pytest.mark.ex3_2
def test_support_stats_queries_use_the_adapted_parameters():
    model, params, tasks = setup()
    theta = {n: p[0] for n, p in params.items()}
    method = build_method("maml", theta, 0.4, 1)
    curve_t = method.adaptation_curve(model, theta, tasks, 2, protocol="support-stats")
    assert curve_t.shape == (3, tasks.num_tasks)
    # Support-stats with queries = support equals transductive on the support set.
    same = tasks._replace(x_query=tasks.x_support, y_query=tasks.y_support)
    a = method.adaptation_curve(model, theta, same, 2, protocol="support-stats")
    b = method.adaptation_curve(model, theta, same, 2, protocol="transductive")
    assert torch.equal(a, b)
    assert expand_tasks(theta, 2)["head.bias"].shape == (2, 3)


@pytest.mark.ex2_1
def test_metabn_meta_loss_gradient_matches_finite_differences():
    """Training with support statistics differentiates through them (no F.batch_norm in eval mode)."""
    from mamlkit.losses import cross_entropy
    from mamlkit.protocols import support_stats_meta_loss

    model, _, tasks = setup()
    params = get_params(model)
    names = list(params)
    loss, outputs = support_stats_meta_loss(model, params, tasks, cross_entropy, 0.3, 1)
    grads = torch.autograd.grad(loss, [params[n] for n in names])
    assert outputs.shape == (tasks.num_tasks, tasks.x_query.shape[1], 3)
    for name in ("blocks.0.conv.weight", "blocks.1.norm.weight", "blocks.3.norm.bias", "head.weight"):
        step = torch.zeros_like(params[name])
        step.view(-1)[0] = 1e-6

        def moved(sign, name=name, step=step):
            q = {n: (p + sign * step if n == name else p).detach().requires_grad_(True) for n, p in params.items()}
            return support_stats_meta_loss(model, q, tasks, cross_entropy, 0.3, 1)[0].item()

        numeric = (moved(1) - moved(-1)) / 2e-6
        assert abs(numeric - grads[names.index(name)].view(-1)[0].item()) < 1e-6 * max(1.0, abs(numeric)), name
