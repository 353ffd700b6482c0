"""Meta-training runs: logs, checkpoints, and a resumed run that takes exactly the same steps.

The runs are tiny (3-way tasks of 12×12 random images, a conv4 with 4 channels, a few steps)
and use stand-in task samplers, so they need neither Omniglot nor Exercise 4.1. They do run the
outer step (second-order: Exercise 2.1) and validation (first-order adaptation, Exercise 3.2;
the confidence interval, Exercise 4.2).
"""

import dataclasses
import os
import signal

import pytest
import torch

from mamlkit.functional import forward
from mamlkit.losses import cross_entropy
from mamlkit.run import checkpoints
from mamlkit.run.config import TrainConfig
from mamlkit.run.run_folder import read_metrics
from mamlkit.run.saved_models import load_weights
from mamlkit.run.train import Trainer
from mamlkit.tasks import TaskBatch


class RandomImageTasks:
    """A stand-in for ``OmniglotTaskSampler``: ``sample(T, generator)`` draws from ``generator`` only."""

    def __init__(self, n_way: int, k_shot: int, n_query: int, size: int = 12, interrupt_after: int | None = None):
        self.n_way, self.k_shot, self.n_query, self.size = n_way, k_shot, n_query, size
        self.calls = 0
        self.interrupt_after = interrupt_after

    def sample(self, meta_batch_size: int, generator: torch.Generator) -> TaskBatch:
        if self.interrupt_after is not None and self.calls == self.interrupt_after:
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C, in the middle of a step
        self.calls += 1
        T, N, K, Q, S = meta_batch_size, self.n_way, self.k_shot, self.n_query, self.size
        labels = torch.arange(N)
        return TaskBatch(
            torch.rand(T, N * K, 1, S, S, generator=generator),
            labels.repeat_interleave(K).expand(T, N * K).clone(),
            torch.rand(T, N * Q, 1, S, S, generator=generator),
            labels.repeat_interleave(Q).expand(T, N * Q).clone(),
        )


def tiny_config(**changes) -> TrainConfig:
    config = TrainConfig(n_way=3, k_shot=1, n_query=2, meta_batch_size=2, inner_lr=0.4, inner_steps=1,
                         eval_inner_steps=1, meta_lr=1e-2, iterations=4, channels=4, log_every=1,
                         val_every=2, val_tasks=4, checkpoint_every=2, seed=3)
    return dataclasses.replace(config, **changes)


def samplers(config: TrainConfig, interrupt_after: int | None = None) -> dict:
    train = RandomImageTasks(config.n_way, config.k_shot, config.n_query, interrupt_after=interrupt_after)
    val = RandomImageTasks(config.n_way, config.k_shot, config.n_query)
    return {"train": train, "val": val}


def without_timing(records: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "seconds"} for r in records]


@pytest.fixture
def no_plots(monkeypatch):
    # The learning-curve figure is tested with plotting; here it would only cost time.
    monkeypatch.setattr(Trainer, "plot", lambda self: None)


@pytest.mark.ex2_1
@pytest.mark.ex3_2
@pytest.mark.ex4_2
def test_a_run_logs_validates_and_checkpoints(tmp_path):
    config = tiny_config()
    trainer = Trainer(config, tmp_path / "run", samplers(config))
    start = {n: p.detach().clone() for n, p in trainer.params.items()}
    trainer.train(progress=False)

    assert trainer.iteration == 4
    assert any(not torch.equal(start[n], p) for n, p in trainer.params.items()), "training should move θ"
    records = read_metrics(tmp_path / "run/metrics.jsonl")
    assert [r["iteration"] for r in records if r["kind"] == "train"] == [1, 2, 3, 4]
    val = [r for r in records if r["kind"] == "val"]
    assert [r["iteration"] for r in val] == [2, 4]
    assert all(0 <= r["val_accuracy"] <= 1 and r["val_ci95"] >= 0 for r in val)
    assert all(len(r["val_accuracy_per_step"]) == 2 for r in val), "eval_inner_steps=1: steps 0 and 1"
    assert (tmp_path / "run/learning_curve.png").stat().st_size > 0

    state = checkpoints.load(tmp_path / "run/checkpoint.pt")
    assert state["iteration"] == 4
    assert all(torch.equal(state["params"][n], p.detach()) for n, p in trainer.params.items())


