"""A learner's own network, round 3 (issue 23): each case is right, or refused in one line.

Every case here once gave a silently wrong number, a silently changed module, or a raw error
from deep inside torch. The rule these tests hold: the learner's module is never changed,
nothing is silently wrong, and every method works on every module.
"""

import dataclasses
import math

import pytest
import torch
from helpers import tiny_conv
from torch import nn

from mamlkit.data.toy_classification import sample_blob_tasks
from mamlkit.evaluate import adaptation_curve, evaluate, fewer_ways
from mamlkit.fast import meta_loss_batched
from mamlkit.functional import SelectOutput, forward, get_params
from mamlkit.inner_loop import adapt
from mamlkit.losses import cross_entropy, mse
from mamlkit.methods import build_method
from mamlkit.methods import outer_step as method_outer_step
from mamlkit.models import Conv4
from mamlkit.outer_loop import meta_loss, outer_step
from mamlkit.run.config import TrainConfig, meta_lr_at
from mamlkit.run.train import Trainer
from mamlkit.tasks import TaskBatch

ALL_METHODS = ("maml", "fomaml", "anil", "protonet", "metasgd")

# The exercises (mamlkit/classroom/exercises.py) whose code each case runs: 2.1 adapt and
# gradient_step, 3.1 meta_loss, 3.2 first-order gradients (evaluate's inner loop), 4.2 the
# confidence interval, 5.1 ProtoNet, 5.2 ANIL's head-only loop.
EX = {"2.1": pytest.mark.ex2_1, "3.1": pytest.mark.ex3_1, "3.2": pytest.mark.ex3_2,
      "4.2": pytest.mark.ex4_2, "5.1": pytest.mark.ex5_1, "5.2": pytest.mark.ex5_2}


def ran(value, *exercises):
    """A parameter of a test whose case runs the code of ``exercises``."""
    return pytest.param(value, marks=[EX[e] for e in exercises])


# The exercises each method's meta_loss, adaptation curve and evaluate run.
METHOD_EXERCISES = {"maml": ("2.1", "3.1", "3.2", "4.2"), "fomaml": ("2.1", "3.1", "3.2", "4.2"),
                    "metasgd": ("2.1", "3.1", "3.2", "4.2"), "anil": ("2.1", "3.2", "4.2", "5.2"),
                    "protonet": ("4.2", "5.1")}


def blob_tasks(num_tasks=3, n_way=3, seed=0, dtype=torch.float64) -> TaskBatch:
    tasks = sample_blob_tasks(num_tasks, n_way=n_way, k_shot=2, n_query=3,
                              generator=torch.Generator().manual_seed(seed))
    return TaskBatch(tasks.x_support.to(dtype), tasks.y_support, tasks.x_query.to(dtype), tasks.y_query)


class Blobs:
    """A task sampler for the trainer: 2-d blob tasks."""

    def __init__(self, n_way=3):
        self.n_way = n_way

    def sample(self, n, generator):
        return sample_blob_tasks(n, n_way=self.n_way, k_shot=2, n_query=3, generator=generator)


