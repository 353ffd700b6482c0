"""The command line: bad input gets a clear message and exit status 2, never a traceback."""

import pytest

from mamlkit.cli import build_parser, main


def run(argv, capsys):
    status = main(argv)
    return status, capsys.readouterr()


@pytest.mark.parametrize("argv,message", [
    (["--n-way", "1"], "n_way must be at least 2"),
    (["--k-shot", "0"], "k_shot must be a positive integer, got 0"),
    (["--inner-steps", "-1"], "inner_steps must be >= 0, got -1"),
    (["--meta-lr", "0"], "meta_lr > 0"),
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

    from mamlkit.train import TrainConfig

    options = build_parser()._subparsers._group_actions[0].choices["train"]._option_string_actions
    for field in fields(TrainConfig):
        assert "--" + field.name.replace("_", "-") in options, field.name


def test_boolean_options_take_only_true_or_false(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["train", "--run-dir", str(tmp_path), "--first-order", "maybe"])
    assert "expected true or false" in capsys.readouterr().err


def test_task_chunk_size_takes_a_number_or_all():
    args = build_parser().parse_args(["train", "--run-dir", "x", "--task-chunk-size", "all"])
    assert args.task_chunk_size is None
    args = build_parser().parse_args(["train", "--run-dir", "x", "--task-chunk-size", "4"])
    assert args.task_chunk_size == 4


def test_a_zero_task_chunk_is_refused(tmp_path, capsys):
    status, out = run(["train", "--run-dir", str(tmp_path / "run"), "--task-chunk-size", "0"], capsys)
    assert status == 2 and "task_chunk_size must be a positive integer or None" in out.err