@pytest.mark.ex2_1
@pytest.mark.ex3_2
@pytest.mark.ex4_2
def test_a_stopped_and_resumed_run_takes_the_same_steps(tmp_path, no_plots):
    config = tiny_config()
    straight = Trainer(config, tmp_path / "straight", samplers(config))
    straight.train(progress=False)

    # First half: stop after step 2 (the checkpoint is written there), then resume for the rest.
    Trainer(tiny_config(iterations=2), tmp_path / "resumed", samplers(config)).train(progress=False)
    resumed = Trainer(config, tmp_path / "resumed", samplers(config))
    assert resumed.resume_if_possible() and resumed.iteration == 2
    resumed.train(progress=False)

    for name, p in straight.params.items():
        assert torch.equal(resumed.params[name], p), f"{name} differs after resuming"
    assert without_timing(read_metrics(tmp_path / "resumed/metrics.jsonl")) == without_timing(
        read_metrics(tmp_path / "straight/metrics.jsonl")
    )


@pytest.mark.ex2_1
@pytest.mark.ex3_2
@pytest.mark.ex4_2
def test_ctrl_c_saves_a_checkpoint_that_resumes_exactly(tmp_path, no_plots):
    config = tiny_config(checkpoint_every=10, val_every=10)
    straight = Trainer(config, tmp_path / "straight", samplers(config))
    straight.train(progress=False)

    # Ctrl-C arrives while step 3 samples its tasks: step 3 finishes, then the run saves and stops.
    interrupted = Trainer(config, tmp_path / "run", samplers(config, interrupt_after=2))
    with pytest.raises(KeyboardInterrupt):
        interrupted.train(progress=False)
    assert checkpoints.load(tmp_path / "run/checkpoint.pt")["iteration"] == 3
    resumed = Trainer(config, tmp_path / "run", samplers(config))
    assert resumed.resume_if_possible()
    resumed.train(progress=False)
    assert all(torch.equal(resumed.params[n], p) for n, p in straight.params.items())


def test_resuming_with_other_settings_is_refused(tmp_path):
    config = tiny_config()
    Trainer(config, tmp_path, samplers(config)).save_checkpoint()
    other = tiny_config(inner_lr=0.1)
    with pytest.raises(ValueError, match=r"cannot resume: .*inner_lr=0.4 \(now 0.1\)"):
        Trainer(other, tmp_path, samplers(other)).resume_if_possible()
    # More iterations is a continuation, not a different run.
    longer = tiny_config(iterations=10)
    assert Trainer(longer, tmp_path, samplers(longer)).resume_if_possible()


@pytest.mark.ex2_1
def test_a_finished_run_writes_its_weights_to_model_pt(tmp_path, no_plots):
    config = tiny_config(iterations=2)
    trainer = Trainer(config, tmp_path / "run", samplers(config))
    trainer.train(progress=False)
    model, params, _, saved = load_weights(tmp_path / "run/model.pt")
    assert saved["iterations"] == 2 and all(torch.equal(params[n], p.detach()) for n, p in trainer.params.items())


def test_bookkeeping_settings_may_change_on_resume_and_the_mathematics_may_not(tmp_path):
    config = tiny_config()
    Trainer(config, tmp_path, samplers(config)).save_checkpoint()
    bookkeeping = tiny_config(log_every=3, val_every=5, checkpoint_every=7, val_tasks=9, eval_inner_steps=4,
                              eval_n_query=1,
                              skip_nonfinite=True, iterations=20, task_chunk_size=None, implementation="loop")
    assert Trainer(bookkeeping, tmp_path, samplers(bookkeeping)).resume_if_possible()
    for change in ({"meta_lr": 0.5}, {"inner_steps": 2}, {"first_order": True}, {"meta_batch_size": 3},
                   {"seed": 4}, {"meta_lr_schedule": "cosine"}):
        other = tiny_config(**change)
        with pytest.raises(ValueError, match=f"cannot resume: .*{next(iter(change))}="):
            Trainer(other, tmp_path, samplers(other)).resume_if_possible()