class Own(nn.Module):
    """A plain module with a linear ``head`` and no ``forward_tasks``."""

    def __init__(self, n_way=3, dropout=0.0, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.body = nn.Sequential(nn.Linear(2, 16), nn.Tanh(), nn.Dropout(dropout), nn.Linear(16, 8), nn.Tanh())
        self.head = nn.Linear(8, n_way)

    def forward(self, x):
        return self.head(self.body(x))


class Tied(nn.Module):
    """One linear layer registered under two names, used twice."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(4)
        self.a = nn.Linear(2, 2)
        self.b = self.a
        self.head = nn.Linear(2, 3)

    def forward(self, x):
        return self.head(torch.tanh(self.b(torch.tanh(self.a(x)))))


class TupleOut(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(5)
        self.body = nn.Linear(2, 8)
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        features = torch.tanh(self.body(x))
        return self.head(features), features


def snapshot(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def assert_module_intact(model, before, parameters_before):
    now = dict(model.named_parameters(remove_duplicate=False))
    assert set(now) == set(parameters_before), "parameters disappeared from the module"
    for name, p in now.items():
        assert isinstance(p, nn.Parameter) and p.is_leaf, f"{name} is no longer an nn.Parameter"
        assert p is parameters_before[name], f"{name} was replaced"
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def trainer_config(tmp_path=None, **changes) -> TrainConfig:
    config = TrainConfig(n_way=3, k_shot=2, n_query=3, meta_batch_size=4, inner_lr=0.4, inner_steps=1,
                         eval_inner_steps=1, meta_lr=1e-2, iterations=6, log_every=100, val_every=100,
                         val_tasks=8, checkpoint_every=100, seed=3, implementation="fast")
    return dataclasses.replace(config, **changes)


@pytest.fixture
def no_plots(monkeypatch):
    monkeypatch.setattr(Trainer, "plot", lambda self: None)


def method_of(name, params, **kwargs):
    algorithm, first_order = ("maml", True) if name == "fomaml" else (name, False)
    return build_method(algorithm, params, 0.4, 1, first_order, learn_inner_lrs=False, **kwargs)


# --- 1. a regression loss whose target shape would broadcast --------------------------------------

def regression_tasks():
    g = torch.Generator().manual_seed(0)
    x_s, x_q = torch.randn(2, 5, 1, generator=g, dtype=torch.float64), torch.randn(2, 4, 1, generator=g, dtype=torch.float64)
    return TaskBatch(x_s, torch.sin(x_s).squeeze(-1), x_q, torch.sin(x_q).squeeze(-1))  # targets (T, S)


@pytest.mark.ex2_1
@pytest.mark.ex3_1
@pytest.mark.parametrize("path", ["adapt", "loop", "fast", "outer_step", "evaluate"])
def test_a_loss_whose_targets_broadcast_against_the_outputs_is_refused(path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(1, 8), nn.Tanh(), nn.Linear(8, 1)).double()
    params, tasks, loss = get_params(model), regression_tasks(), nn.MSELoss()
    with pytest.raises(ValueError, match=r"targets of shape \(\d,\).*outputs of shape \(\d, 1\).*unsqueeze"):
        if path == "adapt":
            adapt(model, params, tasks.x_support[0], tasks.y_support[0], loss, 0.1, 1)
        elif path == "loop":
            meta_loss(model, params, tasks, loss, 0.1, 1)
        elif path == "fast":
            meta_loss_batched(model, params, tasks, loss, 0.1, 1)
        elif path == "outer_step":
            outer_step(model, params, tasks, torch.optim.Adam(params.values()), loss, 0.1, 1)
        else:
            evaluate(model, params, lambda n: tasks, loss, 0.1, 1, num_tasks=2, metric=mse)
    # Integer targets that would broadcast the same way are refused too.
    as_integers = tasks._replace(y_support=tasks.y_support.round().long(), y_query=tasks.y_query.round().long())
    with pytest.raises(ValueError, match=r"integer.*targets the outputs' shape"):
        meta_loss_batched(model, params, as_integers, loss, 0.1, 1)
    # The same targets with the outputs' shape work, and both paths agree.
    fixed = tasks._replace(y_support=tasks.y_support.unsqueeze(-1), y_query=tasks.y_query.unsqueeze(-1))
    assert torch.allclose(meta_loss(model, params, fixed, loss, 0.1, 1)[0],
                          meta_loss_batched(model, params, fixed, loss, 0.1, 1)[0], rtol=1e-12)


# --- 2. tied weights: the module is never changed, the shared tensor adapts once -------------------

@pytest.mark.parametrize("entry", [ran("adapt", "2.1"), ran("loop outer_step", "2.1", "3.1"),
                                   ran("fast outer_step", "2.1"), ran("evaluate", "3.2", "4.2")])
def test_a_module_with_tied_weights_is_never_changed_and_adapts_the_shared_tensor_once(entry):
    model = Tied().double()
    before, parameters = snapshot(model), dict(model.named_parameters(remove_duplicate=False))
    params, tasks = get_params(model), blob_tasks()
    assert sorted(params) == ["a.bias", "a.weight", "head.bias", "head.weight"]
    if entry == "adapt":
        task = tasks.task(0)
        adapted = adapt(model, params, task.x_support, task.y_support, cross_entropy, 0.5, 1)
        # The reference: the module's own tensors, one gradient for the shared weight.
        own = dict(model.named_parameters())
        grads = torch.autograd.grad(cross_entropy(model(task.x_support), task.y_support), list(own.values()))
        for (name, p), g in zip(own.items(), grads):
            assert torch.allclose(adapted[name], p - 0.5 * g, rtol=1e-12, atol=1e-14), name
    elif entry == "evaluate":
        evaluate(model, params, lambda n: blob_tasks(n), cross_entropy, 0.5, 1, num_tasks=3)
    else:
        optimizer = torch.optim.SGD(params.values(), lr=0.1)
        outer_step(model, params, tasks, optimizer, cross_entropy, 0.5, 1, method=entry.split()[0])
    assert_module_intact(model, before, parameters)
    model(tasks.x_query[0])  # and the module still runs


# --- 3. dropout: the masks are a function of the seed and the step ----------------------------------

def train_params(tmp_path, name, config, resume_from=None, global_seed=0):
    torch.manual_seed(global_seed)
    run = tmp_path / (resume_from or name)
    trainer = Trainer(config, run, {"train": Blobs(), "val": Blobs()}, model=Own(dropout=0.3))
    trainer.resume_if_possible()
    trainer.train(progress=False)
    return {n: p.detach().clone() for n, p in trainer.params.items()}


@pytest.mark.ex2_1
@pytest.mark.ex3_2
@pytest.mark.ex4_2
def test_dropout_training_does_not_depend_on_validation_or_on_resuming(tmp_path, no_plots):
    straight = train_params(tmp_path, "straight", trainer_config())
    often = train_params(tmp_path, "often", trainer_config(val_every=2))
    train_params(tmp_path, "resumed", trainer_config(iterations=3), global_seed=1)
    resumed = train_params(tmp_path, "resumed", trainer_config(), resume_from="resumed", global_seed=2)
    for name in straight:
        assert torch.equal(often[name], straight[name]), "validating more often changed θ"
        assert torch.equal(resumed[name], straight[name]), "a resumed run differs from a straight one"
    # The masks are random: another seed gives another θ.
    other = train_params(tmp_path, "other", trainer_config(seed=4))
    assert not torch.equal(other["head.weight"], straight["head.weight"])


@pytest.mark.ex2_1
@pytest.mark.ex3_2
@pytest.mark.ex4_2
def test_dropout_training_does_not_depend_on_how_often_it_logs(tmp_path, no_plots):
    # Logged steps also measure θ before adaptation; those forwards must not draw this step's masks.
    every_step = train_params(tmp_path, "every", trainer_config(log_every=1))
    seldom = train_params(tmp_path, "seldom", trainer_config(log_every=100))
    for name in seldom:
        assert torch.equal(every_step[name], seldom[name]), "logging more often changed θ"


# --- 4. validation and test in eval mode ---------------------------------------------------------

@pytest.mark.ex3_2
@pytest.mark.ex4_2
def test_validation_runs_in_eval_mode_by_default_and_is_repeatable(tmp_path):
    trainer = Trainer(trainer_config(), tmp_path, {"train": Blobs(), "val": Blobs()}, model=Own(dropout=0.5))
    first, second = trainer.evaluate("val")["mean"], trainer.evaluate("val")["mean"]
    assert first == second
    assert trainer.model.training, "the module's mode is restored"
    no_dropout = Trainer(trainer_config(), tmp_path / "b", {"train": Blobs(), "val": Blobs()}, model=Own(dropout=0.0))
    assert first == no_dropout.evaluate("val")["mean"]
    # eval_mode=False keeps dropout on at validation; still the same numbers twice.
    on = Trainer(trainer_config(eval_mode=False), tmp_path / "c", {"train": Blobs(), "val": Blobs()},
                 model=Own(dropout=0.5))
    assert on.evaluate("val")["mean"] == on.evaluate("val")["mean"]
    assert on.evaluate("val")["per_task"] != trainer.evaluate("val")["per_task"]


@pytest.mark.ex3_2
@pytest.mark.ex4_2
def test_evaluate_switches_dropout_off_unless_asked_and_restores_the_mode():
    model, tasks = Own(dropout=0.5).double(), blob_tasks()
    params = get_params(model)
    on = evaluate(model, params, lambda n: tasks, cross_entropy, 0.4, 1, num_tasks=3)
    assert model.training
    plain = Own(dropout=0.0).double()
    off = evaluate(plain, get_params(plain), lambda n: tasks, cross_entropy, 0.4, 1, num_tasks=3)
    assert on["per_task"] == off["per_task"]
    torch.manual_seed(0)
    as_is = evaluate(model, params, lambda n: tasks, cross_entropy, 0.4, 1, num_tasks=3, eval_mode=False)
    assert as_is["per_task"] != off["per_task"]


# --- 5. every method on a plain module with a head ----------------------------------------------

@pytest.mark.parametrize("dropout", [0.0, 0.3])
@pytest.mark.parametrize("name", [ran(name, *METHOD_EXERCISES[name]) for name in ALL_METHODS])
def test_every_method_runs_on_a_plain_module_with_a_head_fast_equals_loop(name, dropout):
    model, tasks = Own(dropout=dropout).double(), blob_tasks()
    if dropout:
        model.eval()  # the same function for the fast path and the loop; training mode is tested below
    before, parameters = snapshot(model), dict(model.named_parameters())
    params = get_params(model)
    method = method_of(name, params)
    fast_loss, fast_out = method.meta_loss(model, params, tasks, "fast")
    loop_loss, loop_out = method.meta_loss(model, params, tasks, "loop")
    assert torch.allclose(fast_loss, loop_loss, rtol=1e-10)
    assert torch.allclose(fast_out, loop_out, rtol=1e-9, atol=1e-12)
    wrt = list(params.values())
    def grad(loss):  # ProtoNet never uses the head: count its gradient as zero
        return torch.autograd.grad(loss, wrt, allow_unused=True, materialize_grads=True)

    for a, b in zip(grad(fast_loss), grad(loop_loss)):
        assert torch.allclose(a, b, rtol=1e-8, atol=1e-12)
    curve = method.adaptation_curve(model, params, tasks, 2)
    assert curve.shape[1] == tasks.num_tasks
    result = evaluate(model, params, lambda n: blob_tasks(n), cross_entropy, 0.4, 1, num_tasks=3, method=method)
    assert 0 <= result["mean"] <= 1
    optimizer = torch.optim.Adam([*params.values(), *method.trainable().values()], lr=1e-3)
    method_outer_step(method, model, params, tasks, optimizer)
    assert_module_intact(model, before, parameters)


@pytest.mark.parametrize("algorithm", [ran(name, *METHOD_EXERCISES[name]) for name in ("anil", "protonet")])
def test_the_trainer_trains_anil_and_protonet_on_a_plain_module(tmp_path, algorithm):
    trainer = Trainer(trainer_config(algorithm=algorithm), tmp_path, {"train": Blobs(), "val": Blobs()},
                      model=Own(dropout=0.3).float())
    assert "query_accuracy" in trainer.step()
    assert 0 <= trainer.evaluate("val")["mean"] <= 1


# --- 6. tuple outputs: a one-line refusal and a documented selector -------------------------------

@pytest.mark.parametrize("entry", [ran("adapt", "2.1"), "fast", ran("loop", "2.1", "3.1"), "evaluate", "anil"])
def test_a_model_returning_a_tuple_is_refused_with_the_selector_named(entry):
    model, tasks = TupleOut().double(), blob_tasks()
    params = get_params(model)
    with pytest.raises(TypeError, match=r"returned a tuple of 2.*SelectOutput\(model, 0\)"):
        if entry == "adapt":
            adapt(model, params, tasks.x_support[0], tasks.y_support[0], cross_entropy, 0.4, 1)
        elif entry == "evaluate":
            evaluate(model, params, lambda n: tasks, cross_entropy, 0.4, 1, num_tasks=3)
        elif entry == "anil":
            method_of("anil", params).meta_loss(model, params, tasks)
        else:
            meta_loss_batched(model, params, tasks, cross_entropy, 0.4, 1) if entry == "fast" else \
                meta_loss(model, params, tasks, cross_entropy, 0.4, 1)


@pytest.mark.ex2_1
@pytest.mark.ex3_1
@pytest.mark.ex3_2
@pytest.mark.ex5_1
@pytest.mark.ex5_2
def test_select_output_meta_trains_the_first_output_exactly():
    model, tasks = TupleOut().double(), blob_tasks()
    selected = SelectOutput(model, 0)
    params = get_params(selected)
    assert sorted(params) == ["body.bias", "body.weight", "head.bias", "head.weight"]
    fast, loop = (meta_loss_batched(selected, params, tasks, cross_entropy, 0.4, 1)[0],
                  meta_loss(selected, params, tasks, cross_entropy, 0.4, 1)[0])
    assert torch.allclose(fast, loop, rtol=1e-12)
    assert torch.equal(forward(selected, params, tasks.x_query[0]), model(tasks.x_query[0])[0])
    for name in ALL_METHODS:
        method_of(name, params).meta_loss(selected, params, tasks)


# --- 7. extending a cosine run ---------------------------------------------------------------------

def cosine(**changes):
    return trainer_config(**{"meta_lr_schedule": "cosine", "iterations": 4, "meta_lr": 0.01, "meta_lr_min": 0.0,
                             **changes})


@pytest.mark.ex2_1
@pytest.mark.ex3_2
@pytest.mark.ex4_2
def test_extending_a_cosine_run_is_refused_unless_the_schedule_is_chosen(tmp_path, no_plots):
    short = Trainer(cosine(), tmp_path, {"train": Blobs(), "val": Blobs()}, model=Own().float())
    short.train(progress=False)
    longer = Trainer(cosine(iterations=8), tmp_path, {"train": Blobs(), "val": Blobs()}, model=Own().float())
    with pytest.raises(ValueError, match=r"cosine.*4 steps.*--extend-schedule keep.*--extend-schedule stretch"):
        longer.resume_if_possible()

    rates = {}
    for choice in ("keep", "stretch"):
        config = cosine(iterations=8, extend_schedule=choice)
        trainer = Trainer(config, tmp_path, {"train": Blobs(), "val": Blobs()}, model=Own().float())
        assert trainer.resume_if_possible() and trainer.iteration == 4
        seen = []
        while trainer.iteration < 8:
            trainer.step()
            seen.append(trainer.optimizer.param_groups[0]["lr"])
        rates[choice] = seen
    assert rates["keep"] == [0.0] * 4, "keep: the old schedule's final meta-lr"
    # stretch: the cosine recomputed over the new total from the resumed step, as before.
    assert rates["stretch"] == [meta_lr_at(cosine(iterations=8), i) for i in range(4, 8)]
    assert rates["stretch"][0] > meta_lr_at(cosine(), 3)


def test_the_command_line_offers_the_schedule_choice():
    from mamlkit.run.cli import build_parser

    args = build_parser().parse_args(["train", "--run-dir", "x", "--extend-schedule", "stretch"])
    assert args.extend_schedule == "stretch"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--run-dir", "x", "--extend-schedule", "longer"])


# --- 8. evaluate under torch.inference_mode() ------------------------------------------------------

@pytest.mark.parametrize("name", [ran("maml", "3.2", "4.2"), ran("anil", "3.2", "4.2", "5.2"),
                                  ran("protonet", "3.2", "4.2", "5.1"), ran("plain", "3.2", "4.2")])
def test_evaluate_under_inference_mode_gives_the_same_numbers(name):
    model = tiny_conv(n_way=3).float()
    params = get_params(model)
    method = None if name == "plain" else method_of(name, params)

    def sample(n):
        from helpers import image_tasks
        return image_tasks(num_tasks=n, dtype=torch.float32)

    expected = evaluate(model, params, sample, cross_entropy, 0.4, 2, num_tasks=3, method=method)
    with torch.inference_mode():
        got = evaluate(model, params, sample, cross_entropy, 0.4, 2, num_tasks=3, method=method)
    assert got["per_step_mean"] == expected["per_step_mean"]
    own = Own().double()
    with torch.inference_mode():
        tasks = blob_tasks()
        curve = adaptation_curve(own, get_params(own), tasks, cross_entropy, 0.4, 2)
    assert torch.equal(curve, adaptation_curve(own, get_params(own), blob_tasks(), cross_entropy, 0.4, 2))
    task = blob_tasks().task(0)
    with torch.inference_mode(), pytest.raises(ValueError, match=r"torch.inference_mode\(\).*evaluate"):
        adapt(own, get_params(own), task.x_support, task.y_support, cross_entropy, 0.4, 1)


# --- 9. a head with more ways than the tasks ------------------------------------------------------

@pytest.mark.ex3_2
@pytest.mark.ex4_2
def test_a_five_way_model_on_three_way_tasks_is_refused_with_how_to_use_fewer_ways(tmp_path):
    from helpers import image_tasks

    model = tiny_conv(n_way=5)
    params = get_params(model)
    with pytest.raises(ValueError, match=r"5 outputs.*3-way.*fewer_ways\(params, 3\)"):
        evaluate(model, params, lambda n: image_tasks(num_tasks=n), cross_entropy, 0.4, 1, num_tasks=2)
    with pytest.raises(ValueError, match=r"5 outputs.*3-way"):
        Trainer(trainer_config(), tmp_path, {"train": Blobs(), "val": Blobs()}, model=Own(n_way=5)).step()
    three = tiny_conv(n_way=3)
    result = evaluate(three, fewer_ways(params, 3), lambda n: image_tasks(num_tasks=n), cross_entropy, 0.4, 1,
                      num_tasks=2)
    assert 0 <= result["mean"] <= 1


# --- issue 22: what trains is what forward shows --------------------------------------------------

class EditedConv4(Conv4):
    """A learner's edit of ``forward`` (no ReLU after the blocks' mean, say) that forward_tasks lacks."""

    def forward(self, x):
        return self.head(torch.sigmoid(self.blocks(x).mean(dim=(2, 3))))


class SyntheticImages:
    def sample(self, n, generator):
        labels = torch.arange(3).repeat_interleave(2).expand(n, -1).clone()
        return TaskBatch(torch.rand(n, 6, 1, 28, 28, generator=generator), labels,
                         torch.rand(n, 6, 1, 28, 28, generator=generator), labels)


@pytest.mark.ex2_1
def test_the_trainer_refuses_a_model_whose_forward_tasks_disagrees_with_forward(tmp_path):
    config = trainer_config(channels=4, meta_batch_size=2, val_tasks=2)
    samplers = {"train": SyntheticImages(), "val": SyntheticImages()}
    edited = EditedConv4(3, channels=4, generator=torch.Generator().manual_seed(0))
    trainer = Trainer(config, tmp_path, samplers, model=edited)
    generator_state = trainer.task_generator.get_state()
    with pytest.raises(ValueError, match=r"forward_tasks.*does not compute what.*forward"):
        trainer.step()
    assert torch.equal(trainer.task_generator.get_state(), generator_state), "the check used training tasks"
    assert trainer.iteration == 0
    fine = Trainer(config, tmp_path / "b", samplers, model=Conv4(3, channels=4, generator=torch.Generator().manual_seed(0)))
    fine.step()
    assert fine.iteration == 1


@pytest.mark.ex2_1
@pytest.mark.ex3_2
@pytest.mark.ex4_2
def test_the_model_check_is_cheap_and_once(tmp_path, monkeypatch):
    config = trainer_config(channels=4, meta_batch_size=2, val_tasks=2)
    trainer = Trainer(config, tmp_path, {"train": SyntheticImages(), "val": SyntheticImages()},
                      model=Conv4(3, channels=4, generator=torch.Generator().manual_seed(0)))
    calls = []
    original = Conv4.forward
    monkeypatch.setattr(Conv4, "forward", lambda self, x: calls.append(x.shape) or original(self, x))
    for _ in range(3):
        trainer.step()
    # The forward of 2 tasks, checked once, and one forward with gradients on, once per module,
    # checking that the forward uses the parameters it is given (functional.check_parameters_swapped).
    assert len(calls) == 2 * 1 + 1, "one small batch: the forward of 2 tasks checked once, and one probe"
    assert math.isfinite(trainer.evaluate("val")["mean"])


# --- further modules of the same kind: compiled, checkpointed, a head that is not last ------------

def small_net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(2, 16), nn.Tanh(), nn.Linear(16, 3)).double()


def meta_numbers(model, tasks):
    params = get_params(model)
    out = {}
    for name, fn in (("loop", meta_loss), ("fast", meta_loss_batched)):
        loss, _ = fn(model, params, tasks, cross_entropy, 0.4, 1)
        out[name] = [loss.detach(), *torch.autograd.grad(loss, list(params.values()))]
    out["evaluate"] = evaluate(model, params, lambda n: blob_tasks(n, seed=1), cross_entropy, 0.4, 2,
                               num_tasks=3)["per_step_mean"]
    return out


@pytest.mark.ex2_1
@pytest.mark.ex3_1
@pytest.mark.ex3_2
@pytest.mark.ex4_2
def test_a_compiled_module_gives_the_numbers_of_the_module_itself():
    tasks = blob_tasks()
    plain, compiled = meta_numbers(small_net(), tasks), meta_numbers(torch.compile(small_net()), tasks)
    for key in ("loop", "fast"):
        for a, b in zip(compiled[key], plain[key]):
            assert torch.allclose(a, b, rtol=1e-12, atol=1e-15), key
    assert compiled["evaluate"] == plain["evaluate"]


class Checkpointed(nn.Module):
    def __init__(self, reentrant):
        super().__init__()
        torch.manual_seed(0)
        self.body, self.head, self.reentrant = nn.Sequential(nn.Linear(2, 8), nn.Tanh()), nn.Linear(8, 3), reentrant

    def forward(self, x):
        from torch.utils.checkpoint import checkpoint
        return self.head(checkpoint(self.body, x, use_reentrant=self.reentrant))


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("reentrant", [False, True])
@pytest.mark.parametrize("entry", [ran("loop", "2.1", "3.1"), "fast", "evaluate"])
def test_checkpointed_layers_are_refused_since_their_recomputation_ignores_the_adapted_weights(reentrant, entry):
    model, tasks = Checkpointed(reentrant).double(), blob_tasks()
    params = get_params(model)
    with pytest.raises(TypeError, match="uses torch.utils.checkpoint.*remove the checkpoint call"):
        if entry == "evaluate":
            evaluate(model, params, lambda n: tasks, cross_entropy, 0.4, 1, num_tasks=3)
        else:
            (meta_loss if entry == "loop" else meta_loss_batched)(model, params, tasks, cross_entropy, 0.4, 1)


class ScaledLogits(Own):
    def forward(self, x):
        return 2.0 * self.head(self.body(x))


@pytest.mark.parametrize("implementation", ["fast", "loop"])
def test_anil_refuses_a_forward_that_does_more_after_its_head(implementation):
    model, tasks = ScaledLogits().double(), blob_tasks()
    params = get_params(model)
    with pytest.raises(ValueError, match="does not end with its linear layer 'head'"):
        method_of("anil", params).meta_loss(model, params, tasks, implementation)


# -- inputs of another dtype, and parameters reached around functional_call ---------------
ALL_ALGORITHMS = ("maml", "fomaml", "anil", "protonet", "metasgd", "reptile", "protomaml")


# MAML's and Meta-SGD's per-task loop is Exercise 3.1's meta_loss; every other path refuses
# at its first forward, before any exercise's code.
@pytest.mark.parametrize("name,entry", [
    pytest.param(name, entry, marks=[EX["3.1"]]) if entry == "loop" and name in ("maml", "fomaml", "metasgd")
    else (name, entry)
    for name in ALL_ALGORITHMS for entry in ("fast", "loop", "outer_step", "curve", "evaluate")])
def test_inputs_of_another_dtype_are_refused_by_every_method_in_one_line(name, entry):
    """A float64 model on float32 tasks: the first forward names both dtypes and the fix, before
    any method's own code runs (once torch's "mat1 and mat2 must have the same dtype")."""
    model, tasks = Own().double(), blob_tasks(dtype=torch.float32)
    params = get_params(model)
    method = method_of(name, params)
    with pytest.raises(ValueError, match=r"is torch.float32 but params are torch.float64; convert"):
        if entry in ("fast", "loop"):
            method.meta_loss(model, params, tasks, entry)
        elif entry == "outer_step":
            method_outer_step(method, model, params, tasks, torch.optim.SGD(params.values(), lr=0.1))
        elif entry == "curve":
            method.adaptation_curve(model, params, tasks, 1)
        else:
            evaluate(model, params, lambda n: blob_tasks(n, dtype=torch.float32), cross_entropy, 0.4, 1,
                     num_tasks=3, method=method)


class Captured(nn.Module):
    """Reaches its first layer's weight through a list, which functional_call does not see."""

    def __init__(self):
        super().__init__()
        self.fc, self.head = nn.Linear(2, 8), nn.Linear(8, 3)
        self.refs = [self.fc.weight]

    def forward(self, x):
        return self.head(torch.tanh(x @ self.refs[0].T + self.fc.bias))


