"""Named presets, the cosine meta-learning-rate schedule and first-order warm-up steps.

The training runs are the tiny stand-in runs of ``test_train.py`` (random 12×12 images, a conv4
with 4 channels), so they need no Omniglot.
"""

import dataclasses
import math

import pytest
import torch
from test_train import samplers, tiny_config, without_timing

from mamlkit.run.cli import build_parser, main
from mamlkit.run.config import TrainConfig, evaluation_n_query, meta_lr_at, omniglot_task_samplers
from mamlkit.run.presets import PRESETS, preset, preset_config
from mamlkit.run.run_folder import read_metrics
from mamlkit.run.train import Trainer

# -- the schedule -------------------------------------------------------------------------

def test_constant_schedule_is_the_meta_lr_at_every_step():
    config = TrainConfig(meta_lr=0.003, iterations=10)
    assert [meta_lr_at(config, i) for i in (0, 5, 10)] == [0.003] * 3


def test_cosine_schedule_starts_at_meta_lr_halves_midway_and_ends_at_the_minimum():
    config = TrainConfig(meta_lr=0.004, meta_lr_min=0.001, meta_lr_schedule="cosine", iterations=100)
    assert meta_lr_at(config, 0) == pytest.approx(0.004)
    assert meta_lr_at(config, 50) == pytest.approx(0.0025)
    assert meta_lr_at(config, 25) == pytest.approx(0.001 + 0.003 * (1 + math.cos(math.pi / 4)) / 2)
    assert meta_lr_at(config, 100) == pytest.approx(0.001)
    assert meta_lr_at(config, 150) == pytest.approx(0.001), "past the end it stays at the minimum"
    rates = [meta_lr_at(config, i) for i in range(101)]
    assert all(a >= b for a, b in zip(rates, rates[1:])), "the cosine only goes down"


@pytest.mark.parametrize("changes, word", [
    ({"meta_lr_schedule": "linear"}, "meta_lr_schedule"),
    ({"meta_lr_min": 0.01}, "meta_lr_min"),
    ({"meta_lr_min": -1.0}, "meta_lr_min"),
    ({"first_order_steps": -1}, "first_order_steps"),
    ({"first_order_steps": 1.5}, "first_order_steps"),
])
def test_bad_schedule_settings_are_refused_by_name(changes, word):
    with pytest.raises(ValueError, match=word):
        dataclasses.replace(TrainConfig(meta_lr=0.001), **changes).validate()


# -- the Trainer uses them ----------------------------------------------------------------

@pytest.fixture
def no_plots(monkeypatch):
    monkeypatch.setattr(Trainer, "plot", lambda self: None)


@pytest.mark.ex2_1
def test_every_step_uses_the_scheduled_meta_lr(tmp_path):
    config = tiny_config(meta_lr_schedule="cosine", meta_lr=0.01, meta_lr_min=0.002)
    trainer = Trainer(config, tmp_path, samplers(config))
    for i in range(config.iterations):
        trainer.step()
        assert trainer.optimizer.param_groups[0]["lr"] == meta_lr_at(config, i)
    assert trainer.optimizer.param_groups[0]["lr"] < config.meta_lr


def one_step_update(tmp_path, name, **changes) -> dict:
    config = tiny_config(**changes)
    trainer = Trainer(config, tmp_path / name, samplers(config))
    start = {n: p.detach().clone() for n, p in trainer.params.items()}
    trainer.step()
    return {n: p.detach() - start[n] for n, p in trainer.params.items()}


@pytest.mark.ex2_1
@pytest.mark.ex3_2
def test_warm_up_steps_are_first_order_and_the_later_steps_second_order(tmp_path):
    # θ after each of three steps, for three runs from the same start on the same tasks.
    def trajectory(name, **changes):
        config = tiny_config(iterations=3, **changes)
        trainer = Trainer(config, tmp_path / name, samplers(config))
        points = []
        for _ in range(3):
            trainer.step()
            points.append(torch.cat([p.detach().reshape(-1).clone() for p in trainer.params.values()]))
        return points

    second = trajectory("second")
    first = trajectory("first", first_order=True)
    warm = trajectory("warm", first_order_steps=2)
    assert not torch.allclose(first[1], second[1]), "the test needs first and second order to differ"
    assert torch.equal(warm[0], first[0]) and torch.equal(warm[1], first[1])
    # Step 3 is second-order from the first-order θ: not what first-order MAML would do.
    assert not torch.allclose(warm[2], first[2])


