"""Reptile and ProtoMAML against hand-written per-task loops, in float64."""

import pytest
import torch
from helpers import image_tasks, relative_error, tiny_conv

from mamlkit.functional import forward, get_params
from mamlkit.losses import cross_entropy
from mamlkit.methods import ALGORITHMS, ProtoMAML, Reptile, build_method
from mamlkit.methods.embedding import embed
from mamlkit.methods.protomaml import prototype_head
from mamlkit.methods.protonet import prototype_logits, prototypes


def setup(num_tasks=3):
    model = tiny_conv()
    return model, get_params(model), image_tasks(num_tasks=num_tasks)


def by_hand_sgd(model, params, x, y, alpha, steps):
    """Plain SGD on one task's support set, written out with torch.autograd.grad."""
    phi = {n: p.detach().clone().requires_grad_(True) for n, p in params.items()}
    for _ in range(steps):
        grads = torch.autograd.grad(cross_entropy(forward(model, phi, x), y), list(phi.values()))
        phi = {n: (p - alpha * g).detach().requires_grad_(True) for (n, p), g in zip(phi.items(), grads)}
    return phi


def reptile_gradient(method, model, params, tasks, implementation):
    loss, _ = method.meta_loss(model, params, tasks, implementation)
    return loss, torch.autograd.grad(loss, list(params.values()))


def test_both_are_registered_behind_the_common_interface():
    assert ALGORITHMS["reptile"] is Reptile and ALGORITHMS["protomaml"] is ProtoMAML


@pytest.mark.ex3_2
# Reptile's steps are first-order: only the per-task loop runs `adapt` (Exercise 2.1).
@pytest.mark.parametrize("implementation", ["fast", pytest.param("loop", marks=pytest.mark.ex2_1)])
@pytest.mark.parametrize("steps", [1, 3])
def test_reptile_direction_is_theta_minus_the_mean_sgd_weights(implementation, steps):
    model, params, tasks = setup()
    method = build_method("reptile", params, 0.3, steps)
    _, grads = reptile_gradient(method, model, params, tasks, implementation)
    phis = [by_hand_sgd(model, params, t.x_support, t.y_support, 0.3, steps)
            for t in (tasks.task(i) for i in range(tasks.num_tasks))]
    for (name, p), g in zip(params.items(), grads):
        expected = torch.stack([p.detach() - phi[name] for phi in phis]).mean(dim=0)
        assert relative_error(g, expected) < 1e-10, name


@pytest.mark.ex3_2
def test_one_step_reptile_is_the_first_order_support_gradient_up_to_scale():
    """θ − φ = α ∇L_S(θ) for one SGD step: an SGD outer step of ε moves θ by εα ∇L_S."""
    model, params, tasks = setup()
    alpha, epsilon = 0.25, 0.7
    _, grads = reptile_gradient(build_method("reptile", params, alpha, 1), model, params, tasks, "fast")
    support = [torch.autograd.grad(cross_entropy(forward(model, params, t.x_support), t.y_support),
                                   list(params.values())) for t in (tasks.task(i) for i in range(tasks.num_tasks))]
    for i, g in enumerate(grads):
        mean_gradient = torch.stack([s[i] for s in support]).mean(dim=0)
        assert relative_error(g, alpha * mean_gradient) < 1e-10
    theta = {n: p.detach().clone().requires_grad_(True) for n, p in params.items()}
    optimizer = torch.optim.SGD(list(theta.values()), lr=epsilon)
    loss, _ = build_method("reptile", theta, alpha, 1).meta_loss(model, theta, tasks, "fast")
    loss.backward()
    optimizer.step()
    for i, (name, p) in enumerate(params.items()):
        moved = theta[name].detach() - p.detach()
        expected = -epsilon * alpha * torch.stack([s[i] for s in support]).mean(dim=0)
        assert relative_error(moved, expected) < 1e-10, name


