"""The algorithms of mamlkit.methods: each against an oracle, an invariant or finite differences."""

import pytest
import torch
from helpers import image_tasks, relative_error, tiny_conv

from mamlkit.functional import get_params
from mamlkit.losses import cross_entropy
from mamlkit.methods import ALGORITHMS, ANIL, MAML, MetaSGD, ProtoNet, build_method, outer_step
from mamlkit.methods.anil import adapt_head
from mamlkit.methods.embedding import embed, embed_tasks, expand_tasks, split_head
from mamlkit.methods.protonet import prototype_logits, prototypes
from mamlkit.outer_loop import outer_step as maml_outer_step
from mamlkit.tasks import TaskBatch

# The exercises each case runs through, so that in the student edition every test stops at the
# stub of one of its own exercises: the second-order step (2.1), the per-task meta_loss (3.1),
# first-order gradients (3.2, also used by every evaluation), learned per-tensor rates (3.3),
# ProtoNet (5.1) and ANIL's head-only loop (5.2).
EX = {
    ("maml", False): ("ex2_1", "ex3_1"), ("maml", True): ("ex2_1", "ex3_1", "ex3_2"),
    ("metasgd", False): ("ex2_1", "ex3_1"), ("metasgd", True): ("ex2_1", "ex3_1", "ex3_2"),
    ("anil", False): ("ex5_2", "ex2_1"), ("anil", True): ("ex5_2", "ex3_2"),
    ("protonet", False): ("ex5_1",),
    ("reptile", False): ("ex2_1", "ex3_2"),
    ("protomaml", False): ("ex5_1", "ex2_1"), ("protomaml", True): ("ex5_1", "ex3_2"),
}


def marked(name, first_order=False, extra=(), drop=()):
    """``name`` as a pytest parameter carrying the markers of the exercises it runs through."""
    ex = [m for m in EX[name, first_order] + tuple(extra) if m not in drop]
    return pytest.param(name, marks=[getattr(pytest.mark, m) for m in ex])


def setup(num_tasks=3, **kwargs):
    model = tiny_conv()
    return model, get_params(model), image_tasks(num_tasks=num_tasks, **kwargs)


def make(name, params, inner_steps=1, first_order=False, learn=False):
    return build_method(name, params, 0.4, inner_steps, first_order, learn)


def meta_gradient(method, model, params, tasks, implementation):
    wrt = list(params.values()) + list(method.trainable().values())
    loss, outputs = method.meta_loss(model, params, tasks, implementation)
    return loss, outputs, torch.autograd.grad(loss, wrt, allow_unused=True, materialize_grads=True)


# -- the embedding path ----------------------------------------------------------------
def test_embeddings_are_the_body_features_per_task_and_batched():
    model, params, tasks = setup()
    blocks = {n[len("blocks."):]: p for n, p in params.items() if n.startswith("blocks.")}
    for i in range(tasks.num_tasks):
        expected = torch.func.functional_call(model.blocks, blocks, (tasks.x_support[i],)).mean(dim=(2, 3))
        assert torch.allclose(embed(model, params, tasks.x_support[i]), expected, atol=1e-12), \
            "embed() is not the body's features (mean over space after the last block)"
    batched = embed_tasks(model, expand_tasks(params, tasks.num_tasks), tasks.x_support)
    assert torch.allclose(batched[1], embed(model, params, tasks.x_support[1]), atol=1e-12)


def test_a_model_without_a_head_gets_a_clear_error():
    from helpers import regression_tasks, tiny_mlp

    model = tiny_mlp()
    with pytest.raises(TypeError, match="linear layer named 'head'"):
        ANIL().meta_loss(model, get_params(model), regression_tasks())


# -- every method: the fast path is the per-task loop ----------------------------------
@pytest.mark.parametrize("name,first_order", [
    pytest.param(name, fo, marks=[getattr(pytest.mark, m) for m in EX[name, fo]])
    for name, fo in sorted(EX)])
