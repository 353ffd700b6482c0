"""Any nn.Module, any mistake: the library does the right thing or says exactly what is wrong.

The first part runs models the library knows nothing about (plain ``nn.Sequential``, frozen
layers, an unused head, batch norm with running statistics, a forward vmap cannot run) through
every entry point and checks them against the per-task loop and float64 finite differences.
The second part is a list of mistakes learners make with MAML code (from this course's own
cases and from other MAML libraries' issue trackers); each must give a clear ValueError or
TypeError, or simply work.
"""

import pytest
import torch
from helpers import flat, image_tasks, regression_tasks, relative_error, tiny_conv, tiny_mlp
from torch import nn

from mamlkit.evaluate import adaptation_curve, evaluate
from mamlkit.fast import forward_tasks, meta_loss_batched, vmap_is_exact
from mamlkit.functional import forward, get_params
from mamlkit.inner_loop import adapt, gradient_step
from mamlkit.losses import accuracy, cross_entropy, mse
from mamlkit.outer_loop import NonFiniteError, meta_loss, outer_step
from mamlkit.tasks import TaskBatch

N_WAY, DIM = 3, 4


def vector_tasks(num_tasks=3, k_shot=2, n_query=2, seed=0, dtype=torch.float64) -> TaskBatch:
    """3-way tasks on 4-dimensional inputs: class c of task t is a Gaussian around its own mean."""
    g = torch.Generator().manual_seed(seed)
    means = torch.randn(num_tasks, N_WAY, DIM, generator=g, dtype=dtype) * 2

    def draw(shots):
        labels = torch.arange(N_WAY).repeat_interleave(shots).expand(num_tasks, -1).clone()
        x = means.gather(1, labels.unsqueeze(-1).expand(-1, -1, DIM))
        return x + torch.randn(x.shape, generator=g, dtype=dtype), labels

    return TaskBatch(*draw(k_shot), *draw(n_query))


def mlp(frozen_first=False, seed=0, dtype=torch.float64) -> nn.Sequential:
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(DIM, 8), nn.Tanh(), nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, N_WAY)).to(dtype)
    if frozen_first:
        model[0].requires_grad_(False)
    return model


class TwoHeads(nn.Module):
    """A body with two heads; ``forward`` uses only the first (the second is for another task)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(1)
        self.body = nn.Linear(DIM, 8)
        self.head = nn.Linear(8, N_WAY)
        self.other_head = nn.Linear(8, 7)

    def forward(self, x):
        return self.head(torch.tanh(self.body(x)))


class Branchy(nn.Module):
    """A forward with data-dependent Python control flow, which vmap cannot run."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(2)
        self.a, self.b = nn.Linear(DIM, N_WAY), nn.Linear(DIM, N_WAY)

    def forward(self, x):
        return self.a(x) if x.sum() > 0 else self.b(x)


def batch_norm_net(dtype=torch.float64) -> nn.Sequential:
    """Batch norm with running statistics (PyTorch's default), in training mode."""
    torch.manual_seed(3)
    return nn.Sequential(nn.Linear(DIM, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, N_WAY)).to(dtype)


def snapshot(model: nn.Module) -> dict:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def assert_unchanged(model: nn.Module, before: dict, what: str) -> None:
    changed = [k for k, v in model.state_dict().items() if not torch.equal(v, before[k])]
    assert not changed, f"{what} changed the module's own parameters or buffers: {changed}"


def loop_and_fast_gradients(model, params, tasks, loss_fn, inner_lr, inner_steps):
    wrt = [p for p in params.values() if p.requires_grad]
    loop_loss, loop_out = meta_loss(model, params, tasks, loss_fn, inner_lr, inner_steps)
    fast_loss, fast_out = meta_loss_batched(model, params, tasks, loss_fn, inner_lr, inner_steps)
    def grad(loss):  # the unused head has no gradient at all: count it as zero
        return torch.autograd.grad(loss, wrt, allow_unused=True, materialize_grads=True)

    return loop_loss, loop_out, grad(loop_loss), fast_loss, fast_out, grad(fast_loss)


# --- any model through the fast path: the loop is the oracle ------------------------------------

