"""Every command fails well: one ``error:`` line and an exit status, never a traceback.

A learner offline, behind a proxy, or holding a file from somewhere else meets these first.
Exit status 2: the command cannot work as typed (bad option, setting out of range, a file that
is not what the command needs). Exit status 1: the work failed (no network, a folder that
cannot be written, data that fails its checks). Nothing here touches the network: ``urlopen``
is replaced wherever a download could start, and the loader is made to fail loudly where the
test proves that a check happens before any data is loaded.
"""

from __future__ import annotations

import dataclasses
import io
import math
import os
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

import pytest
import torch

from mamlkit.data import omniglot
from mamlkit.models import Conv4
from mamlkit.run.cli import main
from mamlkit.run.config import TrainConfig

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "assets" / "omniglot_5w1s.pt"
URL = omniglot.OMNIGLOT_URLS["images_background.zip"]


def run(argv, capsys):
    status = main(argv)
    out = capsys.readouterr()
    assert "Traceback" not in out.err
    return status, out


def one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


@pytest.fixture
def no_data(tmp_path, monkeypatch):
    """No MAMLKIT_DATA and an empty cache folder of this test's own."""
    monkeypatch.delenv("MAMLKIT_DATA", raising=False)
    monkeypatch.setenv("MAMLKIT_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "omniglot"


@pytest.fixture
def offline(monkeypatch):
    """The network is unreachable, as on a train or behind a blocking proxy."""

    def unreachable(url, *args, **kwargs):
        raise urllib.error.URLError(OSError(-2, "Name or service not known"))

    monkeypatch.setattr(urllib.request, "urlopen", unreachable)


@pytest.fixture
def data_never_loaded(monkeypatch):
    """Make any attempt to find or load Omniglot fail the test: checks must come first."""

    def forbidden(*args, **kwargs):
        raise AssertionError("Omniglot was loaded before the settings were checked")

    monkeypatch.setattr(omniglot, "load_omniglot", forbidden)
    monkeypatch.setattr(omniglot, "find_omniglot", forbidden)


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*")) if folder.exists() else []


# ------------------------------------------------------------------- (a) offline first run


def test_offline_first_run_load_omniglot_explains(no_data, offline):
    with pytest.raises(FileNotFoundError) as error:
        omniglot.load_omniglot(progress=False)
    message = str(error.value)
    assert URL in message and "Name or service not known" in message
    assert str(no_data) in message  # where the zips are expected
    assert "by hand" in message and "MAMLKIT_DATA" in message  # the two ways out
    assert leftovers(no_data) == []  # nothing half-written


def test_offline_first_run_evaluate_gives_one_line(no_data, offline, capsys):
    status, out = run(["evaluate", str(SHIPPED), "--tasks", "5"], capsys)
    line = one_error_line(out.err)
    assert status == 1
    assert URL in line and "Name or service not known" in line and str(no_data) in line
    assert "data --from FOLDER" in line and "MAMLKIT_DATA" in line
    assert leftovers(no_data) == []


def test_offline_data_command_says_what_to_do(no_data, offline, capsys):
    status, out = run(["data"], capsys)
    assert status == 1
    assert str(no_data) in out.out and "missing" in out.out
    assert URL in out.out and "--from FOLDER" in out.out and "MAMLKIT_DATA" in out.out


def fake_built_cache(folder: Path) -> None:
    """A preprocessed cache as the loader writes it: every published character, blank images."""
    import json

    import numpy as np

    names = [f"{alphabet}/character{i:02d}"
             for alphabets in (omniglot.BACKGROUND_ALPHABETS, omniglot.EVALUATION_ALPHABETS)
             for alphabet, count in alphabets.items() for i in range(1, count + 1)]
    images = np.zeros((len(names), 20, 28, 28), dtype=np.uint8)
    images[:, :, 10:18, 10:18] = 255
    background = [name.split("/")[0] in omniglot.BACKGROUND_ALPHABETS for name in names]
    fingerprint = json.dumps({"version": omniglot.PREPROCESSING_VERSION, "size": 28, "sources": {}})
    folder.mkdir(parents=True, exist_ok=True)
    np.savez(folder / omniglot.CACHE_FILE, images=images, characters=np.array(sorted(names)),
             background=np.array([b for _, b in sorted(zip(names, background))]), fingerprint=np.array(fingerprint))


@pytest.mark.ex4_1
def test_offline_with_a_built_cache_and_no_zips_is_ready(no_data, offline, capsys):
    fake_built_cache(no_data)
    status, out = run(["data"], capsys)
    assert status == 0 and "Ready: mamlkit uses the preprocessed images in" in out.out
    assert "downloads the zips" not in out.out
    status, out = run(["evaluate", str(SHIPPED), "--tasks", "2", "--inner-steps", "1"], capsys)
    assert status == 0 and "2 test tasks" in out.out, out.err


def test_the_download_size_is_the_same_in_the_data_command_and_the_readme(no_data, offline, capsys):
    status, out = run(["data"], capsys)
    assert f"downloads the zips ({omniglot.DOWNLOAD_SIZE})" in out.out
    readme = (REPO / "README.md").read_text()
    if "## Two commands" in readme:  # the course README (the student edition has its own)
        assert f"on first use ({omniglot.DOWNLOAD_SIZE}, see" in readme
    assert f"({omniglot.DOWNLOAD_SIZE})" in (REPO / "docs" / "command_line.md").read_text()
    # The figure is the published zips' size (what is downloaded): 9,464,212 + 6,462,886 bytes.
    assert omniglot.DOWNLOAD_SIZE == f"about {(9_464_212 + 6_462_886) / 1e6:.0f} MB"


def test_offline_download_command_gives_one_line_and_leaves_nothing(no_data, offline, capsys):
    status, out = run(["data", "--download", "--no-progress"], capsys)
    assert status == 1
    assert URL in one_error_line(out.err)
    assert leftovers(no_data) == []


# ------------------------------------------------------------- (b), (c) and other files


def test_truncated_checkpoint_is_named(tmp_path, capsys, data_never_loaded):
    cut = tmp_path / "cut.pt"
    cut.write_bytes(SHIPPED.read_bytes()[: SHIPPED.stat().st_size // 2])
    status, out = run(["evaluate", str(cut)], capsys)
    line = one_error_line(out.err)
    assert status == 2
    assert "this file is not a complete checkpoint (" in line and str(cut) in line


def test_plain_state_dict_says_what_it_holds_and_how_to_make_a_weights_file(tmp_path, capsys, data_never_loaded):
    path = tmp_path / "mine.pt"
    torch.save(Conv4(5).state_dict(), path)
    status, out = run(["evaluate", str(path)], capsys)
    line = one_error_line(out.err)
    assert status == 2
    assert "plain state dict of 14 tensors" in line and "model.state_dict()" in line  # what it holds
    assert "'config'" in line and "'params'" in line  # what mamlkit expects
    assert "python -m mamlkit export" in line and "save_weights" in line  # how to make one


def test_save_weights_makes_a_file_that_loads(tmp_path):
    from mamlkit.run.checkpoints import save_weights
    from mamlkit.run.saved_models import load_weights

    model = Conv4(5, channels=8)
    path = save_weights(tmp_path / "mine.pt", dict(model.named_parameters()), TrainConfig(channels=8))
    _, params, inner_lr, config = load_weights(path)
    assert config["n_way"] == 5 and inner_lr == 0.4
    assert all(torch.equal(params[n], p) for n, p in model.named_parameters())


def test_checkpoint_of_a_newer_format_is_refused(tmp_path, capsys, data_never_loaded):
    state = torch.load(SHIPPED, weights_only=True)
    state["format"] = 99
    torch.save(state, tmp_path / "future.pt")
    status, out = run(["evaluate", str(tmp_path / "future.pt")], capsys)
    assert status == 2 and "format 99, written by a newer mamlkit" in one_error_line(out.err)


class NotATensor:
    """Any class: ``weights_only=True`` refuses to unpickle it."""


def test_a_pickle_that_weights_only_refuses(tmp_path, capsys, data_never_loaded):
    torch.save({"config": NotATensor(), "params": {}}, tmp_path / "unsafe.pt")
    status, out = run(["evaluate", str(tmp_path / "unsafe.pt")], capsys)
    line = one_error_line(out.err)
    assert status == 2 and "could run any code" in line and "weights_only=True" in line


def test_a_folder_passed_as_checkpoint(tmp_path, capsys, data_never_loaded):
    shutil.copy(SHIPPED, tmp_path / "checkpoint.pt")
    status, out = run(["evaluate", str(tmp_path)], capsys)
    line = one_error_line(out.err)
    assert status == 2 and "is a folder, not a checkpoint file" in line
    assert str(tmp_path / "checkpoint.pt") in line


@pytest.mark.parametrize("content,message", [
    (b"", "is empty (0 bytes)"),
    (b"n_way,accuracy\n5,0.99\n", "is not a file torch.save wrote"),
])
def test_an_empty_or_foreign_file(tmp_path, capsys, data_never_loaded, content, message):
    (tmp_path / "x.pt").write_bytes(content)
    status, out = run(["evaluate", str(tmp_path / "x.pt")], capsys)
    assert status == 2 and message in one_error_line(out.err)


def test_tensors_that_do_not_fit_the_recorded_n_way(tmp_path, capsys, data_never_loaded):
    state = torch.load(SHIPPED, weights_only=True)
    state["config"]["n_way"] = 20  # the file says 20-way; its head has 5 outputs
    torch.save(state, tmp_path / "mixed.pt")
    status, out = run(["evaluate", str(tmp_path / "mixed.pt")], capsys)
    line = one_error_line(out.err)
    assert status == 2 and "do not fit the network its settings describe (n_way=20" in line


# ------------------------------------------------------------ options checked before data


@pytest.mark.parametrize("argv,message", [
    (["--tasks", "1"], "at least 2"),
    (["--inner-steps", "-1"], "inner_steps must be an integer >= 0, got -1"),
    (["--device", "gpu"], "device must be a torch device such as 'cpu'"),
])
def test_evaluate_options_are_checked_before_data(capsys, data_never_loaded, argv, message):
    status, out = run(["evaluate", str(SHIPPED), *argv], capsys)
    assert status == 2 and message in one_error_line(out.err)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_on_a_machine_without_it(capsys, data_never_loaded):
    status, out = run(["evaluate", str(SHIPPED), "--device", "cuda"], capsys)
    assert status == 2 and "CUDA is not available on this machine" in one_error_line(out.err)


def test_unknown_split_is_a_usage_error(capsys, data_never_loaded):
    with pytest.raises(SystemExit) as exit_:
        main(["evaluate", str(SHIPPED), "--split", "testing"])
    assert exit_.value.code == 2
    assert "invalid choice: 'testing'" in capsys.readouterr().err


def test_json_under_a_file_is_refused_before_the_work(tmp_path, capsys, data_never_loaded):
    (tmp_path / "notes").write_text("a file")
    status, out = run(["evaluate", str(SHIPPED), "--json", str(tmp_path / "notes" / "r.json")], capsys)
    assert status == 2 and f"{tmp_path / 'notes'} is a file, not a folder" in one_error_line(out.err)
    status, out = run(["evaluate", str(SHIPPED), "--json", str(tmp_path)], capsys)
    assert status == 2 and "is a folder; give a file name" in one_error_line(out.err)


@pytest.mark.parametrize("argv,message", [
    (["--k-shot", "5", "--n-query", "16"], "k_shot + n_query = 5 + 16 = 21, but each Omniglot character has only 20"),
    (["--n-way", "120"], "the 'maml' split has only 100 validation characters"),
    (["--split", "alphabet"], "split must be one of 'maml', 'vinyals', got 'alphabet'"),
    (["--inner-lr", "nan"], "inner_lr must be a finite number >= 0, got nan"),
    (["--meta-lr", "inf"], "meta_lr must be a finite number > 0, got inf"),
])
def test_training_settings_are_checked_before_data(tmp_path, capsys, data_never_loaded, argv, message):
    status, out = run(["train", "--run-dir", str(tmp_path / "run"), *argv], capsys)
    assert status == 2 and message in one_error_line(out.err)


# --------------------------------------------------------------------------- run folders


def test_run_folder_that_is_a_file(tmp_path, capsys, data_never_loaded):
    (tmp_path / "run").write_text("notes")
    status, out = run(["train", "--run-dir", str(tmp_path / "run")], capsys)
    assert status == 2 and "is a file, not a folder" in one_error_line(out.err)
    status, out = run(["train", "--run-dir", str(tmp_path / "run" / "sub")], capsys)
    assert status == 2 and f"is inside {tmp_path / 'run'}, which is a file" in one_error_line(out.err)


def test_read_only_run_folder(tmp_path, capsys, data_never_loaded, monkeypatch):
    import mamlkit.run.cli

    def read_only(*args, **kwargs):  # what a read-only folder answers (root ignores chmod)
        raise PermissionError(13, "Permission denied", str(tmp_path / "run"))

    monkeypatch.setattr(mamlkit.run.cli.tempfile, "TemporaryFile", read_only)
    status, out = run(["train", "--run-dir", str(tmp_path / "run")], capsys)
    line = one_error_line(out.err)
    assert status == 1 and "cannot write in the run folder" in line and "Permission denied" in line


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_run_folder_for_real(tmp_path, capsys, data_never_loaded):
    (tmp_path / "run").mkdir()
    (tmp_path / "run").chmod(0o500)
    try:
        status, out = run(["train", "--run-dir", str(tmp_path / "run")], capsys)
    finally:
        (tmp_path / "run").chmod(0o700)
    assert status == 1 and "cannot write in the run folder" in one_error_line(out.err)


def fake_checkpoint(run_dir: Path, **settings) -> Path:
    from mamlkit.run import checkpoints

    config = dataclasses.asdict(TrainConfig(**settings))
    return checkpoints.atomic_save({"config": config, "iteration": 3, "params": {}}, run_dir / "checkpoint.pt")


@pytest.mark.parametrize("where, message", [
    ("/proc/nope/x.pt", "--export /proc/nope/x.pt: cannot write in /proc/nope"),
    ("FOLDER", "--export {folder} is a folder; give a file name, e.g. {folder}/model.pt"),
])
def test_an_export_file_that_cannot_be_written_is_refused_before_training(tmp_path, capsys, data_never_loaded,
                                                                          where, message):
    folder = tmp_path / "e2"
    folder.mkdir()
    where = str(folder) if where == "FOLDER" else where
    if where.startswith("/proc") and not Path("/proc/self").is_dir():
        pytest.skip("needs Linux's /proc, where no folder can be created")
    status, out = run(["train", "--run-dir", str(tmp_path / "run"), "--export", where], capsys)
    assert status in (1, 2) and message.format(folder=folder) in one_error_line(out.err)


@pytest.mark.parametrize("argv, message", [
    (["--inner-lr", "-1"], "error: inner_lr must be >= 0 (0 adapts nothing), got -1.0"),
    (["--task-chunk-size", "0"], "expected a positive number of tasks or 'all' (all tasks at once), got '0'"),
])
def test_a_setting_out_of_range_is_named_alone(tmp_path, capsys, data_never_loaded, argv, message):
    try:
        status = main(["train", "--run-dir", str(tmp_path / "run"), *argv])
    except SystemExit as stop:  # argparse's own usage error
        status = stop.code
    err = capsys.readouterr().err
    assert status == 2 and message in err and "meta_lr" not in err


def test_a_foreign_dict_says_what_it_lacks_and_what_the_command_line_evaluates(tmp_path, capsys, data_never_loaded):
    path = tmp_path / "backbone.pt"
    torch.save({"params": {"w": torch.zeros(2)}, "settings": {"n_way": 5}}, path)
    status, out = run(["evaluate", str(path)], capsys)
    line = one_error_line(out.err)
    assert status == 2 and "with the keys params, settings but no 'config'." in line
    assert "evaluates such files of the Omniglot Conv4 only" in line


def test_a_trainer_export_of_another_model_says_what_the_command_line_evaluates(tmp_path, capsys,
                                                                               data_never_loaded):
    from mamlkit.functional import get_params
    from mamlkit.run.checkpoints import save_weights

    model = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))
    save_weights(tmp_path / "mlp.pt", get_params(model), TrainConfig(n_way=3))
    status, out = run(["evaluate", str(tmp_path / "mlp.pt")], capsys)
    line = one_error_line(out.err)
    assert status == 2 and "holds the weights of another network (0.bias, 0.weight, 2.bias, ...)" in line
    assert "evaluates Conv4 checkpoints made by `python -m mamlkit train`" in line
    assert "mamlkit.evaluate.evaluate(model, params" in line and "blocks." not in line


def test_resume_with_changed_settings_is_refused_before_data(tmp_path, capsys, data_never_loaded):
    fake_checkpoint(tmp_path / "run", n_way=5)
    status, out = run(["train", "--run-dir", str(tmp_path / "run"), "--n-way", "20"], capsys)
    line = one_error_line(out.err)
    assert status == 2 and "n_way=5 (now 20)" in line and "another --run-dir" in line


def test_resume_with_other_bookkeeping_settings_passes_the_check(tmp_path, capsys, data_never_loaded):
    fake_checkpoint(tmp_path / "run")
    argv = ["train", "--run-dir", str(tmp_path / "run"), "--log-every", "3", "--val-every", "7",
            "--checkpoint-every", "5", "--val-tasks", "9", "--eval-inner-steps", "5", "--skip-nonfinite"]
    # Past the resume check, the data is loaded: here the stand-in that fails the test says so.
    with pytest.raises(AssertionError, match="Omniglot was loaded"):
        main(argv)


def test_resume_from_a_damaged_checkpoint(tmp_path, capsys, data_never_loaded):
    path = fake_checkpoint(tmp_path / "run")
    path.write_bytes(path.read_bytes()[:200])
    status, out = run(["train", "--run-dir", str(tmp_path / "run")], capsys)
    assert status == 2 and "not a complete checkpoint" in one_error_line(out.err)


def test_export_of_an_unfinished_run_folder(tmp_path, capsys, data_never_loaded):
    fake_checkpoint(tmp_path / "run")
    status, out = run(["export", "--run-dir", str(tmp_path / "run"), "--out", str(tmp_path / "m.pt")], capsys)
    assert status == 2 and "it has no metrics.jsonl" in one_error_line(out.err)


# ---------------------------------------------------------------------------- downloads


class Response:
    """A stand-in for urlopen's answer: ``length`` bytes announced, ``body`` sent."""

    def __init__(self, body: bytes, length: int, interrupt: bool = False):
        self.stream, self.headers, self.interrupt = io.BytesIO(body), {"Content-Length": str(length)}, interrupt

    def read(self, n=-1):
        if self.interrupt:
            raise KeyboardInterrupt  # Ctrl-C in the middle of the download
        return self.stream.read(n)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_download_cut_short_leaves_nothing(no_data, monkeypatch, capsys):
    monkeypatch.setattr(urllib.request, "urlopen", lambda url, timeout: Response(b"x" * 500, 1000))
    status, out = run(["data", "--download", "--no-progress"], capsys)
    line = one_error_line(out.err)
    assert status == 1 and "stopped after 500 of 1,000 bytes" in line and URL in line
    assert leftovers(no_data) == []


def test_download_interrupted_with_ctrl_c_leaves_nothing(no_data, monkeypatch, capsys):
    monkeypatch.setattr(urllib.request, "urlopen", lambda url, timeout: Response(b"", 1000, interrupt=True))
    status, out = run(["data", "--download", "--no-progress"], capsys)
    assert status == 130 and "interrupted" in out.err
    assert leftovers(no_data) == []


def test_a_cache_folder_that_cannot_be_written(tmp_path, monkeypatch, capsys, offline):
    (tmp_path / "cache").write_text("a file where the cache folder should be")
    monkeypatch.delenv("MAMLKIT_DATA", raising=False)
    monkeypatch.setenv("MAMLKIT_CACHE", str(tmp_path / "cache"))
    status, out = run(["evaluate", str(SHIPPED), "--tasks", "5"], capsys)
    line = one_error_line(out.err)
    assert status == 1 and f"Could not save Omniglot in the cache folder {tmp_path / 'cache' / 'omniglot'}" in line
    assert "MAMLKIT_CACHE" in line


def test_data_folder_that_is_a_file(tmp_path, monkeypatch, capsys):
    (tmp_path / "omniglot").write_text("not a folder")
    monkeypatch.setenv("MAMLKIT_DATA", str(tmp_path / "omniglot"))
    status, out = run(["evaluate", str(SHIPPED), "--tasks", "5"], capsys)
    assert status == 2 and "is a file, not a folder" in one_error_line(out.err)


def test_data_from_a_folder_with_a_damaged_zip(tmp_path, no_data, capsys):
    source = tmp_path / "downloads"
    source.mkdir()
    for name in omniglot.OMNIGLOT_MD5:
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            archive.writestr(f"{name[:-4]}/Latin/character01/0001_01.png", b"x" * 1000)
        (source / name).write_bytes(buffer.getvalue()[:300])
    status, out = run(["data", "--from", str(source)], capsys)
    line = one_error_line(out.err)
    assert status == 1 and "is not a usable Omniglot zip" in line and str(source) in line
    assert leftovers(no_data) == []


def real_data() -> Path | None:
    folder = os.environ.get("MAMLKIT_DATA")
    if folder and all((Path(folder) / name).is_file() for name in omniglot.OMNIGLOT_MD5):
        return Path(folder)
    return None


@pytest.mark.skipif(real_data() is None, reason="needs MAMLKIT_DATA with the Omniglot zips")
def test_data_from_a_folder_copies_the_checked_pair(tmp_path, monkeypatch, capsys):
    source = real_data()
    monkeypatch.delenv("MAMLKIT_DATA")
    monkeypatch.setenv("MAMLKIT_CACHE", str(tmp_path / "cache"))
    status, out = run(["data", "--from", str(source)], capsys)
    assert status == 0 and "Ready" in out.out
    for name in omniglot.OMNIGLOT_MD5:
        assert (tmp_path / "cache" / "omniglot" / name).read_bytes() == (source / name).read_bytes()


def test_data_command_with_a_complete_folder_says_ready(tmp_path, monkeypatch, capsys):
    for name in omniglot.OMNIGLOT_MD5:
        (tmp_path / name).write_bytes(b"a re-packed copy")
    monkeypatch.setenv("MAMLKIT_DATA", str(tmp_path))
    monkeypatch.setenv("MAMLKIT_CACHE", str(tmp_path / "cache"))
    status, out = run(["data"], capsys)
    assert status == 0 and f"Ready: mamlkit uses {tmp_path} ($MAMLKIT_DATA)" in out.out
    assert "re-packed copy (md5 differs from the published zip)" in out.out


@pytest.mark.skipif(real_data() is None, reason="needs MAMLKIT_DATA with the Omniglot zips")
def test_data_download_fetches_verifies_and_checks(tmp_path, monkeypatch, capsys):
    from mamlkit.data.download import file_md5

    source = real_data()
    for name in omniglot.OMNIGLOT_MD5:  # "download" the local copy, with its own md5 as the published one
        monkeypatch.setitem(omniglot.OMNIGLOT_URLS, name, (source / name).as_uri())
        monkeypatch.setitem(omniglot.OMNIGLOT_MD5, name, file_md5(source / name))
    monkeypatch.delenv("MAMLKIT_DATA")
    monkeypatch.setenv("MAMLKIT_CACHE", str(tmp_path / "cache"))
    status, out = run(["data", "--download", "--no-progress"], capsys)
    assert status == 0 and "both zips present and checked" in out.out and "Ready" in out.out
    assert sorted(leftovers(tmp_path / "cache" / "omniglot")) == sorted(omniglot.OMNIGLOT_MD5)


def test_a_non_finite_training_step_ends_with_one_line(tmp_path, capsys, monkeypatch):
    import mamlkit.run.train

    def refused(self, progress=True):
        raise FloatingPointError("training stopped at step 7: the query loss is nan; inner_lr may be too large")

    monkeypatch.setattr(mamlkit.run.train, "omniglot_task_samplers", lambda config: {})
    monkeypatch.setattr(mamlkit.run.train.Trainer, "train", refused)
    status, out = run(["train", "--run-dir", str(tmp_path / "run")], capsys)
    assert status == 1 and "the query loss is nan" in one_error_line(out.err)


# --------------------------------------------------------------------------- debugging


def test_debug_shows_the_traceback(tmp_path, monkeypatch):
    from mamlkit.errors import CheckpointError

    with pytest.raises(CheckpointError):
        main(["evaluate", str(tmp_path / "none.pt"), "--debug"])
    monkeypatch.setenv("MAMLKIT_DEBUG", "1")
    with pytest.raises(CheckpointError):
        main(["evaluate", str(tmp_path / "none.pt")])


def test_an_internal_error_keeps_its_traceback(monkeypatch):
    import mamlkit.run.saved_models

    def bug(*args, **kwargs):
        raise RuntimeError("a bug in mamlkit")

    monkeypatch.setattr(mamlkit.run.saved_models, "evaluate_checkpoint", bug)
    with pytest.raises(RuntimeError, match="a bug in mamlkit"):
        main(["evaluate", str(SHIPPED)])


def test_the_real_command_prints_no_traceback(tmp_path):
    cut = tmp_path / "cut.pt"
    cut.write_bytes(SHIPPED.read_bytes()[:1000])
    result = subprocess.run([sys.executable, "-m", "mamlkit", "evaluate", str(cut)], capture_output=True,
                            text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=120)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert one_error_line(result.stderr).startswith(f"error: {cut}: this file is not a complete checkpoint")


# ------------------------------------------------------------------------- TrainConfig


@pytest.mark.parametrize("name", ["inner_lr", "meta_lr"])
@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_non_finite_learning_rates_are_refused(name, value):
    with pytest.raises(ValueError, match=rf"{name} must be a finite number .*got {value}"):
        TrainConfig(**{name: value}).validate()


def test_a_boolean_setting_must_be_a_bool():
    with pytest.raises(ValueError, match=r"first_order must be True or False, got 'false'"):
        TrainConfig(first_order="false").validate()


# ----------------------------------------------------------------------------- notebooks


def test_notebooks_show_mamlkit_errors_as_one_line(capsys):
    from IPython.core.interactiveshell import InteractiveShell

    from mamlkit.classroom.hints import install_exercise_hints
    from mamlkit.errors import show_errors_briefly

    shell = InteractiveShell.instance()
    try:
        install_exercise_hints()
        show_errors_briefly()
        result = shell.run_cell("from mamlkit.errors import DataUnavailableError\n"
                                "raise DataUnavailableError('Could not download Omniglot: offline')")
        assert isinstance(result.error_in_exec, Exception)  # the cell still fails: Run All stops
        shown = capsys.readouterr().out
        assert "DataUnavailableError: Could not download Omniglot: offline" in shown
        assert "Traceback" not in shown and "mamlkit/" not in shown
        shell.run_cell("raise KeyError('a bug')")  # any other error keeps its traceback
        assert "Traceback" in capsys.readouterr().out
        shell.run_cell("raise NotImplementedError('Exercise 2.1: write it')")  # the hints still work
        assert "Exercise 2.1 is not done yet" in capsys.readouterr().out
    finally:
        shell.set_custom_exc((), None)
        InteractiveShell.clear_instance()


# ------------------------------------------------------------- a step that is not finite


class RandomOmniglotLikeTasks:
    """Stand-in for the Omniglot samplers: random 28x28 images, so no data is needed."""

    def __init__(self, config):
        self.n_way, self.k_shot, self.n_query = config.n_way, config.k_shot, config.n_query

    def sample(self, n, generator):
        from mamlkit.tasks import TaskBatch

        labels = torch.arange(self.n_way)
        support = labels.repeat_interleave(self.k_shot).expand(n, -1).clone()
        query = labels.repeat_interleave(self.n_query).expand(n, -1).clone()
        return TaskBatch(torch.rand(n, support.shape[1], 1, 28, 28, generator=generator), support,
                         torch.rand(n, query.shape[1], 1, 28, 28, generator=generator), query)


@pytest.fixture
def stand_in_tasks(monkeypatch):
    import mamlkit.run.train

    monkeypatch.setattr(mamlkit.run.train, "omniglot_task_samplers",
                        lambda config: {"train": RandomOmniglotLikeTasks(config),
                                        "val": RandomOmniglotLikeTasks(config)})


@pytest.mark.ex2_1
def test_a_non_finite_step_names_the_extreme_rate_and_its_way_out_works(tmp_path, capsys, stand_in_tasks):
    run_dir = str(tmp_path / "nf")
    argv = ["train", "--run-dir", run_dir, "--iterations", "4", "--meta-lr", "1e30", "--meta-batch-size", "2",
            "--val-tasks", "2", "--channels", "4", "--no-progress", "--checkpoint-every", "1", "--log-every", "1"]
    status, out = run(argv, capsys)
    line = one_error_line(out.err)
    assert status == 1 and "meta_lr=1e+30 is too large" in line and "inner_lr=0.4 too large" not in line
    assert "--skip-nonfinite" in line and "another run folder" in line
    # The way out the message names is accepted on resume, and so are bookkeeping settings.
    status, out = run(argv + ["--skip-nonfinite"], capsys)  # the learning curve skips the skipped steps
    assert status == 0, out.err
    assert (Path(run_dir) / "learning_curve.png").is_file() and (Path(run_dir) / "model.pt").is_file()
    assert checkpoints_load(Path(run_dir) / "checkpoint.pt")["skipped_nonfinite"] >= 1


def checkpoints_load(path):
    from mamlkit.run import checkpoints

    return checkpoints.load(path)


def test_skip_nonfinite_has_a_help_text():
    from mamlkit.run.cli import build_parser

    train = build_parser()._subparsers._group_actions[0].choices["train"]
    assert "skip a meta-step whose loss or meta-gradient is inf/nan" in " ".join(train.format_help().split())