def test_fast_path_equals_the_per_task_loop(name, first_order):
    model, params, tasks = setup()
    method = make(name, params, inner_steps=2, first_order=first_order)
    loop_loss, loop_out, loop_grad = meta_gradient(method, model, params, tasks, "loop")
    fast_loss, fast_out, fast_grad = meta_gradient(method, model, params, tasks, "fast")
    assert torch.allclose(fast_loss, loop_loss, atol=1e-12), f"{name}: fast loss {fast_loss.item()} != loop {loop_loss.item()}"
    assert torch.allclose(fast_out, loop_out, atol=1e-10), f"{name}: query outputs of fast and loop differ"
    error = relative_error(fast_grad, loop_grad)
    assert error < 1e-10, f"{name}: meta-gradients of the fast path and the per-task loop differ ({error:.1e})"


# "fast" runs no per-task meta_loss (3.1), and Reptile's fast steps are first-order (no 2.1).
@pytest.mark.parametrize("name", [marked(name, drop=("ex3_1",) + (("ex2_1",) if name == "reptile" else ()))
                                  for name in sorted(ALGORITHMS)])
def test_outer_step_moves_theta_and_reports_metrics(name):
    model, params, tasks = setup()
    method = make(name, params)
    before = {n: p.detach().clone() for n, p in params.items()}
    opt = torch.optim.SGD(list(params.values()) + list(method.trainable().values()), lr=0.1)
    metrics = outer_step(method, model, params, tasks, opt, "fast", task_chunk_size=2, metrics_before=True)
    assert set(metrics) >= {"query_loss", "query_accuracy"}
    assert any(not torch.equal(before[n], params[n]) for n in params), f"{name}: outer_step did not move θ"


@pytest.mark.ex2_1
def test_generic_outer_step_equals_the_maml_outer_step():
    model, reference, tasks = setup()
    params = {n: p.detach().clone().requires_grad_(True) for n, p in reference.items()}
    maml_outer_step(model, reference, tasks, torch.optim.SGD(reference.values(), lr=0.1), cross_entropy, 0.4, 1)
    outer_step(make("maml", params), model, params, tasks, torch.optim.SGD(params.values(), lr=0.1), "fast", 2)
    assert relative_error(params.values(), reference.values()) < 1e-12


# -- ANIL ------------------------------------------------------------------------------
@pytest.mark.ex5_2
@pytest.mark.ex2_1
@pytest.mark.ex3_1
@pytest.mark.parametrize("first_order", [False, pytest.param(True, marks=pytest.mark.ex3_2)])
def test_anil_equals_maml_with_the_body_inner_rate_at_zero(first_order):
    model, params, tasks = setup()
    anil = ANIL(0.4, 2, first_order)
    rates = {n: torch.tensor(0.4 if n.startswith("head.") else 0.0, dtype=torch.float64, requires_grad=True)
             for n in params}
    maml = MAML(0.4, 2, first_order, learned_rates=rates)
    a_loss, a_out, a_grad = meta_gradient(anil, model, params, tasks, "loop")
    m_loss, m_out, m_grad = meta_gradient(maml, model, params, tasks, "loop")
    assert torch.allclose(a_loss, m_loss, atol=1e-12), (
        f"ANIL's meta-loss {a_loss.item():.10g} should equal MAML's with the body's inner rate at 0 "
        f"({m_loss.item():.10g}): adapt_head must take plain gradient steps on the head alone"
    )
    error = relative_error(a_grad, m_grad[:len(a_grad)])
    assert error < 1e-10, f"ANIL's meta-gradient differs from MAML's with body rate 0 ({error:.1e})"


@pytest.mark.ex5_2
@pytest.mark.ex2_1
@pytest.mark.ex3_3  # learned per-tensor rates for the head: init_inner_lrs
def test_anil_meta_gradient_matches_finite_differences():
    model = tiny_conv(n_way=2, channels=2)
    params, tasks = get_params(model), image_tasks(num_tasks=2, n_way=2)
    method = ANIL(0.4, 2, learned_rates=ANIL.init_rates(params, 0.4, True))
    names = list(params)
    rate_names = list(method.learned_rates)

    def loss(*tensors):
        p = dict(zip(names, tensors[:len(names)]))
        method.learned_rates = dict(zip(rate_names, tensors[len(names):]))
        return method.meta_loss(model, p, tasks, "fast")[0]

    inputs = tuple(params.values()) + tuple(method.learned_rates.values())
    assert torch.autograd.gradcheck(loss, inputs, eps=1e-6, atol=1e-5, fast_mode=True)