GENERIC = {
    "sequential (vmap)": (lambda: mlp(), lambda: vector_tasks()),
    "frozen first layer (vmap)": (lambda: mlp(frozen_first=True), lambda: vector_tasks()),
    "batch norm (task loop)": (batch_norm_net, lambda: vector_tasks()),
    "unused head (vmap)": (lambda: TwoHeads().double(), lambda: vector_tasks()),
    "control flow (task loop)": (lambda: Branchy().double(), lambda: vector_tasks()),
}


@pytest.mark.ex2_1
@pytest.mark.ex3_1
@pytest.mark.parametrize("case", sorted(GENERIC))
def test_the_fast_path_of_any_model_equals_the_per_task_loop(case):
    make_model, make_tasks = GENERIC[case]
    model, tasks = make_model(), make_tasks()
    params = get_params(model)
    loop_loss, loop_out, loop_grad, fast_loss, fast_out, fast_grad = loop_and_fast_gradients(
        model, params, tasks, cross_entropy, 0.5, 2)
    assert torch.allclose(fast_loss, loop_loss, rtol=1e-12, atol=0)
    assert torch.allclose(fast_out, loop_out, rtol=1e-10, atol=1e-12)
    error = relative_error(fast_grad, loop_grad)
    assert error < 1e-10, f"{case}: meta-gradients of the fast path and the loop differ by {error:.1e}"
    assert vmap_is_exact(model) == ("(vmap)" in case), "vmap where it is exact, the loop elsewhere"


def test_vmap_is_used_only_where_it_is_exact():
    assert vmap_is_exact(mlp())
    assert not vmap_is_exact(batch_norm_net()), "batch statistics under vmap: 0.3% off, so the loop"
    assert not vmap_is_exact(nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.5)))
    assert vmap_is_exact(nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.5)).eval())


@pytest.mark.ex2_1
@pytest.mark.parametrize("case", ["sequential (vmap)", "batch norm (task loop)"])
def test_the_generic_fast_meta_gradient_matches_finite_differences(case):
    make_model, _ = GENERIC[case]
    model, tasks = make_model(), vector_tasks(num_tasks=2)
    params = get_params(model)
    names, shapes, sizes = list(params), [p.shape for p in params.values()], [p.numel() for p in params.values()]

    def f(theta_flat):
        theta = {n: t.reshape(s) for n, t, s in zip(names, torch.split(theta_flat, sizes), shapes)}
        return meta_loss_batched(model, theta, tasks, cross_entropy, 0.5, 2)[0]

    theta = flat(params.values()).detach().clone().requires_grad_(True)
    assert torch.autograd.gradcheck(f, (theta,), eps=1e-6, atol=1e-5, rtol=1e-4)


def test_forward_tasks_of_any_model_is_the_module_per_task():
    for model in (mlp(), batch_norm_net(), Branchy().double()):
        params = get_params(model)
        tasks = vector_tasks()
        per_task = {n: torch.stack([p * (1 + 0.1 * i) for i in range(3)]) for n, p in params.items()}
        batched = forward_tasks(model, per_task, tasks.x_query)
        for i in range(3):
            alone = forward(model, {n: p[i] for n, p in per_task.items()}, tasks.x_query[i])
            assert torch.allclose(batched[i], alone, rtol=1e-12, atol=1e-14)


# --- (a) a head the loss never reaches -----------------------------------------------------------

@pytest.mark.ex2_1
def test_a_parameter_the_loss_never_reaches_gets_a_zero_inner_gradient():
    model, task = TwoHeads().double(), vector_tasks().task(0)
    theta = get_params(model)
    phi = adapt(model, theta, task.x_support, task.y_support, cross_entropy, 0.5, 2)
    assert torch.equal(phi["other_head.weight"], theta["other_head.weight"])
    assert not torch.equal(phi["head.weight"], theta["head.weight"]), "the used head must adapt"
    step = gradient_step(cross_entropy(forward(model, theta, task.x_support), task.y_support), theta, 0.5)
    assert step["other_head.bias"] is theta["other_head.bias"], "zero gradient: the same tensor back"