# MAML's loop runs meta_loss (3.1) and adapt (2.1), whose loop makes the first forward.
@pytest.mark.parametrize("name,entry", [
    pytest.param("maml", "loop", marks=[EX["2.1"], EX["3.1"]]), pytest.param("maml", "adapt", marks=[EX["2.1"]]),
    *[(name, entry) for name in ("maml", "anil", "protonet") for entry in ("fast", "loop", "evaluate")
      if (name, entry) != ("maml", "loop")]])
def test_a_parameter_reached_around_functional_call_is_refused_not_silently_ignored(name, entry):
    """``self.refs = [self.fc.weight]``: θ's fc.weight would be ignored and get a zero
    meta-gradient. Every path refuses, naming the tensor; the same module reaching the weight
    through ``self.fc`` is accepted."""
    model, tasks = Captured().double(), blob_tasks()
    params = get_params(model)
    method = method_of(name, params)
    with pytest.raises(ValueError, match=r"depends on its own parameter 'fc.weight'.*zero meta-gradient"):
        if entry in ("fast", "loop"):
            method.meta_loss(model, params, tasks, entry)
        elif entry == "evaluate":
            evaluate(model, params, lambda n: blob_tasks(n), cross_entropy, 0.4, 1, num_tasks=3, method=method)
        else:
            adapt(model, params, tasks.x_support[0], tasks.y_support[0], cross_entropy, 0.4, 1)
    honest = Captured().double()
    honest.refs = [None]
    honest.forward = lambda x: honest.head(torch.tanh(honest.fc(x)))
    assert forward(honest, get_params(honest), tasks.x_support[0]).shape == (tasks.x_support.shape[1], 3)