@pytest.mark.ex3_3
@pytest.mark.ex2_1
@pytest.mark.ex3_2
@pytest.mark.ex4_2
def test_a_stopped_and_resumed_scheduled_run_takes_the_same_steps(tmp_path, no_plots):
    changes = dict(meta_lr_schedule="cosine", first_order_steps=2, learn_inner_lrs=True, iterations=5)
    config = tiny_config(**changes)
    straight = Trainer(config, tmp_path / "straight", samplers(config))
    straight.train(progress=False)

    # Ctrl-C while step 2 samples its tasks: step 2 finishes, the run saves and stops there.
    # (A shorter run would not do: the cosine spans `iterations`.)
    with pytest.raises(KeyboardInterrupt):
        Trainer(config, tmp_path / "resumed", samplers(config, interrupt_after=1)).train(progress=False)
    resumed = Trainer(config, tmp_path / "resumed", samplers(config))
    assert resumed.resume_if_possible() and resumed.iteration == 2
    resumed.train(progress=False)

    for name, p in straight.params.items():
        assert torch.equal(resumed.params[name], p), f"{name} differs after resuming"
    for name, t in straight.inner_lrs.items():
        assert torch.equal(resumed.inner_lrs[name], t), f"inner rate {name} differs after resuming"
    assert without_timing(read_metrics(tmp_path / "resumed/metrics.jsonl")) == without_timing(
        read_metrics(tmp_path / "straight/metrics.jsonl"))


# -- presets ------------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_is_a_valid_config(name):
    config = preset_config(name)
    for field, value in PRESETS[name].items():
        assert getattr(config, field) == value


def test_the_paper_preset_is_the_default_and_fast_keeps_the_task_protocol():
    assert preset_config("paper") == TrainConfig()
    fast, paper = preset_config("fast"), TrainConfig()
    # Faster training, the same tasks and evaluation: 5-way 1-shot, second order, and validation
    # and test tasks with the paper's one query per class (training may use more).
    for field in ("n_way", "k_shot", "eval_inner_steps", "inner_steps", "first_order", "split", "rotate"):
        assert getattr(fast, field) == getattr(paper, field), field
    assert evaluation_n_query(fast) == evaluation_n_query(paper) == 1


def test_unknown_preset_is_refused_with_the_choices():
    with pytest.raises(ValueError, match="unknown preset 'quick'.*fast"):
        preset("quick")
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--run-dir", "x", "--preset", "quick"])


def test_preset_config_takes_changes_on_top():
    assert preset_config("fast", iterations=10).iterations == 10
    with pytest.raises(ValueError, match="meta_lr"):
        preset_config("fast", meta_lr=-1.0)


def test_the_command_line_preset_sets_defaults_and_explicit_options_win(monkeypatch):
    import mamlkit.run.cli as cli

    seen = {}
    monkeypatch.setitem(cli.COMMANDS, "train", lambda args: seen.setdefault("args", args) and 0)
    cli.main(["train", "--run-dir", "x", "--preset", "fast", "--iterations", "7"])
    args = seen["args"]
    assert args.iterations == 7
    for field, value in PRESETS["fast"].items():
        if field != "iterations":
            assert getattr(args, field) == value, field
    seen.clear()
    cli.main(["train", "--run-dir", "x"])
    assert seen["args"].meta_batch_size == TrainConfig().meta_batch_size


# -- evaluation queries -------------------------------------------------------------------

def test_evaluation_queries_default_to_the_training_queries_and_bad_values_are_refused():
    assert evaluation_n_query(TrainConfig(n_query=3)) == 3
    assert evaluation_n_query(TrainConfig(n_query=3, eval_n_query=1)) == 1
    for bad in (0, -2, 1.5, True, "1"):
        with pytest.raises(ValueError, match="eval_n_query"):
            TrainConfig(eval_n_query=bad).validate()