@pytest.mark.ex2_1
@pytest.mark.parametrize("method", ["fast", pytest.param("loop", marks=pytest.mark.ex3_1)])  # "fast": no meta_loss
def test_outer_step_trains_a_model_with_an_unused_head(method):
    model, tasks = TwoHeads().double(), vector_tasks()
    theta = get_params(model)
    start = {n: p.detach().clone() for n, p in theta.items()}
    opt = torch.optim.Adam(theta.values(), lr=0.01)
    outer_step(model, theta, tasks, opt, cross_entropy, 0.5, 1, method=method)
    assert torch.equal(theta["other_head.weight"], start["other_head.weight"])
    assert not torch.equal(theta["body.weight"], start["body.weight"])


# --- (b) frozen layers --------------------------------------------------------------------------

def test_get_params_keeps_the_modules_requires_grad_flags():
    theta = get_params(mlp(frozen_first=True))
    assert [n for n, p in theta.items() if not p.requires_grad] == ["0.weight", "0.bias"]
    assert all(p.is_leaf for p in theta.values())


@pytest.mark.ex2_1
@pytest.mark.parametrize("method", ["fast", pytest.param("loop", marks=pytest.mark.ex3_1)])  # "fast": no meta_loss
def test_a_frozen_layer_stays_frozen_in_both_loops_and_is_still_used(method):
    model, tasks = mlp(frozen_first=True), vector_tasks()
    theta = get_params(model)
    start = {n: p.detach().clone() for n, p in theta.items()}
    phi = adapt(model, theta, tasks.x_support[0], tasks.y_support[0], cross_entropy, 0.5, 2)
    assert phi["0.weight"] is theta["0.weight"] and not torch.equal(phi["2.weight"], theta["2.weight"])
    opt = torch.optim.SGD(theta.values(), lr=0.1)
    outer_step(model, theta, tasks, opt, cross_entropy, 0.5, 1, method=method)
    assert torch.equal(theta["0.weight"], start["0.weight"]) and torch.equal(theta["0.bias"], start["0.bias"])
    assert not torch.equal(theta["2.weight"], start["2.weight"])
    # Still used: another first layer gives other outputs.
    other = dict(theta, **{"0.weight": theta["0.weight"] + 1})
    assert not torch.allclose(forward(model, other, tasks.x_query[0]), forward(model, theta, tasks.x_query[0]))


@pytest.mark.ex2_1
def test_the_modules_own_parameters_work_as_theta():
    model, tasks = mlp(frozen_first=True), vector_tasks()
    theta = dict(model.named_parameters())
    frozen = model[0].weight.detach().clone()
    opt = torch.optim.Adam(model.parameters(), lr=0.01)  # right here: θ *is* the module's tensors
    outer_step(model, theta, tasks, opt, cross_entropy, 0.5, 1)
    assert torch.equal(model[0].weight, frozen)
    assert theta["2.weight"] is model[2].weight


# --- (c) an optimiser over other tensors --------------------------------------------------------

def test_an_optimiser_that_does_not_hold_theta_is_an_error_not_a_silent_no_op():
    model, tasks = tiny_mlp(), regression_tasks()
    theta = get_params(model)
    opt = torch.optim.Adam(model.parameters())  # the module's tensors, not θ's copies
    start = {n: p.detach().clone() for n, p in theta.items()}
    with pytest.raises(ValueError, match=r"optimizer does not hold params .*torch\.optim\.Adam\(params\.values\(\)"):
        outer_step(model, theta, tasks, opt, mse, 0.05, 1)
    assert all(torch.equal(theta[n], start[n]) for n in theta)


def test_learned_rates_outside_the_optimiser_are_an_error():
    model, tasks = tiny_mlp(), regression_tasks()
    theta = get_params(model)
    lrs = {n: torch.tensor(0.05, dtype=torch.float64, requires_grad=True) for n in theta}  # learned rates
    with pytest.raises(ValueError, match="learned rates .* the optimizer does not hold"):
        outer_step(model, theta, tasks, torch.optim.Adam(theta.values()), mse, lrs, 1)