def test_the_module_s_own_parameters_passed_as_params_are_not_refused():
    """``params = dict(model.named_parameters())`` is the module's own tensors: nothing to swap."""
    model = Captured().double()
    x = blob_tasks().x_support[0]
    assert torch.allclose(forward(model, dict(model.named_parameters()), x), model(x))


# -- layers whose forward would change θ or the module, and layers with state MAML never updates --
class Embedded(nn.Module):
    """A bag of integer tokens: an embedding, a mean and a linear head."""

    def __init__(self, **embedding):
        super().__init__()
        torch.manual_seed(6)
        self.emb, self.head = nn.Embedding(10, 8, **embedding), nn.Linear(8, 3)

    def forward(self, x):
        return self.head(torch.tanh(self.emb(x)).mean(1))


def token_tasks(num_tasks=3) -> TaskBatch:
    generator = torch.Generator().manual_seed(1)
    return TaskBatch(torch.randint(0, 10, (num_tasks, 6, 4), generator=generator),
                     torch.arange(3).repeat(2).expand(num_tasks, 6).clone(),
                     torch.randint(0, 10, (num_tasks, 9, 4), generator=generator),
                     torch.arange(3).repeat(3).expand(num_tasks, 9).clone())


def old_weight_norm():
    model = Own()
    with pytest.warns(FutureWarning):  # torch itself deprecates it
        torch.nn.utils.weight_norm(model.body[0])
    return model