@pytest.mark.ex5_2
@pytest.mark.ex2_1
def test_adapt_head_takes_gradient_steps_on_the_head_only():
    model, params, tasks = setup()
    _, head = split_head(params)
    features = embed(model, params, tasks.x_support[0]).detach()
    adapted = adapt_head(head, features, tasks.y_support[0], cross_entropy, 0.4, 1)
    grads = torch.autograd.grad(cross_entropy(features @ head["head.weight"].T + head["head.bias"],
                                              tasks.y_support[0]), list(head.values()))
    for (name, p), g in zip(head.items(), grads):
        assert torch.allclose(adapted[name], p - 0.4 * g, atol=1e-12), (
            f"one step of adapt_head should give {name} − α·∇ (the head's loss on the support features)"
        )
    assert set(adapted) == {"head.weight", "head.bias"}, "adapt_head must return the head alone"
    zero = adapt_head(head, features, tasks.y_support[0], cross_entropy, 0.4, 0)
    assert all(torch.equal(zero[n], head[n]) for n in head), "inner_steps = 0 must return the head itself"


# -- Meta-SGD --------------------------------------------------------------------------
@pytest.mark.ex2_1
def test_metasgd_with_every_rate_at_alpha_equals_maml():
    model, params, tasks = setup()
    metasgd = make("metasgd", params, inner_steps=2)
    assert all(r.shape == params[n].shape and torch.all(r == 0.4) for n, r in metasgd.learned_rates.items())
    s_loss, _, s_grad = meta_gradient(metasgd, model, params, tasks, "fast")
    m_loss, _, m_grad = meta_gradient(make("maml", params, inner_steps=2), model, params, tasks, "fast")
    assert torch.allclose(s_loss, m_loss, atol=1e-12)
    assert relative_error(s_grad[:len(params)], m_grad) < 1e-10


@pytest.mark.ex2_1
def test_metasgd_rates_act_per_element():
    model, params, tasks = setup()
    method = make("metasgd", params)
    with torch.no_grad():
        method.learned_rates["head.bias"][0] = 0.0  # freeze one element of the head's bias
    from mamlkit.inner_loop import adapt
    adapted = adapt(model, params, tasks.x_support[0], tasks.y_support[0], cross_entropy, method.inner_lr, 1)
    assert adapted["head.bias"][0] == params["head.bias"][0]
    assert not torch.equal(adapted["head.bias"][1:], params["head.bias"][1:])


@pytest.mark.ex2_1
def test_metasgd_meta_gradient_matches_finite_differences():
    model = tiny_conv(n_way=2, channels=2)
    params, tasks = get_params(model), image_tasks(num_tasks=2, n_way=2)
    method = make("metasgd", params)
    with torch.no_grad():  # rates that differ element by element
        for rate in method.learned_rates.values():
            rate.uniform_(0.1, 0.5, generator=torch.Generator().manual_seed(rate.numel()))
    names, rate_names = list(params), list(method.learned_rates)

    def loss(*tensors):
        p = dict(zip(names, tensors[:len(names)]))
        method.learned_rates = dict(zip(rate_names, tensors[len(names):]))
        return method.meta_loss(model, p, tasks, "fast")[0]

    inputs = tuple(params.values()) + tuple(method.learned_rates.values())
    assert torch.autograd.gradcheck(loss, inputs, eps=1e-6, atol=1e-5, fast_mode=True)


# -- ProtoNet --------------------------------------------------------------------------
@pytest.mark.ex5_1
def test_prototypes_are_class_means():
    g = torch.Generator().manual_seed(0)
    features = torch.randn(6, 4, generator=g, dtype=torch.float64)
    labels = torch.tensor([2, 0, 1, 0, 2, 2])
    centres = prototypes(features, labels, 3)
    expected = torch.stack([features[labels == k].mean(0) for k in range(3)])
    assert centres.shape == (3, 4), f"prototypes should be (n_way, C) = (3, 4), got {tuple(centres.shape)}"
    assert torch.allclose(centres, expected, atol=1e-12), "prototype k should be the mean of the support features labelled k"