def test_an_optimiser_must_be_an_optimiser():
    model, tasks = mlp(), vector_tasks()
    theta = get_params(model)
    with pytest.raises(TypeError, match="optimizer must be a torch.optim.Optimizer"):
        outer_step(model, theta, tasks, list(theta.values()), cross_entropy, 0.5, 1)


# --- (d) evaluation of any model ----------------------------------------------------------------

@pytest.mark.ex2_1
@pytest.mark.ex3_2
@pytest.mark.ex4_2
@pytest.mark.parametrize("make_model", [mlp, batch_norm_net], ids=["sequential", "batch_norm"])
def test_evaluate_a_plain_sequential_gives_the_accuracies_of_adapt(make_model):
    model, pool = make_model(), vector_tasks(num_tasks=6, n_query=3)
    theta = get_params(model)
    before = snapshot(model)
    starts = iter([0, 4])

    def sample_tasks(n):  # the pool's tasks in order: 4, then 2
        start = next(starts)
        return TaskBatch(*(t[start:start + n] for t in pool))

    result = evaluate(model, theta, sample_tasks, cross_entropy, 0.5, inner_steps=2, num_tasks=6, batch_size=4)
    expected = []
    for i in range(6):
        task = pool.task(i)
        phi = adapt(model, theta, task.x_support, task.y_support, cross_entropy, 0.5, 2)
        expected.append(accuracy(forward(model, phi, task.x_query), task.y_query).item())
    assert result["per_task"] == pytest.approx(expected, abs=1e-12)
    assert_unchanged(model, before, "evaluate")


@pytest.mark.ex3_2
def test_evaluating_float_targets_with_the_default_metric_says_it_is_accuracy():
    model = tiny_mlp()
    tasks = regression_tasks()
    with pytest.raises(ValueError, match=r"the metric is classification accuracy by default .*"
                                         r"targets are torch.float64: pass metric=.*mse"):
        evaluate(model, get_params(model), lambda n: tasks, mse, 0.01, inner_steps=1, num_tasks=2)
    result = evaluate(model, get_params(model), lambda n: tasks, mse, 0.01, inner_steps=1, num_tasks=2, metric=mse)
    assert result["mean"] > 0


# --- (e) non-finite numbers ---------------------------------------------------------------------

@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_a_non_finite_inner_lr_is_rejected(bad):
    model, task = mlp(), vector_tasks().task(0)
    with pytest.raises(ValueError, match="inner_lr must be"):
        adapt(model, get_params(model), task.x_support, task.y_support, cross_entropy, bad, 1)


def test_a_non_finite_learned_rate_is_rejected():
    model, task = mlp(), vector_tasks().task(0)
    theta = get_params(model)
    lrs = {n: torch.tensor(0.5, dtype=torch.float64, requires_grad=True) for n in theta}
    with torch.no_grad():
        lrs["2.weight"].fill_(float("nan"))
    with pytest.raises(ValueError, match=r"inner_lr\['2.weight'\] is not finite"):
        adapt(model, theta, task.x_support, task.y_support, cross_entropy, lrs, 1)


def test_a_non_finite_meta_lr_is_rejected():
    model, tasks = tiny_mlp(), regression_tasks()
    theta = get_params(model)
    opt = torch.optim.Adam(theta.values())
    opt.param_groups[0]["lr"] = float("inf")  # as a learning-rate schedule gone wrong would set it
    with pytest.raises(ValueError, match=r"learning rate \(param group 0\) is inf; meta_lr must be a finite number"):
        outer_step(model, theta, tasks, opt, mse, 0.05, 1)


@pytest.mark.ex2_1
def test_a_diverging_inner_loop_is_refused_before_theta_or_the_optimiser_change():
    model, tasks = tiny_mlp(dtype=torch.float32, hidden=40), regression_tasks(num_tasks=4, dtype=torch.float32)
    theta = get_params(model)
    start = {n: p.detach().clone() for n, p in theta.items()}
    opt = torch.optim.Adam(theta.values(), lr=1e-3)
    with pytest.raises(NonFiniteError, match=r"refused the update.*inner_lr=10000000000.0 too large"):
        outer_step(model, theta, tasks, opt, mse, 1e10, 1)
    assert all(torch.equal(theta[n], start[n]) for n in theta), "θ must be unchanged"
    assert not opt.state, "the optimiser's state must be unchanged (Adam's moments not started)"
    assert all(p.grad is None for p in theta.values())


