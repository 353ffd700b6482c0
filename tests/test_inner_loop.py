"""The inner loop and the meta-gradient, checked against float64 finite differences."""

import pytest
import torch
from helpers import flat, image_tasks, regression_tasks, relative_error, tiny_conv, tiny_mlp
from torch import nn
from torch.autograd.gradcheck import GradcheckError

from mamlkit.functional import forward, get_params
from mamlkit.inner_loop import adapt, first_order_gradients, gradient_step, init_inner_lrs
from mamlkit.losses import cross_entropy, mse
from mamlkit.outer_loop import meta_loss


def as_function_of_flat_theta(model, loss_fn, tasks, inner_lr, inner_steps, first_order=False):
    """θ (flattened) ↦ mean query loss after adaptation: the function MAML differentiates."""
    params = get_params(model)
    names, shapes = list(params), [p.shape for p in params.values()]
    sizes = [p.numel() for p in params.values()]

    def f(theta_flat):
        pieces = torch.split(theta_flat, sizes)
        theta = {n: piece.reshape(s) for n, piece, s in zip(names, pieces, shapes)}
        return meta_loss(model, theta, tasks, loss_fn, inner_lr, inner_steps, first_order)[0]

    return f, flat(params.values()).detach().clone().requires_grad_(True)


def assert_matches_finite_differences(f, theta, what, fast_mode=False):
    """gradcheck of ``f`` at ``theta``, failing with a hint at the usual cause.

    ``fast_mode`` compares the gradient along one random direction of θ with the central
    difference along it (torch's fast gradcheck): one pair of evaluations instead of one per
    coordinate, and a wrong gradient in any coordinate still moves the projection.
    """
    try:
        torch.autograd.gradcheck(f, (theta,), eps=1e-6, atol=1e-5, rtol=1e-4, fast_mode=fast_mode)
    except GradcheckError as err:
        pytest.fail(
            f"{what}: autograd's meta-gradient differs from float64 finite differences. If it is "
            "the first-order gradient, the inner gradient lost its graph: gradient_step needs "
            f"create_graph=True, and φ must be new tensors computed from θ.\n{err}",
            pytrace=False,
        )


CASES = {
    "mlp": (lambda: tiny_mlp(), mse, lambda: regression_tasks(), 0.05),
    "conv_bn": (lambda: tiny_conv(), cross_entropy, lambda: image_tasks(), 0.4),
}


@pytest.mark.ex2_1
@pytest.mark.ex3_1
@pytest.mark.parametrize("inner_steps", [1, 3])
@pytest.mark.parametrize("case", sorted(CASES))
def test_meta_gradient_matches_finite_differences(case, inner_steps):
    make_model, loss_fn, make_tasks, inner_lr = CASES[case]
    f, theta = as_function_of_flat_theta(make_model(), loss_fn, make_tasks(), inner_lr, inner_steps)
    # Every coordinate for the MLP; the convolutional net (batch norm included) along a random
    # direction, its per-coordinate check being covered by the MLP and the grouped-conv tests.
    assert_matches_finite_differences(f, theta, f"meta_loss ({case}, {inner_steps} inner steps)",
                                      fast_mode=case == "conv_bn")


@pytest.mark.ex2_1
@pytest.mark.ex3_1
@pytest.mark.ex3_2
@pytest.mark.parametrize("case", sorted(CASES))
def test_first_order_differs_from_second_order(case):
    make_model, loss_fn, make_tasks, inner_lr = CASES[case]
    model, tasks = make_model(), make_tasks()
    f2, theta = as_function_of_flat_theta(model, loss_fn, tasks, inner_lr, 2)
    f1, _ = as_function_of_flat_theta(model, loss_fn, tasks, inner_lr, 2, first_order=True)
    (second,) = torch.autograd.grad(f2(theta), theta)
    (first,) = torch.autograd.grad(f1(theta), theta)
    # Same loss value (the adapted parameters are the same numbers) ...
    assert torch.allclose(f1(theta), f2(theta)), (
        f"first-order and second-order MAML should give the same meta-loss (only the gradient "
        f"differs), got {f1(theta).item():.6g} and {f2(theta).item():.6g}: does first_order change "
        f"the inner step itself rather than only its gradient?"
    )
    # ... but a different gradient, because the inner-loop Hessian is not zero.
    difference = ((first - second).norm() / second.norm()).item()
    assert difference > 1e-3, (
        f"first-order and second-order meta-gradients are equal (relative difference {difference:.1e}): "
        "the second-order path is missing. gradient_step should compute the inner gradient with "
        "create_graph=True when first_order is False, and without it when first_order is True"
    )