def old_spectral_norm():
    model = Own()
    torch.nn.utils.spectral_norm(model.body[0])
    return model


REFUSED_LAYERS = {
    "embedding max_norm": (lambda: Embedded(max_norm=1.0), token_tasks, r"max_norm=1.0.*renormalises.*in place"),
    "sparse embedding": (lambda: Embedded(sparse=True), token_tasks, r"sparse=True.*use sparse=False"),
    "hook-based weight_norm": (old_weight_norm, blob_tasks, r"hook-based torch.nn.utils.weight_norm.*parametrizations"),
    "hook-based spectral_norm": (old_spectral_norm, blob_tasks,
                                 r"hook-based torch.nn.utils.spectral_norm.*parametrizations"),
    "DataParallel": (lambda: nn.DataParallel(Own()), blob_tasks, r"DataParallel.*pass the network inside it"),
}


# The loop path runs meta_loss (3.1) and adapt (2.1) before its first forward refuses.
@pytest.mark.parametrize("entry", ["fast", ran("loop", "2.1", "3.1"), "evaluate", "anil"])
@pytest.mark.parametrize("case", sorted(REFUSED_LAYERS))
def test_layers_whose_forward_would_change_theta_or_the_module_are_refused_before_they_run(case, entry):
    """Embedding(max_norm) renormalises θ's rows in place; sparse embeddings have gradients the
    inner loop cannot use; the hook-based weight_norm/spectral_norm leave the module holding a
    tensor of the inner loop; DataParallel cannot run through functional_call. Each is refused in
    one line, naming the fix, before anything changes."""
    make_model, make_tasks, message = REFUSED_LAYERS[case]
    model, tasks = make_model(), make_tasks()
    if case == "DataParallel":
        model = model.float()
        tasks = TaskBatch(tasks.x_support.float(), tasks.y_support, tasks.x_query.float(), tasks.y_query)
    elif tasks.x_support.is_floating_point():
        model = model.double()
    before, parameters = snapshot(model), dict(model.named_parameters())
    params = get_params(model)
    theta = {name: p.detach().clone() for name, p in params.items()}
    with pytest.raises(TypeError, match=message):
        if entry in ("fast", "loop"):
            (meta_loss_batched if entry == "fast" else meta_loss)(model, params, tasks, cross_entropy, 0.4, 1)
        elif entry == "evaluate":
            evaluate(model, params, lambda n: tasks, cross_entropy, 0.4, 1, num_tasks=3)
        else:
            method_of("anil", params).meta_loss(model, params, tasks, "fast")
    assert all(torch.equal(params[name], theta[name]) for name in theta), "θ changed"
    assert_module_intact(model, before, parameters)