def test_a_non_finite_meta_gradient_is_refused_with_the_tensors_named():
    model, tasks = tiny_mlp(), regression_tasks()
    theta = get_params(model)
    start = {n: p.detach().clone() for n, p in theta.items()}
    opt = torch.optim.SGD(theta.values(), lr=0.1)

    def loss_with_an_infinite_slope(outputs, targets):  # finite value, infinite gradient at 0
        return mse(outputs, targets) + (outputs * 0).abs().sqrt().mean(dim=(-2, -1))

    with pytest.raises(NonFiniteError, match=r"meta-gradient of \['layers.0.weight'.* is inf/nan: outer_step refused"):
        outer_step(model, theta, tasks, opt, loss_with_an_infinite_slope, 0.0, 0)
    assert all(torch.equal(theta[n], start[n]) for n in theta)


def test_inputs_with_nan_are_rejected():
    model, tasks = tiny_mlp(), regression_tasks()
    theta = get_params(model)
    x = tasks.x_query.clone()
    x[1, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="tasks.x_query contains inf or nan"):
        outer_step(model, theta, tasks._replace(x_query=x), torch.optim.Adam(theta.values()), mse, 0.05, 1)


# --- the learner's objects are left as they were -------------------------------------------------

@pytest.mark.ex2_1
@pytest.mark.parametrize("method", ["fast", pytest.param("loop", marks=pytest.mark.ex3_1)])  # "fast": no meta_loss
def test_running_statistics_of_batch_norm_are_never_updated(method):
    model, tasks = batch_norm_net(), vector_tasks()
    before = snapshot(model)
    theta = get_params(model)
    theta_dict = dict(theta)
    task_copies = [t.clone() for t in tasks]
    adapt(model, theta, tasks.x_support[0], tasks.y_support[0], cross_entropy, 0.5, 2)
    outer_step(model, theta, tasks, torch.optim.SGD(theta.values(), lr=0.1), cross_entropy, 0.5, 1,
               method=method, metrics_before=True)
    assert_unchanged(model, before, "adapt and outer_step")
    assert list(theta) == list(theta_dict) and all(theta[n] is theta_dict[n] for n in theta), (
        "the θ dict itself must keep its entries")
    assert all(torch.equal(a, b) for a, b in zip(tasks, task_copies)), "the tasks must be unchanged"


# --- mistakes that now give clear errors, or just work -------------------------------------------

@pytest.mark.ex2_1
def test_adapting_inside_no_grad_says_why_it_cannot_work():
    model, task = mlp(), vector_tasks().task(0)
    theta = get_params(model)
    with torch.no_grad(), pytest.raises(ValueError, match=r"under torch.no_grad\(\)"):
        adapt(model, theta, task.x_support, task.y_support, cross_entropy, 0.5, 1)


@pytest.mark.ex2_1
def test_weights_loaded_without_requires_grad_adapt_every_tensor():
    model, task = mlp(), vector_tasks().task(0)
    theta = get_params(model)
    loaded = {n: p.detach().clone() for n, p in theta.items()}  # as torch.load gives them
    phi_loaded = adapt(model, loaded, task.x_support, task.y_support, cross_entropy, 0.5, 2)
    phi = adapt(model, theta, task.x_support, task.y_support, cross_entropy, 0.5, 2)
    assert relative_error(phi_loaded.values(), phi.values()) < 1e-14