@pytest.mark.ex3_3  # learn_inner_lrs: init_inner_lrs
def test_exported_weights_load_back(tmp_path):
    config = tiny_config(learn_inner_lrs=True)
    trainer = Trainer(config, tmp_path / "run", samplers(config))
    path = trainer.export(tmp_path / "model.pt", extra={"note": "tiny"})
    model, params, inner_lr, saved = load_weights(path)
    assert saved == dataclasses.asdict(config)
    assert all(torch.equal(params[n], p.detach()) for n, p in trainer.params.items())
    assert set(inner_lr) == set(trainer.params) and all(lr.item() == pytest.approx(0.4) for lr in inner_lr.values())
    assert model(torch.rand(2, 1, 12, 12)).shape == (2, 3)


def test_the_recorded_training_command_rebuilds_the_same_settings():
    from mamlkit.run.cli import build_parser
    from mamlkit.run.publish import training_command

    config = tiny_config(first_order=True, split="vinyals")
    argv = training_command(config, "runs/x").split()[3:]  # drop "python -m mamlkit"
    args = build_parser().parse_args(argv)
    rebuilt = TrainConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)})
    assert rebuilt == config
    assert args.run_dir == "runs/x"


# --- any model, and steps that are not finite ----------------------------------------------------

class VectorTasks:
    """3-way tasks on 4-dimensional inputs; ``nan_at`` makes the query targets of that call nan."""

    def __init__(self, nan_at: int | None = None):
        self.calls, self.nan_at = 0, nan_at

    def sample(self, n: int, generator: torch.Generator) -> TaskBatch:
        self.calls += 1
        means = torch.randn(n, 3, 4, generator=generator) * 2
        labels = torch.arange(3).repeat(2).expand(n, -1).clone()
        x = means.gather(1, labels.unsqueeze(-1).expand(-1, -1, 4))
        tasks = TaskBatch(x + torch.randn(x.shape, generator=generator), labels,
                          x + torch.randn(x.shape, generator=generator), labels)
        if self.calls == self.nan_at:  # a loss that cannot be computed: one-hot targets with nan
            return tasks._replace(y_query=torch.full((n, 6, 3), float("nan")))
        return tasks


def frozen_first_layer_mlp() -> torch.nn.Sequential:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))
    model[0].requires_grad_(False)
    return model


def cross_entropy_or_soft(outputs, targets):
    """Cross-entropy for labels; for float targets (here: nan) the soft-label form."""
    if targets.is_floating_point():
        return -(targets * torch.log_softmax(outputs, -1)).sum(-1).mean(-1)
    from mamlkit.losses import cross_entropy
    return cross_entropy(outputs, targets)


@pytest.mark.ex2_1
@pytest.mark.ex3_2
@pytest.mark.ex4_2
def test_a_trainer_meta_trains_any_model_with_its_own_loss_and_tasks(tmp_path, no_plots):
    config = tiny_config(inner_lr=0.5, meta_lr=0.01, val_tasks=6)
    model = frozen_first_layer_mlp()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    trainer = Trainer(config, tmp_path / "run", {"train": VectorTasks(), "val": VectorTasks()},
                      model=model, loss_fn=cross_entropy_or_soft)
    start = {n: p.detach().clone() for n, p in trainer.params.items()}
    trainer.train(progress=False)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items()), "the module must not change"
    assert torch.equal(trainer.params["0.weight"], start["0.weight"]), "the frozen layer must not move"
    assert not torch.equal(trainer.params["2.weight"], start["2.weight"])
    resumed = Trainer(config, tmp_path / "run", {"train": VectorTasks(), "val": VectorTasks()},
                      model=frozen_first_layer_mlp(), loss_fn=cross_entropy_or_soft)
    assert resumed.resume_if_possible() and resumed.iteration == 4
    assert all(torch.equal(resumed.params[n], p) for n, p in trainer.params.items())