class SpectralNormed(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(8)
        self.body = torch.nn.utils.parametrizations.spectral_norm(nn.Linear(2, 16))
        self.head = nn.Linear(16, 3)

    def forward(self, x):
        return self.head(torch.tanh(self.body(x)))


@pytest.mark.ex3_2
@pytest.mark.ex4_2
def test_spectral_norm_is_evaluated_as_it_was_trained_not_with_its_never_updated_vectors():
    """In eval mode, spectral_norm divides by σ from power-iteration vectors that only a forward
    in training mode updates, and mamlkit never updates buffers: after meta-training moved θ, an
    eval-mode σ is the initial vectors' and the accuracy silently drops (42.8% against 79.0% in
    one run). evaluate keeps spectral_norm in its mode, as it keeps batch norm, and restores
    every mode after."""
    model, tasks = SpectralNormed().double(), blob_tasks()
    params = get_params(model)
    with torch.no_grad():  # θ moved away from the weight the stored vectors belong to
        params["body.parametrizations.weight.original"].copy_(
            torch.randn(16, 2, generator=torch.Generator().manual_seed(3), dtype=torch.float64))
    by_default = evaluate(model, params, lambda n: tasks, cross_entropy, 0.4, 1, num_tasks=3)
    as_trained = evaluate(model, params, lambda n: tasks, cross_entropy, 0.4, 1, num_tasks=3, eval_mode=False)
    assert by_default["per_task"] == as_trained["per_task"]
    assert all(m.training for m in model.modules())
    model.eval()  # the stored vectors' σ gives other numbers: the case above is not vacuous
    stale = evaluate(model, params, lambda n: tasks, cross_entropy, 0.4, 1, num_tasks=3, eval_mode=False)
    model.train()
    adapted_loss = [meta_loss_batched(model, params, tasks, cross_entropy, 0.4, 1)[0]]
    model.eval()
    adapted_loss.append(meta_loss_batched(model, params, tasks, cross_entropy, 0.4, 1)[0])
    assert not torch.allclose(*adapted_loss) or stale["per_task"] != as_trained["per_task"]


class Attending(nn.Module):
    """Self-attention over the two input coordinates, then a linear head."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(9)
        self.inp = nn.Linear(1, 8)
        self.att = nn.MultiheadAttention(8, 2, batch_first=True)
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        h = self.inp(x.unsqueeze(-1))
        attended, _ = self.att(h, h, h)
        return self.head(attended.mean(1))


@pytest.mark.ex2_1
@pytest.mark.ex3_2
@pytest.mark.ex4_2
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_multihead_attention_meta_learns_in_either_mode_with_the_loop_s_numbers(mode):
    """In eval mode (or inside vmap) torch runs MultiheadAttention's fused kernel, which has no
    derivative ("derivative for aten::_native_multi_head_attention is not implemented"): mamlkit
    switches it off for its calls, and back after."""
    model, tasks = Attending().double(), blob_tasks()
    getattr(model, mode)()
    params = get_params(model)
    fast, _ = meta_loss_batched(model, params, tasks, cross_entropy, 0.4, 1)
    loop, _ = meta_loss(model, params, tasks, cross_entropy, 0.4, 1) if mode == "train" else (fast, None)
    assert torch.allclose(fast, loop, rtol=1e-10)
    wrt = list(params.values())
    reference = 0.0
    for i in range(tasks.num_tasks):  # the per-task loop in float64, written out
        phi = dict(params)
        grads = torch.autograd.grad(cross_entropy(torch.func.functional_call(model, phi, (tasks.x_support[i],)),
                                                  tasks.y_support[i]), wrt, create_graph=True)
        phi = {name: p - 0.4 * g for (name, p), g in zip(params.items(), grads)}
        reference = reference + cross_entropy(torch.func.functional_call(model, phi, (tasks.x_query[i],)),
                                              tasks.y_query[i]) / tasks.num_tasks
    assert torch.allclose(fast, reference, rtol=1e-10)
    for a, b in zip(torch.autograd.grad(fast, wrt), torch.autograd.grad(reference, wrt)):
        assert torch.allclose(a, b, rtol=1e-8, atol=1e-12)
    result = evaluate(model, params, lambda n: blob_tasks(n), cross_entropy, 0.4, 1, num_tasks=3)
    assert 0 <= result["mean"] <= 1
    assert torch.backends.mha.get_fastpath_enabled()


def test_a_head_by_another_name_is_refused_with_how_to_name_it():
    model = nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 3)).double()
    params = get_params(model)
    with pytest.raises(TypeError, match=r"name your last linear layer 'head'"):
        method_of("anil", params).meta_loss(model, params, blob_tasks(), "fast")