def test_the_train_command_takes_eval_n_query():
    parser = build_parser()
    assert parser.parse_args(["train", "--run-dir", "x"]).eval_n_query is None
    assert parser.parse_args(["train", "--run-dir", "x", "--eval-n-query", "1"]).eval_n_query == 1
    # 'none' goes back to "as many as --n-query", also from a preset that sets it.
    assert build_parser("fast").parse_args(["train", "--run-dir", "x", "--eval-n-query", "none"]).eval_n_query is None
    with pytest.raises(SystemExit):
        parser.parse_args(["train", "--run-dir", "x", "--eval-n-query", "0"])


def test_too_many_evaluation_queries_are_refused_naming_the_option(tmp_path, capsys):
    assert main(["train", "--run-dir", str(tmp_path / "run"), "--eval-n-query", "20"]) == 2
    error = capsys.readouterr().err
    assert "--eval-n-query 20" in error and "20 drawings" in error
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("preset_option", [["--preset", "fast"], ["--preset=fast"]])
def test_help_with_a_preset_shows_the_presets_values_as_defaults(preset_option, capsys):
    with pytest.raises(SystemExit):
        main(["train", *preset_option, "--help"])
    shown = " ".join(capsys.readouterr().out.split())
    assert f"(default: {PRESETS['fast']['meta_batch_size']})" in shown.split("--meta-batch-size META_BATCH_SIZE")[-1][:120]
    assert "(default: 1)" in shown.split("--eval-n-query EVAL_N_QUERY")[-1][:120]


@pytest.mark.ex4_1  # the task sampler
def test_training_tasks_have_n_query_and_validation_and_test_tasks_eval_n_query(monkeypatch):
    import mamlkit.data.omniglot as omniglot

    class Data:  # 60 characters of 20 drawings, 28×28: enough for every split of a 5-way task
        images = torch.zeros(60, 20, 28, 28, dtype=torch.uint8)
        characters = [f"alphabet{i // 10}/character{i % 10:02d}" for i in range(60)]

    monkeypatch.setattr(omniglot, "load_omniglot", lambda root=None: Data())
    monkeypatch.setattr(omniglot, "split_characters", lambda characters, scheme: {
        "train": list(range(20)), "val": list(range(20, 40)), "test": list(range(40, 60))})
    config = TrainConfig(n_query=3, eval_n_query=1)
    found = {name: sampler.sample(1, torch.Generator().manual_seed(0)).x_query.shape[1]
             for name, sampler in omniglot_task_samplers(config).items()}
    assert found == {"train": 5 * 3, "val": 5 * 1, "test": 5 * 1}
    found = {name: sampler.sample(1, torch.Generator().manual_seed(0)).x_query.shape[1]
             for name, sampler in omniglot_task_samplers(TrainConfig(n_query=3)).items()}
    assert found == {"train": 15, "val": 15, "test": 15}, "eval_n_query None: the training queries"


@pytest.mark.ex3_3  # learn_inner_lrs: init_inner_lrs
def test_evaluate_checkpoint_uses_the_runs_eval_n_query_unless_told_otherwise(tmp_path, monkeypatch):
    import mamlkit.run.saved_models as saved_models

    config = tiny_config(n_query=2, eval_n_query=1, learn_inner_lrs=True)
    path = Trainer(config, tmp_path / "run", samplers(config)).export(tmp_path / "model.pt")
    seen = []

    def fake_samplers(config):
        seen.append(evaluation_n_query(config))
        stand_in = samplers(dataclasses.replace(config, n_query=evaluation_n_query(config)))
        return {"train": stand_in["train"], "val": stand_in["val"], "test": stand_in["val"]}

    monkeypatch.setattr(saved_models, "omniglot_task_samplers", fake_samplers)
    monkeypatch.setattr("mamlkit.data.omniglot.check_task_settings", lambda *args: None)
    saved_models.evaluate_checkpoint(path, num_tasks=2)
    saved_models.evaluate_checkpoint(path, num_tasks=2, n_query=4)
    assert seen == [1, 4]