@pytest.mark.ex2_1
@pytest.mark.ex3_2
@pytest.mark.ex4_2
def test_a_non_finite_step_stops_training_with_the_last_checkpoint_intact(tmp_path, no_plots):
    config = tiny_config(inner_lr=0.5)
    trainer = Trainer(config, tmp_path / "run", {"train": VectorTasks(nan_at=3), "val": VectorTasks()},
                      model=frozen_first_layer_mlp(), loss_fn=cross_entropy_or_soft)
    with pytest.raises(FloatingPointError, match=r"training stopped at step 3: .*not finite|training stopped at step 3: .*inf/nan"):
        trainer.train(progress=False)
    saved = checkpoints.load(tmp_path / "run/checkpoint.pt")
    assert saved["iteration"] == 2 and trainer.iteration == 2
    assert all(torch.equal(saved["params"][n], p.detach()) for n, p in trainer.params.items()), (
        "θ must be that of the last good step")
    assert all(torch.isfinite(p).all() for p in trainer.params.values())


@pytest.mark.ex2_1
@pytest.mark.ex3_2
@pytest.mark.ex4_2
def test_skip_nonfinite_skips_the_batch_and_counts_it_in_the_log(tmp_path, no_plots):
    config = tiny_config(inner_lr=0.5, skip_nonfinite=True)
    trainer = Trainer(config, tmp_path / "run", {"train": VectorTasks(nan_at=3), "val": VectorTasks()},
                      model=frozen_first_layer_mlp(), loss_fn=cross_entropy_or_soft)
    trainer.train(progress=False)
    assert trainer.iteration == 4 and trainer.skipped_nonfinite == 1
    train = [r for r in read_metrics(tmp_path / "run/metrics.jsonl") if r["kind"] == "train"]
    assert [r["skipped_nonfinite"] for r in train] == [0, 0, 1, 1]
    assert "query_loss" not in train[2] and "query_loss" in train[3]
    assert all(torch.isfinite(p).all() for p in trainer.params.values())
    assert checkpoints.load(tmp_path / "run/checkpoint.pt")["skipped_nonfinite"] == 1


class SineTasks:
    """Sine regression tasks (float targets), drawn from the generator only."""

    def sample(self, n: int, generator: torch.Generator) -> TaskBatch:
        from mamlkit.data.sinusoid import sample_sinusoid_tasks

        return sample_sinusoid_tasks(n, 5, 5, generator).batch


@pytest.mark.ex2_1
@pytest.mark.ex3_2
@pytest.mark.ex4_2
def test_a_regression_run_validates_with_its_loss_or_the_metric_given(tmp_path):
    from mamlkit.losses import mse
    from mamlkit.models import SineMLP

    config = tiny_config(inner_lr=0.01, meta_lr=1e-3, iterations=2, val_every=2, val_tasks=4)
    tasks = {"train": SineTasks(), "val": SineTasks()}
    trainer = Trainer(config, tmp_path / "a", tasks, model=SineMLP(hidden=8), loss_fn=mse)
    trainer.train(progress=False)
    val = [r for r in read_metrics(tmp_path / "a/metrics.jsonl") if r["kind"] == "val"]
    assert len(val) == 1 and val[0]["val_loss"] > 0 and len(val[0]["val_loss_per_step"]) == 2
    expected = trainer.evaluate("val")["mean"]
    assert val[0]["val_loss"] == pytest.approx(expected)

    def mean_absolute_error(outputs, targets):
        return (outputs - targets).abs().mean(dim=(-2, -1))

    trainer = Trainer(config, tmp_path / "b", tasks, model=SineMLP(hidden=8), loss_fn=mse,
                      metric=mean_absolute_error)
    trainer.train(progress=False)
    val = [r for r in read_metrics(tmp_path / "b/metrics.jsonl") if r["kind"] == "val"]
    assert val[0]["val_mean_absolute_error"] > 0
    with pytest.raises(TypeError, match="metric must be a function"):
        Trainer(config, tmp_path / "c", tasks, model=SineMLP(hidden=8), loss_fn=mse, metric="mae")