@pytest.mark.ex2_1
@pytest.mark.ex3_1
@pytest.mark.parametrize("loss_name", ["F.cross_entropy", "nn.CrossEntropyLoss()"])
def test_pytorchs_own_losses_give_the_same_meta_gradient_fast_and_loop(loss_name):
    # 3-way 1-shot: S = C = 3, so F.cross_entropy on (T, S, C) would read S as classes, silently.
    loss_fn = {"F.cross_entropy": torch.nn.functional.cross_entropy,
               "nn.CrossEntropyLoss()": nn.CrossEntropyLoss()}[loss_name]
    model, tasks = tiny_conv(n_way=3), image_tasks(n_way=3, k_shot=1, n_query=1)
    theta = get_params(model)
    ours = loop_and_fast_gradients(model, theta, tasks, cross_entropy, 0.4, 1)
    theirs = loop_and_fast_gradients(model, theta, tasks, loss_fn, 0.4, 1)
    assert torch.allclose(theirs[3], ours[0], rtol=1e-12, atol=0)
    assert relative_error(theirs[5], ours[2]) < 1e-10


@pytest.mark.ex2_1
def test_mse_loss_of_pytorch_gives_each_task_its_own_step():
    model, tasks = tiny_mlp(), regression_tasks(num_tasks=3)
    theta = get_params(model)
    ours = meta_loss_batched(model, theta, tasks, mse, 0.05, 1)[0]
    theirs = meta_loss_batched(model, theta, tasks, nn.MSELoss(), 0.05, 1)[0]
    assert torch.allclose(theirs, ours, rtol=1e-12, atol=0)


@pytest.mark.ex2_1
def test_a_loss_that_does_not_reduce_over_examples_is_rejected():
    model, task = mlp(), vector_tasks().task(0)
    per_example = nn.CrossEntropyLoss(reduction="none")
    with pytest.raises(ValueError, match=r"the loss must be a scalar.*reduction='mean'"):
        adapt(model, get_params(model), task.x_support, task.y_support, per_example, 0.5, 1)


def test_model_parameters_instead_of_a_dict_is_a_type_error():
    model, task = mlp(), vector_tasks().task(0)
    with pytest.raises(TypeError, match=r"params must be a dict \{name: tensor\} such as get_params"):
        adapt(model, model.parameters(), task.x_support, task.y_support, cross_entropy, 0.5, 1)


@pytest.mark.parametrize("bad, error, message", [
    (float("nan"), ValueError, "inner_lr must be a finite number, got nan"),
    ("0.4", TypeError, r"inner_lr must be a number .*got '0.4' \(str\)"),
    (None, TypeError, r"inner_lr must be a number .*got None"),
    (-1, ValueError, "inner_lr must be a non-negative number, got -1"),
])
def test_an_inner_lr_that_is_not_a_finite_number_says_which_it_is(bad, error, message):
    model, task = mlp(), vector_tasks().task(0)
    with pytest.raises(error, match=message):
        adapt(model, get_params(model), task.x_support, task.y_support, cross_entropy, bad, 1)


def test_a_model_frozen_throughout_is_named_as_such(tmp_path):
    from mamlkit.run.checkpoints import save_weights
    from mamlkit.run.config import TrainConfig
    from mamlkit.run.train import Trainer

    model = mlp()
    model.requires_grad_(False)
    params, tasks = get_params(model), vector_tasks()
    optimizer = torch.optim.Adam(params.values())
    with pytest.raises(ValueError, match="every parameter of the model is frozen"):
        outer_step(model, params, tasks, optimizer, cross_entropy, 0.5, 1)

    class Tasks:
        def sample(self, n, generator):
            return vector_tasks(num_tasks=n)

    with pytest.raises(ValueError, match="every parameter of the model is frozen"):
        Trainer(TrainConfig(), tmp_path, {"train": Tasks(), "val": Tasks()}, model=model, loss_fn=cross_entropy)
    with pytest.raises(TypeError, match=r"params must be a dict \{name: tensor\}: pass get_params\(model\)"):
        save_weights(tmp_path / "x.pt", model, TrainConfig())


def test_a_state_dict_with_buffers_as_params_is_explained():
    model, task = batch_norm_net(), vector_tasks().task(0)
    with pytest.raises(ValueError, match=r"Buffers .* are not parameters.*get_params\(model\)"):
        adapt(model, model.state_dict(), task.x_support, task.y_support, cross_entropy, 0.5, 1)


