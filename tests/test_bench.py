"""The benchmark runs, prints its tables, and every contender computes the same meta-gradient.

Nothing here asserts a time: timings depend on the machine and on what else runs on it.
"""

import dataclasses
import importlib
import json
import sys
from pathlib import Path

import pytest
import torch

from mamlkit.losses import cross_entropy
from mamlkit.outer_loop import meta_loss
from mamlkit.run.cli import main as cli_main

# The benchmark is a script of the repository (benchmarks/bench.py), not part of the package.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
bench = importlib.import_module("bench")

QUICK = ["--quick", "--repeats", "1"]


def expected_contenders():
    return [c for c in bench.CONTENDERS if bench.contender_available(c)]


def table_rows(out: str, contender: str) -> list:
    return [line for line in out.splitlines() if line.startswith(f"| {contender} |")]


@pytest.mark.ex2_1
def test_quick_run_prints_a_table_per_setting_and_the_gradients_agree(tmp_path, capsys):
    path = tmp_path / "bench.json"
    assert bench.main(QUICK + ["--skip-memory", "--json", str(path)]) == 0
    out = capsys.readouterr().out
    assert "machine:" in out and "torch " + torch.__version__ in out
    for name in bench.SETTINGS:
        assert f"## {name}:" in out
    for contender in expected_contenders():
        assert len(table_rows(out, contender)) == len(bench.SETTINGS), out
    results = json.loads(path.read_text())
    assert set(results["settings"]) == set(bench.SETTINGS)
    for name, entry in results["settings"].items():
        assert set(entry["contenders"]) == set(expected_contenders())
        for contender, r in entry["contenders"].items():
            assert r["max_rel_grad_error"] <= bench.TOLERANCE, (
                f"{contender} on {name}: meta-gradient differs from the loop reference by "
                f"{r['max_rel_grad_error']:.1e} (relative L2)")
            assert len(r["times_s"]) == 1


@pytest.mark.ex2_1
def test_memory_table_covers_inner_steps_and_the_chunked_fast_path(tmp_path, capsys):
    path = tmp_path / "bench.json"
    argv = QUICK + ["--settings", "paper-5way", "--contenders", "mamlkit-fast", "loop-reference",
                    "--memory-steps", "1", "2", "--json", str(path)]
    assert bench.main(argv) == 0
    out = capsys.readouterr().out
    assert "## Memory of the second-order step vs inner steps" in out
    rows = json.loads(path.read_text())["memory_vs_inner_steps"]
    labels = {(r["inner_steps"], r["contender"]) for r in rows}
    for steps in (1, 2):
        assert {(steps, "loop-reference"), (steps, "mamlkit-fast"),
                (steps, "mamlkit-fast, task_chunk_size=1")} <= labels
    for row in rows:
        assert row["memory"]["peak_bytes"] > 0, row
        if row["contender"] != "loop-reference":
            assert row["rel_grad_error"] <= bench.TOLERANCE, row


def test_rss_probe_runs_in_a_fresh_process_and_returns_the_same_gradient():
    setting = bench.quick(bench.SETTINGS["paper-5way"])
    result, grads = bench.measure_memory(setting, bench.LOOP, torch.device("cpu"), seed=0, method="rss")
    assert "error" not in result, result
    assert result["peak_bytes"] >= 0
    here = bench.build_step(bench.make_problem(setting), bench.LOOP)()
    assert bench.relative_error(grads, here) < 1e-6


@pytest.mark.ex2_1
def test_missing_higher_is_skipped_with_a_note(monkeypatch, capsys):
    monkeypatch.setattr(bench, "higher_available", lambda: False)
    assert bench.main(QUICK + ["--settings", "paper-5way", "--skip-memory"]) == 0
    out = capsys.readouterr().out
    assert "higher skipped: not installed" in out
    assert not table_rows(out, "higher")
    assert table_rows(out, "mamlkit-fast") and table_rows(out, "loop-reference")


@pytest.mark.ex2_1
def test_missing_torchopt_is_skipped_with_a_note(monkeypatch, capsys):
    monkeypatch.setattr(bench, "torchopt_available", lambda: False)
    assert bench.main(QUICK + ["--settings", "paper-5way", "--skip-memory"]) == 0
    out = capsys.readouterr().out
    assert "torchopt skipped: not installed" in out
    assert not table_rows(out, "torchopt")
    assert table_rows(out, "mamlkit-fast") and table_rows(out, "loop-reference")