@pytest.mark.ex3_2
def test_reptile_loss_value_is_the_query_loss_after_adaptation():
    model, params, tasks = setup()
    loss, outputs = build_method("reptile", params, 0.3, 2).meta_loss(model, params, tasks, "fast")
    expected = torch.stack([cross_entropy(forward(model, by_hand_sgd(model, params, t.x_support, t.y_support, 0.3, 2),
                                                  t.x_query), t.y_query)
                            for t in (tasks.task(i) for i in range(tasks.num_tasks))]).mean()
    assert abs(loss.item() - expected.item()) < 1e-10
    assert outputs.shape == (tasks.num_tasks, tasks.x_query.shape[1], 3)


def test_reptile_refuses_learned_rates():
    _, params, _ = setup()
    with pytest.raises(ValueError, match="cannot learn inner rates"):
        build_method("reptile", params, 0.4, 1, learn_inner_lrs=True)


@pytest.mark.ex5_1  # prototypes, Exercise 5.1
def test_prototype_head_gives_protonet_logits_up_to_a_per_example_constant():
    g = torch.Generator().manual_seed(0)
    support, query = torch.randn(6, 4, generator=g, dtype=torch.float64), torch.randn(5, 4, generator=g, dtype=torch.float64)
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    head = prototype_head(support, labels, 3)
    linear = query @ head["head.weight"].T + head["head.bias"]
    protonet = prototype_logits(query, prototypes(support, labels, 3))
    difference = linear - protonet  # = ‖f(x)‖², the same for every class
    assert torch.allclose(difference, (query ** 2).sum(dim=1, keepdim=True).expand_as(difference))
    assert torch.equal(linear.argmax(dim=1), protonet.argmax(dim=1))


@pytest.mark.ex5_1
# Second-order steps run Exercise 2.1, first-order ones Exercise 3.2.
@pytest.mark.parametrize("first_order", [pytest.param(False, marks=pytest.mark.ex2_1),
                                         pytest.param(True, marks=pytest.mark.ex3_2)])
def test_protomaml_fast_path_equals_a_hand_written_loop(first_order):
    """Fast path and the class's loop against MAML written out from the prototype head."""
    model, params, tasks = setup()
    method = build_method("protomaml", params, 0.3, 2, first_order)
    wrt = [p for n, p in params.items() if not n.startswith("head.")]
    results = {}
    for implementation in ("fast", "loop"):
        loss, outputs = method.meta_loss(model, params, tasks, implementation)
        results[implementation] = loss, outputs, torch.autograd.grad(loss, wrt)
    losses = []
    for i in range(tasks.num_tasks):
        t = tasks.task(i)
        # The inner loop's variables: body tensors as they are, head from the prototypes; the
        # inner gradient is a partial one (the head's start is an input to it, not a function).
        body = {n: p * 1.0 for n, p in params.items() if not n.startswith("head.")}
        phi = {**body, **prototype_head(embed(model, params, t.x_support), t.y_support, 3)}
        for _ in range(2):
            grads = torch.autograd.grad(cross_entropy(forward(model, phi, t.x_support), t.y_support),
                                        list(phi.values()), create_graph=not first_order,
                                        retain_graph=True)
            phi = {n: p - 0.3 * g for (n, p), g in zip(phi.items(), grads)}
        losses.append(cross_entropy(forward(model, phi, t.x_query), t.y_query))
    expected = torch.stack(losses).mean()
    expected_grads = torch.autograd.grad(expected, wrt)
    for implementation, (loss, _outputs, grads) in results.items():
        assert abs(loss.item() - expected.item()) < 1e-10, implementation
        for g, e in zip(grads, expected_grads):
            assert relative_error(g, e) < 1e-8, implementation


@pytest.mark.ex3_2
@pytest.mark.ex5_1
@pytest.mark.parametrize("protocol", ["transductive", "support-stats"])
def test_protomaml_curve_starts_at_protonet_accuracy(protocol):
    model, params, tasks = setup()
    curve = build_method("protomaml", params, 0.3, 1).adaptation_curve(model, params, tasks, 2, protocol=protocol)
    protonet = build_method("protonet", params).adaptation_curve(model, params, tasks, 2, protocol=protocol)
    assert curve.shape == (3, tasks.num_tasks)
    assert torch.equal(curve[0], protonet[0])