def test_params_with_nothing_to_train_are_an_error_in_outer_step():
    model, tasks = tiny_mlp(), regression_tasks()
    detached = {n: p.detach() for n, p in model.named_parameters()}
    with pytest.raises(ValueError, match="no tensor of params requires grad"):
        outer_step(model, detached, tasks, torch.optim.Adam(detached.values()), mse, 0.05, 1)


def test_a_single_task_without_the_task_axis_is_explained():
    model, tasks = tiny_conv(), image_tasks()
    theta = get_params(model)
    one = tasks.task(0)
    with pytest.raises(ValueError, match=r"y_support has shape \(6,\).*task axis.*unsqueeze\(0\)"):
        outer_step(model, theta, one, torch.optim.Adam(theta.values()), cross_entropy, 0.4, 1)


def test_inputs_of_another_dtype_than_the_model_are_explained():
    model, tasks = tiny_mlp(dtype=torch.float32), regression_tasks()  # float64 inputs
    theta = get_params(model)
    with pytest.raises(ValueError, match=r"x_support is torch.float64 but params are torch.float32"):
        outer_step(model, theta, tasks, torch.optim.Adam(theta.values()), mse, 0.05, 1)


@pytest.mark.ex2_1
def test_tasks_as_a_plain_tuple_work():
    model, tasks = mlp(), vector_tasks()
    theta = get_params(model)
    metrics = outer_step(model, theta, tuple(tasks), torch.optim.SGD(theta.values(), lr=0.1), cross_entropy, 0.5, 1)
    assert set(metrics) == {"query_loss", "query_accuracy"}


def test_a_batch_size_of_zero_is_rejected_instead_of_looping_forever():
    model, pool = mlp(), vector_tasks()

    def sample_tasks(n):
        assert n > 0, "asked for no tasks: evaluate would loop forever"
        return pool

    with pytest.raises(ValueError, match="batch_size must be an integer, at least 1, got 0"):
        evaluate(model, get_params(model), sample_tasks, cross_entropy, 0.5, 1, num_tasks=3, batch_size=0)


def test_a_sampler_object_instead_of_a_function_is_explained():
    model = mlp()

    class Sampler:
        def sample(self, n, generator):
            return vector_tasks(n)

    with pytest.raises(TypeError, match=r"sample_tasks must be a function.*lambda n: sampler.sample"):
        evaluate(model, get_params(model), Sampler(), cross_entropy, 0.5, 1, num_tasks=3)


def test_a_negative_number_of_evaluation_steps_is_rejected():
    model = mlp()
    with pytest.raises(ValueError, match="max_steps must be a non-negative integer, got -1"):
        adaptation_curve(model, get_params(model), vector_tasks(), cross_entropy, 0.5, -1)


# --- docs/own_models.md's example runs as printed ----------------------------------------------

def docs_block(name: str) -> str:
    """The first Python block of ``docs/<name>``."""
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "docs" / name).read_text(encoding="utf-8")
    return text.split("```python\n", 1)[1].split("```", 1)[0]


@pytest.mark.ex2_1
@pytest.mark.ex3_2
@pytest.mark.ex4_2
def test_the_readme_example_meta_trains_a_sequential_with_a_frozen_layer(capsys):
    namespace = {}
    exec(compile(docs_block("own_models.md"), "docs/own_models.md", "exec"), namespace)
    model, params = namespace["model"], namespace["params"]
    assert "accuracy after one step" in capsys.readouterr().out
    assert torch.equal(params["0.weight"], model[0].weight), "the frozen layer must not move"
    # The module is untouched, so get_params(model) is θ before meta-training: compare both on
    # the same new tasks.
    sample_blob_tasks = namespace["sample_blob_tasks"]

    def accuracy_on_new_tasks(theta):
        generator = torch.Generator().manual_seed(7)
        return evaluate(model, theta, lambda n: sample_blob_tasks(n, 3, 1, 5, generator=generator),
                        cross_entropy, 0.4, 1, num_tasks=300)["mean"]

    untrained, trained = accuracy_on_new_tasks(get_params(model)), accuracy_on_new_tasks(params)
    assert trained > untrained + 0.05, f"MAML should beat θ untrained after one step: {trained:.3f} vs {untrained:.3f}"