@pytest.mark.parametrize("contender", [bench.HIGHER, bench.TORCHOPT])
def test_library_contenders_compute_the_second_order_meta_gradient(contender):
    if not bench.contender_available(contender):
        pytest.skip(f"{contender} is not installed (pip install -r benchmarks/requirements.txt)")
    # Several inner steps, float64: the libraries must agree with the loop to rounding error,
    # which a first-order or otherwise different gradient does not.
    setting = dataclasses.replace(bench.quick(bench.SETTINGS["paper-5way"]), channels=3, inner_steps=3)
    problem = bench.make_problem(setting, dtype=torch.float64)
    reference = bench.build_step(problem, bench.LOOP)()
    assert bench.relative_error(bench.build_step(problem, contender)(), reference) < 1e-10
    # θ is untouched: running the step again gives the same gradient.
    assert bench.relative_error(bench.build_step(problem, contender)(), reference) < 1e-10


@pytest.mark.ex2_1
def test_the_command_line_reaches_the_benchmark(capsys):
    assert cli_main(["bench", "--"] + QUICK + ["--settings", "cs330", "--skip-memory",
                                               "--contenders", "mamlkit-fast"]) == 0
    assert table_rows(capsys.readouterr().out, "mamlkit-fast")


@pytest.mark.ex2_1
@pytest.mark.ex3_1
@pytest.mark.ex3_2
def test_loop_reference_is_the_course_loop_and_the_tolerance_catches_first_order():
    setting = dataclasses.replace(bench.quick(bench.SETTINGS["paper-5way"]), channels=3, inner_steps=2)
    problem = bench.make_problem(setting, dtype=torch.float64)
    grads = bench.build_step(problem, bench.LOOP)()
    theta = list(problem.params.values())

    def course_gradient(first_order):
        loss, _ = meta_loss(problem.model, problem.params, problem.tasks, cross_entropy,
                            setting.inner_lr, setting.inner_steps, first_order)
        return torch.autograd.grad(loss, theta)

    assert bench.relative_error(grads, course_gradient(first_order=False)) < 1e-10
    # A silently first-order contender would fail the correctness column.
    assert bench.relative_error(course_gradient(first_order=True), grads) > bench.TOLERANCE


def test_the_float64_reference_is_the_loop_on_the_same_problem_in_float64():
    setting = dataclasses.replace(bench.quick(bench.SETTINGS["paper-5way"]), channels=3, inner_steps=2)
    problem = bench.make_problem(setting)
    reference = bench.float64_reference(problem)
    assert all(g.dtype == torch.float64 for g in reference)
    assert all(p.dtype == torch.float32 for p in problem.params.values()), "the problem stays float32"
    # Same θ and tasks: the float32 loop agrees to float32 rounding, a different θ would not.
    assert bench.relative_error(bench.build_step(problem, bench.LOOP)(), reference) < 1e-5
    other = bench.make_problem(setting, seed=1)
    assert bench.relative_error(bench.build_step(other, bench.LOOP)(), reference) > 0.1


def test_speedups_are_relative_to_the_best_contender_other_than_mamlkit_fast():
    ratio = bench.speedups({"mamlkit-fast": 1.0, "loop-reference": 2.0, "higher": 4.0})
    assert ratio == pytest.approx({"mamlkit-fast": 2.0, "loop-reference": 1.0, "higher": 0.5})
    assert bench.speedups({"mamlkit-fast": 1.0}) == {}


def test_relative_error_is_over_all_tensors_at_once():
    expected = [torch.tensor([3.0, 0.0]), torch.tensor([4.0])]
    actual = [torch.tensor([3.0, 0.0]), torch.tensor([4.5])]
    assert bench.relative_error(actual, expected) == pytest.approx(0.5 / 5.0)


@pytest.mark.parametrize("argv", [["--repeats", "0"], ["--threads", "0"], ["--settings", "nope"],
                                  ["--memory-steps", "0"]])
def test_bad_options_are_refused(argv):
    with pytest.raises(SystemExit) as exit_info:
        bench.main(argv)
    assert exit_info.value.code == 2