@pytest.mark.ex2_1
@pytest.mark.ex3_2
def test_first_order_equals_the_gradient_with_the_inner_graph_cut():
    model, tasks = tiny_conv(), image_tasks(num_tasks=1)
    task = tasks.task(0)
    theta = get_params(model)

    # By hand: inner gradients computed as constants, φ = θ − α·g with g detached.
    phi = dict(theta)
    for _ in range(2):
        loss = cross_entropy(forward(model, phi, task.x_support), task.y_support)
        grads = torch.autograd.grad(loss, list(phi.values()))
        phi = {n: p - 0.4 * g.detach() for (n, p), g in zip(phi.items(), grads)}
    by_hand = torch.autograd.grad(cross_entropy(forward(model, phi, task.x_query), task.y_query),
                                  list(theta.values()))

    adapted = adapt(model, theta, task.x_support, task.y_support, cross_entropy, 0.4, 2, first_order=True)
    library = torch.autograd.grad(cross_entropy(forward(model, adapted, task.x_query), task.y_query),
                                  list(theta.values()))
    error = relative_error(library, by_hand)
    assert error < 1e-12, (
        f"adapt(first_order=True) should give the meta-gradient with every inner gradient treated "
        f"as a constant; relative error {error:.1e} against that computed by hand. "
        "first_order_gradients should return torch.autograd.grad's gradients without create_graph"
    )


@pytest.mark.ex2_1
@pytest.mark.ex3_1
@pytest.mark.parametrize("case", sorted(CASES))
def test_zero_inner_lr_gives_the_plain_query_gradient(case):
    make_model, loss_fn, make_tasks, _ = CASES[case]
    model, tasks = make_model(), make_tasks()
    theta = get_params(model)
    loss, _ = meta_loss(model, theta, tasks, loss_fn, inner_lr=0.0, inner_steps=3)
    maml = torch.autograd.grad(loss, list(theta.values()))
    plain_loss = torch.stack([loss_fn(forward(model, theta, x), y)
                              for x, y in zip(tasks.x_query, tasks.y_query)]).mean()
    plain = torch.autograd.grad(plain_loss, list(theta.values()))
    assert torch.allclose(loss, plain_loss, rtol=1e-12, atol=0), (
        f"with inner_lr=0 adaptation changes nothing, so meta_loss should be the mean query loss "
        f"of θ itself, {plain_loss.item():.6g}; got {loss.item():.6g}. Is it the mean over tasks "
        "of the query loss (not the support loss)?"
    )
    error = relative_error(maml, plain)
    assert error < 1e-12, f"with inner_lr=0 the meta-gradient is the plain query gradient; relative error {error:.1e}"


