"""The fast meta-step is the per-task loop's twin: same losses, same gradients."""

import pytest
import torch
from helpers import flat, image_tasks, regression_tasks, relative_error, tiny_conv, tiny_mlp

from mamlkit.fast import adapt_tasks, meta_loss_batched
from mamlkit.functional import get_params
from mamlkit.inner_loop import adapt, init_inner_lrs
from mamlkit.losses import cross_entropy, mse
from mamlkit.models import Conv4
from mamlkit.outer_loop import meta_loss, outer_step

CASES = {
    "mlp": (lambda: tiny_mlp(), mse, lambda: regression_tasks(num_tasks=3), 0.05),
    "conv_bn": (lambda: tiny_conv(), cross_entropy, lambda: image_tasks(num_tasks=3), 0.4),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_forward_tasks_equals_the_module_per_task(case):
    make_model, _, make_tasks, _ = CASES[case]
    model, tasks = make_model(), make_tasks()
    params = get_params(model)
    per_task = {n: torch.stack([p * (1 + 0.1 * i) for i in range(tasks.num_tasks)]) for n, p in params.items()}
    batched = model.forward_tasks(per_task, tasks.x_query)
    for i in range(tasks.num_tasks):
        alone = torch.func.functional_call(model, {n: p[i] for n, p in per_task.items()}, (tasks.x_query[i],))
        assert torch.allclose(batched[i], alone, atol=1e-12)


@pytest.mark.ex2_1
@pytest.mark.ex3_1
@pytest.mark.parametrize("learned", [False, pytest.param(True, marks=pytest.mark.ex3_3)])
@pytest.mark.parametrize("first_order", [False, pytest.param(True, marks=pytest.mark.ex3_2)])
@pytest.mark.parametrize("inner_steps", [1, 3])
@pytest.mark.parametrize("case", sorted(CASES))
def test_fast_meta_gradient_equals_the_per_task_loop(case, inner_steps, first_order, learned):
    make_model, loss_fn, make_tasks, inner_lr = CASES[case]
    model, tasks = make_model(), make_tasks()
    params = get_params(model)
    lr = init_inner_lrs(params, inner_lr) if learned else inner_lr
    wrt = list(params.values()) + (list(lr.values()) if learned else [])
    loop_loss, loop_out = meta_loss(model, params, tasks, loss_fn, lr, inner_steps, first_order)
    fast_loss, fast_out = meta_loss_batched(model, params, tasks, loss_fn, lr, inner_steps, first_order)
    assert torch.allclose(fast_loss, loop_loss, atol=1e-12), (
        f"the per-task meta_loss gave {loop_loss.item():.10g}, the all-tasks-at-once version "
        f"{fast_loss.item():.10g}: both use gradient_step, so look at what meta_loss does per task"
    )
    assert torch.allclose(fast_out, loop_out, atol=1e-10), "meta_loss's query outputs differ from the fast path's"
    grad_loop = torch.autograd.grad(loop_loss, wrt)
    grad_fast = torch.autograd.grad(fast_loss, wrt)
    error = relative_error(grad_fast, grad_loop)
    assert error < 1e-10, f"meta-gradients of the per-task loop and the fast path differ (relative error {error:.1e})"


@pytest.mark.ex2_1
def test_fast_meta_gradient_matches_finite_differences():
    model, tasks = tiny_conv(), image_tasks(num_tasks=2)
    params = get_params(model)
    names, shapes, sizes = list(params), [p.shape for p in params.values()], [p.numel() for p in params.values()]

    def f(theta_flat):
        theta = {n: t.reshape(s) for n, t, s in zip(names, torch.split(theta_flat, sizes), shapes)}
        return meta_loss_batched(model, theta, tasks, cross_entropy, 0.4, 2)[0]

    theta = flat(params.values()).detach().clone().requires_grad_(True)
    assert torch.autograd.gradcheck(f, (theta,), eps=1e-6, atol=1e-5, rtol=1e-4)


@pytest.mark.ex2_1
@pytest.mark.ex3_1
def test_float32_fast_path_agrees_with_the_loop_on_the_paper_network():
    """The full-size conv4, float32, as in training: agreement to float32 rounding."""
    model = Conv4(5, generator=torch.Generator().manual_seed(0))
    tasks = image_tasks(num_tasks=4, n_way=5, k_shot=1, n_query=2, size=28, dtype=torch.float32)
    params = get_params(model)
    loop = torch.autograd.grad(meta_loss(model, params, tasks, cross_entropy, 0.4, 2)[0], list(params.values()))
    fast = torch.autograd.grad(meta_loss_batched(model, params, tasks, cross_entropy, 0.4, 2)[0], list(params.values()))
    error = relative_error(fast, loop)
    assert error < 1e-4, f"float32 meta-gradients of the loop and the fast path differ by {error:.1e} (relative)"


@pytest.mark.ex2_1
def test_adapt_tasks_gives_each_task_its_own_phi():
    model, tasks = tiny_conv(), image_tasks(num_tasks=3)
    params = get_params(model)
    batched = adapt_tasks(model, params, tasks.x_support, tasks.y_support, cross_entropy, 0.4, 2)
    for i in range(3):
        alone = adapt(model, params, tasks.x_support[i], tasks.y_support[i], cross_entropy, 0.4, 2)
        error = relative_error([batched[n][i] for n in alone], alone.values())
        assert error < 1e-12, f"task {i}: adapt_tasks and adapt give different φ (relative error {error:.1e})"


@pytest.mark.ex2_1
@pytest.mark.ex3_1  # the reference update uses method="loop", the per-task meta_loss
@pytest.mark.parametrize("method,chunk", [("fast", None), ("fast", 2), ("loop", None)])
def test_outer_step_is_the_same_update_whatever_the_method(method, chunk):
    model, tasks = tiny_conv(), image_tasks(num_tasks=5)
    reference = get_params(model)
    opt = torch.optim.SGD(list(reference.values()), lr=0.1)
    outer_step(model, reference, tasks, opt, cross_entropy, 0.4, 1, method="loop")
    params = get_params(model)
    opt = torch.optim.SGD(list(params.values()), lr=0.1)
    metrics = outer_step(model, params, tasks, opt, cross_entropy, 0.4, 1, method=method,
                         task_chunk_size=chunk, metrics_before=True)
    error = relative_error(params.values(), reference.values())
    assert error < 1e-12, f"outer_step(method={method!r}, task_chunk_size={chunk}) moved θ differently from the per-task loop (relative error {error:.1e})"
    assert set(metrics) == {"query_loss", "query_accuracy", "query_before_loss", "query_before_accuracy"}


@pytest.mark.ex2_1
def test_seeded_training_repeats_exactly():
    def run():
        model = Conv4(3, channels=4, generator=torch.Generator().manual_seed(1)).double()
        params = get_params(model)
        opt = torch.optim.Adam(list(params.values()), lr=1e-2)
        for step in range(3):
            outer_step(model, params, image_tasks(num_tasks=2, seed=step), opt, cross_entropy, 0.4, 1)
        return params
    assert all(torch.equal(a, b) for a, b in zip(run().values(), run().values()))


def test_bad_outer_step_arguments_are_rejected():
    model, tasks = tiny_conv(), image_tasks()
    params = get_params(model)
    opt = torch.optim.SGD(list(params.values()), lr=0.1)
    with pytest.raises(ValueError, match="method must be 'fast' or 'loop'"):
        outer_step(model, params, tasks, opt, cross_entropy, 0.4, 1, method="vmap")
    with pytest.raises(ValueError, match="task_chunk_size must be a positive integer"):
        outer_step(model, params, tasks, opt, cross_entropy, 0.4, 1, task_chunk_size=0)
    short = tasks._replace(y_query=tasks.y_query[:1])
    with pytest.raises(ValueError, match="same number of tasks"):
        outer_step(model, params, short, opt, cross_entropy, 0.4, 1)
    with pytest.raises(ValueError, match="x_query has 6 examples but y_query has 5"):
        outer_step(model, params, tasks._replace(y_query=tasks.y_query[:, :5]), opt, cross_entropy, 0.4, 1)


@pytest.mark.ex2_1
def test_metrics_before_adaptation_describe_the_same_theta_as_after():
    model, tasks = tiny_conv(), image_tasks(num_tasks=3)
    params = get_params(model)
    with torch.no_grad():
        theta_outputs = torch.stack([torch.func.functional_call(model, params, (x,)) for x in tasks.x_query])
    expected = cross_entropy(theta_outputs, tasks.y_query).mean().item()
    opt = torch.optim.SGD(list(params.values()), lr=10.0)  # a large step: θ after it is far away
    metrics = outer_step(model, params, tasks, opt, cross_entropy, 0.4, 1, metrics_before=True)
    assert metrics["query_before_loss"] == pytest.approx(expected, rel=1e-12), (
        "the 'before adaptation' loss must be that of θ before this step's update, the θ the "
        "'after adaptation' numbers were adapted from"
    )


def test_reset_parameters_is_lecun_uniform_as_its_docstring_says():
    from mamlkit.models import reset_parameters

    model = Conv4(5, generator=torch.Generator().manual_seed(0))
    weight = model.blocks[1].conv.weight  # fan_in = 64 · 3 · 3 = 576
    fan_in = weight[0].numel()
    assert weight.abs().max() <= (3 / fan_in) ** 0.5
    assert weight.var().item() == pytest.approx(1 / fan_in, rel=0.05), "LeCun-uniform: variance 1/fan_in"
    pytorch_default = torch.nn.Conv2d(64, 64, 3).weight
    assert pytorch_default.var().item() == pytest.approx(1 / (3 * fan_in), rel=0.05), "PyTorch's is a third of it"
    doc = reset_parameters.__doc__
    assert "LeCun-uniform" in doc and "1/n" in doc and "as PyTorch's default" not in doc


def test_task_pieces_are_as_few_balanced_chunks_as_the_chunk_size_allows():
    from mamlkit.outer_loop import task_pieces

    sizes = lambda *args: [s.stop - s.start for s in task_pieces(*args)]  # noqa: E731
    assert sizes(32, 8) == [8, 8, 8, 8]
    assert sizes(8, 8) == [8]
    assert sizes(10, 8) == [5, 5], "balanced, so that two threads finish together"
    assert sizes(7, 3) == [3, 2, 2]
    assert sizes(3, 1) == [1, 1, 1]
    for args in [(32, 8), (7, 3), (1, 1), (16, 5)]:
        pieces = task_pieces(*args)
        assert pieces[0].start == 0 and pieces[-1].stop == args[0]
        assert all(a.stop == b.start for a, b in zip(pieces, pieces[1:])), "pieces must tile the tasks in order"


@pytest.mark.ex2_1
@pytest.mark.ex3_1  # the reference update uses method="loop", the per-task meta_loss
@pytest.mark.parametrize("learned", [False, pytest.param(True, marks=pytest.mark.ex3_3)])
@pytest.mark.parametrize("inner_steps", [1, 3])
def test_outer_step_in_threads_is_the_per_task_update(inner_steps, learned):
    """Tasks adapted in two threads: the same update as the plain loop, learned rates included."""
    def step(method, threads):
        model, tasks = tiny_conv(), image_tasks(num_tasks=5)
        params = get_params(model)
        lr = init_inner_lrs(params, 0.3) if learned else 0.3
        opt = torch.optim.SGD(list(params.values()) + (list(lr.values()) if learned else []), lr=0.1)
        outer_step(model, params, tasks, opt, cross_entropy, lr, inner_steps, method=method,
                   task_chunk_size=2, task_threads=threads)
        return list(params.values()) + (list(lr.values()) if learned else [])

    reference = step("loop", 1)
    threads_before = torch.get_num_threads()
    threaded = step("fast", 2)
    assert torch.get_num_threads() == threads_before, "outer_step must restore torch's thread count"
    error = relative_error(threaded, reference)
    assert error < 1e-12, f"outer_step with task_threads=2 moved θ differently from the per-task loop ({error:.1e})"
    assert all(torch.equal(a, b) for a, b in zip(threaded, step("fast", 2))), "threads must not change the result"


@pytest.mark.ex2_1
def test_outer_step_in_threads_refuses_a_non_finite_loss_and_leaves_theta():
    from mamlkit.outer_loop import NonFiniteError

    model, tasks = tiny_conv(), image_tasks(num_tasks=4)
    params = get_params(model)
    start = {n: p.detach().clone() for n, p in params.items()}
    opt = torch.optim.SGD(list(params.values()), lr=0.1)

    with pytest.raises(NonFiniteError, match="refused the update"):
        outer_step(model, params, tasks, opt, lambda o, t: cross_entropy(o, t) * float("nan"), 0.4, 1,
                   task_chunk_size=1, task_threads=2)
    assert all(torch.equal(params[n], start[n]) for n in params)
    assert all(p.grad is None for p in params.values())
    with pytest.raises(ValueError, match="task_threads must be a positive integer or None"):
        outer_step(model, params, tasks, opt, cross_entropy, 0.4, 1, task_threads=0)


@pytest.mark.parametrize("algorithm", [
    pytest.param("maml", marks=pytest.mark.ex2_1),
    pytest.param("anil", marks=[pytest.mark.ex5_2, pytest.mark.ex2_1]),
    pytest.param("metasgd", marks=pytest.mark.ex2_1),
    pytest.param("protonet", marks=pytest.mark.ex5_1),
])
def test_every_algorithm_takes_the_same_step_in_threads(algorithm):
    """The training step (mamlkit.methods.outer_step) in two threads: the one-thread update."""
    from mamlkit.methods import build_method
    from mamlkit.methods import outer_step as method_outer_step

    def step(threads):
        model, tasks = tiny_conv(), image_tasks(num_tasks=5)
        params = get_params(model)
        method = build_method(algorithm, params, inner_lr=0.3, inner_steps=2)
        trained = list(params.values()) + list(method.trainable().values())
        opt = torch.optim.SGD(trained, lr=0.1)
        method_outer_step(method, model, params, tasks, opt, task_chunk_size=2, task_threads=threads)
        return trained

    error = relative_error(step(2), step(1))
    assert error < 1e-12, f"{algorithm}: two threads moved θ differently from one ({error:.1e})"


@pytest.mark.parametrize("context", [torch.no_grad, torch.inference_mode])
def test_outer_step_under_no_grad_says_so(context):
    from mamlkit.methods import build_method
    from mamlkit.methods import outer_step as method_outer_step

    model, tasks = tiny_conv(), image_tasks(num_tasks=2)
    params = get_params(model)
    opt = torch.optim.SGD(list(params.values()), lr=0.1)
    with context(), pytest.raises(ValueError, match=r"outer_step is running under torch.no_grad\(\)"):
        outer_step(model, params, tasks, opt, cross_entropy, 0.4, 1)
    with context(), pytest.raises(ValueError, match=r"outer_step is running under torch.no_grad\(\)"):
        method_outer_step(build_method("maml", params), model, params, tasks, opt)


@pytest.mark.ex2_1
def test_autocast_reaches_every_task_threads_or_not():
    """torch.autocast is thread-local: under it the groups run one after another, as autocast asks."""
    def step(threads):
        model, tasks = tiny_conv(dtype=torch.float32), image_tasks(num_tasks=4, dtype=torch.float32)
        params = get_params(model)
        opt = torch.optim.SGD(list(params.values()), lr=0.1)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            outer_step(model, params, tasks, opt, cross_entropy, 0.4, 1, task_chunk_size=2, task_threads=threads)
        return list(params.values())

    assert all(torch.equal(a, b) for a, b in zip(step(2), step(1)))