def test_trainer_samplers_and_model_are_checked(tmp_path):
    config = tiny_config()
    with pytest.raises(ValueError, match="samplers must be a dict with 'train' and 'val'"):
        Trainer(config, tmp_path, {"train": VectorTasks()})
    with pytest.raises(TypeError, match=r"samplers\['val'\] must have a method sample"):
        Trainer(config, tmp_path, {"train": VectorTasks(), "val": lambda n, g: None})
    with pytest.raises(TypeError, match="model must be a torch.nn.Module"):
        Trainer(config, tmp_path, {"train": VectorTasks(), "val": VectorTasks()}, model="conv4")


@pytest.mark.ex2_1
def test_the_trainers_before_metrics_describe_theta_before_its_update(tmp_path):
    config = tiny_config(meta_lr=1.0)  # a large step: θ after it is far from θ before
    trainer = Trainer(config, tmp_path / "run", samplers(config))
    theta = {n: p.detach().clone() for n, p in trainer.params.items()}
    same_draw = torch.Generator().set_state(trainer.task_generator.get_state())
    tasks = samplers(config)["train"].sample(config.meta_batch_size, same_draw)  # the tasks step() draws
    with torch.no_grad():
        expected = cross_entropy(torch.stack([forward(trainer.model, theta, x) for x in tasks.x_query]),
                                 tasks.y_query).mean().item()
    metrics = trainer.step(metrics_before=True)
    assert metrics["query_before_loss"] == pytest.approx(expected, rel=1e-6), (
        "the 'before adaptation' loss must be that of θ before this step's update")


@pytest.mark.ex3_3
def test_init_from_starts_theta_and_rates_from_a_weights_file_with_a_fresh_optimiser(tmp_path, no_plots):
    source = Trainer(tiny_config(learn_inner_lrs=True, seed=5), tmp_path / "source", samplers(tiny_config()))
    with torch.no_grad():
        for rate in source.inner_lrs.values():
            rate.fill_(0.25)
    path = source.export(tmp_path / "source.pt")
    config = tiny_config(learn_inner_lrs=True, init_from=str(path), meta_lr=3e-3)
    warm = Trainer(config, tmp_path / "warm", samplers(config))
    assert all(torch.equal(warm.params[n], p.detach()) for n, p in source.params.items())
    assert all(rate.item() == 0.25 for rate in warm.inner_lrs.values())
    assert warm.iteration == 0 and not warm.optimizer.state
    cold = Trainer(tiny_config(learn_inner_lrs=True), tmp_path / "cold", samplers(config))
    assert not torch.equal(cold.params["head.weight"], warm.params["head.weight"])
    assert warm.warm_start["sha256"] == checkpoints.sha256(path) and warm.warm_start["iterations"] == 0
    # A resumed warm start continues from its own checkpoint, not from the file again.
    warm.save_checkpoint()
    path.unlink()
    resumed = Trainer(config, tmp_path / "warm", samplers(config))
    assert resumed.resume_if_possible() and resumed.warm_start == warm.warm_start


@pytest.mark.ex3_3
def test_init_from_refuses_another_network_and_dropping_learned_rates(tmp_path):
    path = Trainer(tiny_config(learn_inner_lrs=True), tmp_path / "s", samplers(tiny_config())).export(tmp_path / "s.pt")
    with pytest.raises(ValueError, match="n_way=3, this run n_way=4"):
        Trainer(tiny_config(n_way=4, learn_inner_lrs=True, init_from=str(path)), tmp_path / "a", samplers(tiny_config(n_way=4)))
    with pytest.raises(ValueError, match="--learn-inner-lrs"):
        Trainer(tiny_config(init_from=str(path)), tmp_path / "b", samplers(tiny_config()))