@pytest.mark.ex2_1
def test_linear_model_one_step_matches_closed_form():
    """For f(x) = Xw + b with MSE, one step and its meta-gradient have closed forms."""
    g = torch.Generator().manual_seed(0)
    d, n, alpha = 3, 6, 0.1
    model = nn.Linear(d, 1).double()
    theta = get_params(model)
    X, y = torch.randn(n, d, generator=g, dtype=torch.float64), torch.randn(n, 1, generator=g, dtype=torch.float64)
    Xq, yq = torch.randn(4, d, generator=g, dtype=torch.float64), torch.randn(4, 1, generator=g, dtype=torch.float64)
    w, b = theta["weight"].detach().reshape(d, 1), theta["bias"].detach()

    residual = X @ w + b - y
    w_expected = w - alpha * 2 / n * X.T @ residual
    b_expected = b - alpha * 2 / n * residual.sum(0)
    adapted = adapt(model, theta, X, y, mse, alpha, 1)
    assert torch.allclose(adapted["weight"].reshape(d, 1), w_expected, atol=1e-12), (
        f"one step of adapt should give w - α·∇w L = {w_expected.flatten().tolist()}, "
        f"got {adapted['weight'].detach().flatten().tolist()}"
    )
    assert torch.allclose(adapted["bias"], b_expected, atol=1e-12), (
        f"one step of adapt should give b - α·∇b L = {b_expected.tolist()}, got {adapted['bias'].tolist()}"
    )

    # Meta-gradient: d φ / d θ = I − α·H with H the Hessian of the support loss in (w, b).
    A = torch.cat([X, torch.ones(n, 1, dtype=torch.float64)], dim=1)
    Aq = torch.cat([Xq, torch.ones(4, 1, dtype=torch.float64)], dim=1)
    phi = torch.cat([w_expected, b_expected.reshape(1, 1)])
    grad_query_at_phi = 2 / 4 * Aq.T @ (Aq @ phi - yq)
    jacobian = torch.eye(d + 1, dtype=torch.float64) - alpha * 2 / n * A.T @ A
    expected = (jacobian.T @ grad_query_at_phi).reshape(-1)
    loss = mse(forward(model, adapted, Xq), yq)
    got = torch.cat([t.reshape(-1) for t in torch.autograd.grad(loss, [theta["weight"], theta["bias"]])])
    assert torch.allclose(got, expected, atol=1e-12), (
        f"meta-gradient (I - αH)ᵀ∇L_Q(φ) = {expected.tolist()}, autograd through adapt gave {got.tolist()}; "
        "if it equals ∇L_Q(φ) alone, the inner gradient was taken without create_graph=True"
    )


@pytest.mark.ex2_1
@pytest.mark.ex3_1
@pytest.mark.ex3_3
@pytest.mark.parametrize("first_order", [False, pytest.param(True, marks=pytest.mark.ex3_2)])
def test_learned_inner_lrs_receive_gradients(first_order):
    model, tasks = tiny_conv(), image_tasks()
    theta = get_params(model)
    lrs = init_inner_lrs(theta, 0.4)
    loss, _ = meta_loss(model, theta, tasks, cross_entropy, lrs, 1, first_order)
    grads = torch.autograd.grad(loss, list(lrs.values()), allow_unused=True)
    missing = [name for name, g in zip(lrs, grads) if g is None or g.abs() == 0]
    assert not missing, (
        f"the learned learning rates of {missing} got no gradient from the meta-loss: each must be a "
        "tensor with requires_grad=True that the inner step multiplies the gradient by"
    )


@pytest.mark.ex2_1
@pytest.mark.ex3_3
def test_learned_rates_equal_to_a_fixed_rate_give_the_same_step():
    model, tasks = tiny_mlp(), regression_tasks()
    theta = get_params(model)
    fixed = adapt(model, theta, tasks.x_support[0], tasks.y_support[0], mse, 0.05, 2)
    learned = adapt(model, theta, tasks.x_support[0], tasks.y_support[0], mse, init_inner_lrs(theta, 0.05), 2)
    error = relative_error(learned.values(), fixed.values())
    assert error < 1e-14, (
        f"init_inner_lrs(θ, 0.05) should start every rate at 0.05, so adapt takes the same steps as "
        f"with inner_lr=0.05; relative difference {error:.1e}"
    )


@pytest.mark.ex2_1
def test_the_inner_loop_does_not_touch_theta():
    model, tasks = tiny_conv(), image_tasks()
    theta = get_params(model)
    before = {n: p.detach().clone() for n, p in theta.items()}
    adapt(model, theta, tasks.x_support[0], tasks.y_support[0], cross_entropy, 0.4, 3)
    changed = [n for n in theta if not torch.equal(theta[n], before[n])]
    assert not changed, (
        f"adapt changed θ in place ({changed}); it must build new tensors φ = θ - α·g "
        "and leave θ as it was"
    )


# --- one piece at a time ----------------------------------------------------------------------