@pytest.mark.ex5_1
def test_prototype_logits_are_negative_squared_distances():
    g = torch.Generator().manual_seed(1)
    query, centres = torch.randn(2, 5, 4, generator=g), torch.randn(2, 3, 4, generator=g)
    logits = prototype_logits(query, centres)
    expected = torch.tensor([[[-sum((query[t, q, c] - centres[t, k, c]) ** 2 for c in range(4))
                               for k in range(3)] for q in range(5)] for t in range(2)])
    assert logits.shape == (2, 5, 3), f"logits should be (T, Q, n_way) = (2, 5, 3), got {tuple(logits.shape)}"
    assert torch.allclose(logits, expected, atol=1e-5), "logit k should be −‖f(x) − c_k‖², the negative *squared* distance"


@pytest.mark.ex5_1
def test_protonet_loss_is_the_explicit_formula():
    model, params, tasks = setup()
    loss, _ = ProtoNet().meta_loss(model, params, tasks, "fast")
    total = 0.0
    for t in range(tasks.num_tasks):
        fs, fq = embed(model, params, tasks.x_support[t]), embed(model, params, tasks.x_query[t])
        centres = [fs[tasks.y_support[t] == k].mean(0) for k in range(3)]
        nll = 0.0
        for q in range(fq.shape[0]):
            scores = torch.stack([-((fq[q] - c) ** 2).sum() for c in centres])
            nll = nll - (scores[tasks.y_query[t, q]] - torch.logsumexp(scores, 0))
        total = total + nll / fq.shape[0]
    assert torch.allclose(loss, total / tasks.num_tasks, atol=1e-12), (
        "ProtoNet's loss should be the query cross-entropy of the logits −‖f(x) − c_k‖²"
    )


def test_a_class_without_support_examples_is_a_clear_error():
    with pytest.raises(ValueError, match="at least one support example"):
        prototypes(torch.zeros(2, 3), torch.tensor([0, 0]), 2)


# -- building, errors, evaluation ------------------------------------------------------
def test_metasgd_without_rates_is_a_clear_error():
    with pytest.raises(ValueError, match="MetaSGD needs learned_rates"):
        MetaSGD(0.4, 1)


def test_unknown_algorithm_is_a_clear_error():
    with pytest.raises(ValueError, match="algorithm must be one of"):
        build_method("no-such-method", {"head.weight": torch.zeros(2, 2), "head.bias": torch.zeros(2)})


def test_unknown_implementation_is_a_clear_error():
    model, params, tasks = setup()
    with pytest.raises(ValueError, match="implementation must be 'fast'"):
        make("anil", params).meta_loss(model, params, tasks, "vmap")


@pytest.mark.parametrize("name", [marked(name, extra=() if name == "protonet" else ("ex3_2",)) for name in sorted(ALGORITHMS)])
def test_adaptation_curve_agrees_with_meta_training_outputs_and_under_inference_mode(name):
    """At step inner_steps, the evaluation's accuracy is that of the training path's outputs;
    called under ``torch.inference_mode()``, on tensors made there, the curve is the same."""
    from mamlkit.losses import accuracy

    model, params, tasks = setup()
    method = make(name, params, inner_steps=2)
    _, outputs = method.meta_loss(model, params, tasks, "loop")
    curve = method.adaptation_curve(model, params, tasks, 2)
    assert torch.allclose(curve[-1], accuracy(outputs, tasks.y_query))
    assert curve.shape == ((1 if name == "protonet" else 3), tasks.num_tasks)
    with torch.inference_mode():
        inference_params = {n: p.detach().clone() for n, p in params.items()}
        inference_tasks = TaskBatch(*(t.clone() for t in tasks))
        assert inference_tasks.x_support.is_inference()
        assert torch.equal(method.adaptation_curve(model, inference_params, inference_tasks, 2), curve)
