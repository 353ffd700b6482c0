"""The command line: bad input gets a clear message and exit status 2, never a traceback."""

import pytest

from mamlkit.run.cli import build_parser, main


def run(argv, capsys):
    status = main(argv)
    return status, capsys.readouterr()


@pytest.mark.parametrize("argv,message", [
    (["--n-way", "1"], "n_way must be at least 2"),
    (["--k-shot", "0"], "k_shot must be a positive integer, got 0"),
    (["--inner-steps", "-1"], "inner_steps must be an integer >= 0, got -1"),
    (["--meta-lr", "0"], "meta_lr must be > 0, got 0.0"),
])
def test_bad_training_settings_are_refused(tmp_path, capsys, argv, message):
    status, out = run(["train", "--run-dir", str(tmp_path / "run"), *argv], capsys)
    assert status == 2
    assert message in out.err


def test_a_data_folder_without_the_zips_says_how_to_get_them(tmp_path, capsys):
    status, out = run(["train", "--run-dir", str(tmp_path / "run"), "--data-root", str(tmp_path)], capsys)
    assert status == 2
    assert "images_background.zip" in out.err and "https://" in out.err


def test_a_missing_checkpoint_is_named(tmp_path, capsys):
    status, out = run(["evaluate", str(tmp_path / "nothing.pt")], capsys)
    assert status == 2
    assert "no checkpoint at" in out.err


def test_every_training_setting_is_an_option():
    from dataclasses import fields

    from mamlkit.run.config import TrainConfig

    options = build_parser()._subparsers._group_actions[0].choices["train"]._option_string_actions
    for field in fields(TrainConfig):
        assert "--" + field.name.replace("_", "-") in options, field.name


def test_boolean_options_take_only_true_or_false(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["train", "--run-dir", str(tmp_path), "--first-order", "maybe"])
    assert "expected true or false" in capsys.readouterr().err


@pytest.mark.parametrize("argv,expected", [
    ([], False),
    (["--first-order"], True),
    (["--no-first-order"], False),
    (["--first-order", "true"], True),  # the form older commands and manifests use
    (["--first-order", "false"], False),
    (["--first-order", "--k-shot", "5"], True),
])
def test_boolean_settings_are_flags(argv, expected):
    args = build_parser().parse_args(["train", "--run-dir", "x", *argv])
    assert args.first_order is expected


def test_every_boolean_setting_has_a_no_flag():
    from dataclasses import fields

    from mamlkit.run.config import TrainConfig

    for field in fields(TrainConfig):
        if field.type in ("bool", bool):
            flag = field.name.replace("_", "-")
            assert getattr(build_parser().parse_args(["train", "--run-dir", "x", f"--{flag}"]), field.name) is True
            assert getattr(build_parser().parse_args(["train", "--run-dir", "x", f"--no-{flag}"]), field.name) is False


def test_a_no_flag_takes_no_value(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--run-dir", "x", "--no-rotate", "true"])
    assert "--no-rotate takes no value" in capsys.readouterr().err


class RandomImageTasks:
    """Stand-in Omniglot samplers: 3-way tasks of random 12x12 images."""

    def __init__(self, n_way, k_shot, n_query):
        self.n_way, self.k_shot, self.n_query = n_way, k_shot, n_query

    def sample(self, meta_batch_size, generator):
        import torch

        from mamlkit.tasks import TaskBatch

        T, N, K, Q = meta_batch_size, self.n_way, self.k_shot, self.n_query
        labels = torch.arange(N)
        return TaskBatch(torch.rand(T, N * K, 1, 12, 12, generator=generator),
                         labels.repeat_interleave(K).expand(T, N * K).clone(),
                         torch.rand(T, N * Q, 1, 12, 12, generator=generator),
                         labels.repeat_interleave(Q).expand(T, N * Q).clone())


@pytest.mark.ex2_1
@pytest.mark.ex3_2
@pytest.mark.ex4_2
def test_train_with_the_first_order_flag_trains_first_order(tmp_path, capsys, monkeypatch):
    import torch

    import mamlkit.run.train
    from mamlkit.run import checkpoints

    def stand_in(config):
        tasks = RandomImageTasks(config.n_way, config.k_shot, config.n_query)
        return {"train": tasks, "val": tasks}

    monkeypatch.setattr(mamlkit.run.train, "omniglot_task_samplers", stand_in)
    monkeypatch.setattr(mamlkit.run.train.Trainer, "plot", lambda self: None)
    # Second-order MAML differentiates through the inner gradient (create_graph=True);
    # first-order MAML never does.
    create_graph = []
    grad = torch.autograd.grad

    def spy(*args, **kwargs):
        create_graph.append(bool(kwargs.get("create_graph", False)))
        return grad(*args, **kwargs)

    monkeypatch.setattr(torch.autograd, "grad", spy)
    tiny = ["--no-progress", "--n-way", "3", "--meta-batch-size", "2", "--iterations", "1",
            "--channels", "4", "--val-tasks", "2", "--eval-inner-steps", "1"]
    for flag, second_order in (("--first-order", False), ("--no-first-order", True)):
        create_graph.clear()
        run_dir = tmp_path / flag
        assert main(["train", "--run-dir", str(run_dir), flag, *tiny]) == 0, capsys.readouterr().err
        state = checkpoints.load(run_dir / "checkpoint.pt")
        assert state["config"]["first_order"] is not second_order and state["iteration"] == 1
        assert any(create_graph) is second_order, (flag, create_graph)


def usage_error(argv, capsys) -> str:
    with pytest.raises(SystemExit) as stop:
        main(argv)
    assert stop.value.code == 2
    return capsys.readouterr().err


def test_a_mistyped_option_is_reported_by_its_command_with_a_suggestion(tmp_path, capsys):
    err = usage_error(["train", "--run-dir", str(tmp_path), "--iteratons", "5"], capsys)
    assert "usage: python -m mamlkit train" in err
    assert "python -m mamlkit train: error: unrecognized arguments: --iteratons 5 (did you mean --iterations?)" in err
    # A prefix is not taken as the option it begins (argparse would otherwise guess --iterations).
    err = usage_error(["train", "--run-dir", str(tmp_path), "--iter", "5"], capsys)
    assert "unrecognized arguments: --iter 5" in err
    err = usage_error(["evaluate", "model.pt", "--task", "5"], capsys)
    assert "python -m mamlkit evaluate: error:" in err and "did you mean --tasks?" in err


def test_evaluate_help_explains_every_option():
    evaluate = build_parser().commands["evaluate"]
    text = " ".join(evaluate.format_help().split())
    assert "--device DEVICE cpu, cuda or cuda:N (default: cpu)" in text
    assert "--data-root DATA_ROOT folder with images_background.zip" in text
    assert "seed of the test tasks (default: 0)" in text