def cube_loss(alpha=0.1):
    """θ = (0.5, -1, 2), loss Σθ³: ∇ = 3θ², and one step φ = θ - α·3θ² has dφᵢ/dθᵢ = 1 - 6αθᵢ."""
    theta = {"w": torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64, requires_grad=True)}
    return theta, (theta["w"] ** 3).sum(), alpha


@pytest.mark.ex2_1
def test_gradient_step_is_one_differentiable_step_of_gradient_descent():
    theta, loss, alpha = cube_loss()
    w = theta["w"]
    phi = gradient_step(loss, theta, alpha)
    expected = w - alpha * 3 * w**2
    assert set(phi) == {"w"}, f"gradient_step should return a dict with the same names as params, got {set(phi)}"
    assert torch.allclose(phi["w"], expected, rtol=1e-12, atol=0), (
        f"φ = θ - α·∇L: expected {expected.tolist()}, got {phi['w'].tolist()}"
    )
    (jacobian_diag,) = torch.autograd.grad(phi["w"].sum(), w)
    second_order = 1 - 6 * alpha * w.detach()
    assert not torch.allclose(jacobian_diag, torch.ones(3, dtype=torch.float64)), (
        "dφ/dθ came back as 1: the gradient inside gradient_step was treated as a constant. "
        "Compute it with torch.autograd.grad(..., create_graph=True) so that φ depends on θ through it"
    )
    assert torch.allclose(jacobian_diag, second_order, rtol=1e-12, atol=0), (
        f"dφ/dθ should be 1 - 6αθ = {second_order.tolist()}, got {jacobian_diag.tolist()}"
    )
    assert w.grad is None, "gradient_step must return the gradient as a value, not put it in .grad (use autograd.grad)"


@pytest.mark.ex3_2
def test_first_order_gradients_are_the_gradients_as_constants():
    theta, loss, _ = cube_loss()
    grads = first_order_gradients(loss, theta)
    assert isinstance(grads, tuple) and len(grads) == 1, (
        f"first_order_gradients should return a tuple with one gradient per parameter tensor, got {type(grads).__name__}"
    )
    expected = 3 * theta["w"].detach() ** 2
    assert torch.allclose(grads[0], expected, rtol=1e-12, atol=0), (
        f"∇Σθ³ = 3θ² = {expected.tolist()}, got {grads[0].tolist()}"
    )
    assert not grads[0].requires_grad, (
        "the first-order gradient still has a graph back to θ (requires_grad=True): compute it "
        "without create_graph, so the outer gradient treats it as a constant"
    )
    theta, loss, alpha = cube_loss()
    phi = gradient_step(loss, theta, alpha, first_order=True)
    (jacobian_diag,) = torch.autograd.grad(phi["w"].sum(), theta["w"])
    assert torch.equal(jacobian_diag, torch.ones(3, dtype=torch.float64)), (
        f"with first_order=True, dφ/dθ should be exactly 1 (the gradient is a constant), got {jacobian_diag.tolist()}"
    )


@pytest.mark.ex3_3
def test_init_inner_lrs_gives_one_learnable_scalar_per_parameter_tensor():
    model = tiny_conv()
    theta = get_params(model)
    lrs = init_inner_lrs(theta, 0.4)
    assert isinstance(lrs, dict) and list(lrs) == list(theta), (
        f"init_inner_lrs should return a dict with the names of params, in order; got keys {list(lrs) if isinstance(lrs, dict) else type(lrs).__name__}"
    )
    for name, lr in lrs.items():
        assert isinstance(lr, torch.Tensor) and lr.shape == (), (
            f"inner_lr[{name!r}] should be a scalar tensor (shape ()), got {getattr(lr, 'shape', type(lr).__name__)}"
        )
        assert lr.item() == pytest.approx(0.4), f"inner_lr[{name!r}] should start at 0.4, got {lr.item()}"
        assert lr.dtype == theta[name].dtype and lr.device == theta[name].device, (
            f"inner_lr[{name!r}] is {lr.dtype} on {lr.device}; use the dtype and device of params[{name!r}] "
            f"({theta[name].dtype} on {theta[name].device})"
        )
        assert lr.requires_grad and lr.is_leaf, (
            f"inner_lr[{name!r}] must be a leaf with requires_grad=True, so that the outer optimiser can learn it"
        )
    assert len({id(lr) for lr in lrs.values()}) == len(lrs), "each parameter tensor needs its own rate, not one shared tensor"
    float32 = init_inner_lrs({"w": torch.zeros(2, requires_grad=True)}, 0.01)
    assert float32["w"].dtype == torch.float32


