"""Every algorithm through Trainer, checkpoints, export and evaluation; old checkpoints still load."""

import dataclasses

import pytest
import torch
from test_train import samplers, tiny_config, without_timing

from mamlkit.methods import ALGORITHMS, ANIL, MetaSGD, ProtoNet
from mamlkit.run import checkpoints
from mamlkit.run.config import TrainConfig
from mamlkit.run.run_folder import read_metrics
from mamlkit.run.saved_models import evaluate_checkpoint, load_method, load_weights
from mamlkit.run.train import Trainer

# A run takes second-order steps (2.1; Reptile's are first-order) and validates: first-order adaptation (3.2) and a
# confidence interval (4.2); ANIL and ProtoNet also run their own exercise.
RUN_EX = {"maml": ("ex2_1", "ex3_2", "ex4_2"), "metasgd": ("ex2_1", "ex3_2", "ex4_2"),
          "anil": ("ex5_2", "ex2_1", "ex3_2", "ex4_2"), "protonet": ("ex5_1", "ex4_2"),
          "reptile": ("ex3_2", "ex4_2"), "protomaml": ("ex5_1", "ex2_1", "ex3_2", "ex4_2")}
ALL = [pytest.param(n, marks=[getattr(pytest.mark, m) for m in RUN_EX[n]]) for n in sorted(ALGORITHMS)]


@pytest.fixture(autouse=True)
def no_plots(monkeypatch):
    monkeypatch.setattr(Trainer, "plot", lambda self: None)


@pytest.mark.parametrize("name", ALL)
def test_a_stopped_and_resumed_run_takes_the_same_steps(tmp_path, name):
    config = tiny_config(algorithm=name, iterations=4)
    straight = Trainer(config, tmp_path / "straight", samplers(config))
    straight.train(progress=False)
    Trainer(tiny_config(algorithm=name, iterations=2), tmp_path / "resumed", samplers(config)).train(progress=False)
    resumed = Trainer(config, tmp_path / "resumed", samplers(config))
    assert resumed.resume_if_possible() and resumed.iteration == 2
    resumed.train(progress=False)
    for n, p in straight.params.items():
        assert torch.equal(p, resumed.params[n]), f"{name}: {n} differs after resume"
    for n, r in straight.method.trainable().items():
        assert torch.equal(r, resumed.method.trainable()[n]), f"{name}: learned rate {n} differs after resume"
    assert without_timing(read_metrics(straight.run_dir / "metrics.jsonl")) == \
        without_timing(read_metrics(resumed.run_dir / "metrics.jsonl"))


@pytest.mark.ex2_1
def test_the_trainer_builds_the_configured_algorithm_and_trains_its_rates():
    config = tiny_config(algorithm="metasgd")
    trainer = Trainer(config, "unused", samplers(config))
    assert isinstance(trainer.method, MetaSGD)
    before = {n: r.detach().clone() for n, r in trainer.method.trainable().items()}
    trainer.step()
    assert any(not torch.equal(before[n], r) for n, r in trainer.method.trainable().items()), \
        "the outer optimiser must update Meta-SGD's per-element rates"
    assert isinstance(Trainer(tiny_config(algorithm="anil"), "unused", samplers(config)).method, ANIL)


def test_resuming_as_another_algorithm_is_refused(tmp_path):
    config = tiny_config(algorithm="anil")
    Trainer(config, tmp_path, samplers(config)).save_checkpoint()
    other = tiny_config(algorithm="maml")
    with pytest.raises(ValueError, match="algorithm='anil'"):
        Trainer(other, tmp_path, samplers(other)).resume_if_possible()


@pytest.mark.ex2_1
def test_a_checkpoint_from_before_algorithms_resumes_as_maml(tmp_path):
    config = tiny_config()
    trainer = Trainer(config, tmp_path, samplers(config))
    trainer.step()
    state = trainer.state()
    old = {k: v for k, v in state["config"].items() if k not in ("algorithm", "implementation")}
    old["method"] = "loop"  # the implementation's old name
    checkpoints.atomic_save({**state, "config": old}, trainer.checkpoint_path)
    resumed = Trainer(config, tmp_path, samplers(config))
    assert resumed.resume_if_possible() and resumed.iteration == 1
    model, params, method, saved = load_method(trainer.checkpoint_path)
    assert saved["algorithm"] == "maml" and saved["implementation"] == "loop"
    assert type(method).__name__ == "MAML"


@pytest.mark.parametrize("name", ALL)
def test_exported_weights_evaluate_with_their_algorithm(tmp_path, name, monkeypatch):
    config = tiny_config(algorithm=name)
    trainer = Trainer(config, tmp_path / "run", samplers(config))
    trainer.step()
    path = trainer.export(tmp_path / "model.pt")
    model, params, method, saved = load_method(path)
    assert type(method) is type(trainer.method) and saved["algorithm"] == name
    for n, r in trainer.method.trainable().items():
        assert torch.equal(method.trainable()[n], r.detach())
    # evaluate_checkpoint through the same samplers as the trainer's validation
    import mamlkit.run.saved_models as saved_models

    monkeypatch.setattr(saved_models, "omniglot_task_samplers", lambda c: samplers(c))
    results = [evaluate_checkpoint(path, split="val", num_tasks=4, protocol=p, n_query=3)
               for p in ("transductive", "support-stats")]
    assert all(0 <= r["mean"] <= 1 for r in results)
    assert len(results[0]["per_step_mean"]) == (1 if name == "protonet" else config.eval_inner_steps + 1)
    _, _, inner_lr, _ = load_weights(path)  # the older loader still reads every algorithm's file
    assert inner_lr is not None


def test_protonet_refuses_inner_loop_settings():
    with pytest.raises(ValueError, match="has no inner loop"):
        tiny_config(algorithm="protonet", first_order=True).validate()
    with pytest.raises(ValueError, match="algorithm must be one of"):
        tiny_config(algorithm="no-such-method").validate()
    with pytest.raises(ValueError, match="implementation must be"):
        tiny_config(implementation="vmap").validate()
    assert ProtoNet.has_inner_loop is False


def test_the_command_line_offers_algorithm_implementation_and_protocols():
    from mamlkit.run.cli import build_parser

    args = build_parser().parse_args(["train", "--run-dir", "x", "--algorithm", "anil", "--implementation", "loop"])
    assert (args.algorithm, args.implementation) == ("anil", "loop")
    args = build_parser().parse_args(["evaluate", "m.pt", "--n-query", "15", "--protocol", "support-stats"])
    assert (args.n_query, args.protocol) == (15, "support-stats")
    with pytest.raises(SystemExit):
        build_parser().parse_args(["evaluate", "m.pt", "--protocol", "inductive"])
    assert dataclasses.asdict(TrainConfig())["algorithm"] == "maml"