@pytest.mark.ex2_1
@pytest.mark.ex3_1
def test_meta_loss_is_the_mean_query_loss_after_adapting_each_task():
    model, tasks = tiny_conv(), image_tasks(num_tasks=3)
    theta = get_params(model)
    loss, outputs = meta_loss(model, theta, tasks, cross_entropy, 0.4, 2)
    per_task, per_task_outputs = [], []
    for i in range(3):
        task = tasks.task(i)
        phi = adapt(model, theta, task.x_support, task.y_support, cross_entropy, 0.4, 2)
        per_task_outputs.append(forward(model, phi, task.x_query))
        per_task.append(cross_entropy(per_task_outputs[-1], task.y_query))
    expected = torch.stack(per_task).mean()
    assert loss.shape == (), f"meta_loss should return a scalar loss, got shape {tuple(loss.shape)}"
    assert torch.allclose(loss, expected, rtol=1e-12, atol=0), (
        f"meta_loss should be the mean over tasks of the query loss of φᵢ = adapt(θ, support set i); "
        f"expected {expected.item():.6g}, got {loss.item():.6g}"
    )
    assert outputs.shape == (3, 6, 3), f"query outputs should be (tasks, query examples, classes) = (3, 6, 3), got {tuple(outputs.shape)}"
    assert torch.allclose(outputs, torch.stack(per_task_outputs).detach(), rtol=1e-12, atol=0), (
        "the query outputs should be those of the adapted parameters φᵢ, one task at a time"
    )
    assert loss.requires_grad, "the meta-loss must stay differentiable with respect to θ"


# --- bad input -----------------------------------------------------------------------------

def test_negative_inner_steps_is_rejected():
    model, tasks = tiny_mlp(), regression_tasks()
    with pytest.raises(ValueError, match="inner_steps must be a non-negative integer, got -1"):
        adapt(model, get_params(model), tasks.x_support[0], tasks.y_support[0], mse, 0.1, -1)


def test_negative_inner_lr_is_rejected():
    model, tasks = tiny_mlp(), regression_tasks()
    with pytest.raises(ValueError, match="inner_lr must be a non-negative number"):
        adapt(model, get_params(model), tasks.x_support[0], tasks.y_support[0], mse, -0.1, 1)


def test_support_inputs_and_labels_of_different_lengths_are_rejected():
    model, tasks = tiny_mlp(), regression_tasks()
    with pytest.raises(ValueError, match="x_support has 5 examples but y_support has 4"):
        adapt(model, get_params(model), tasks.x_support[0], tasks.y_support[0][:4], mse, 0.1, 1)


def test_params_that_do_not_match_the_model_are_rejected():
    model, tasks = tiny_mlp(), regression_tasks()
    params = get_params(model)
    del params["layers.0.bias"]
    with pytest.raises(ValueError, match=r"missing \['layers.0.bias'\]"):
        adapt(model, params, tasks.x_support[0], tasks.y_support[0], mse, 0.1, 1)
    params = get_params(model)
    params["layers.0.weight"] = torch.zeros(3, 1, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"params\['layers.0.weight'\] has shape \(3, 1\)"):
        adapt(model, params, tasks.x_support[0], tasks.y_support[0], mse, 0.1, 1)


@pytest.mark.ex2_1  # the loss, which checks the labels, is computed inside the solution
def test_labels_out_of_range_are_rejected_in_the_inner_loop():
    model, tasks = tiny_conv(n_way=3), image_tasks(n_way=3)
    with pytest.raises(ValueError, match=r"labels must lie in 0\.\.2"):
        adapt(model, get_params(model), tasks.x_support[0], tasks.y_support[0] + 1, cross_entropy, 0.4, 1)
