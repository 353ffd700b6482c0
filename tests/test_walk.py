"""The student-path walk (mamlkit.classroom.walk) sees a notebook that uses a later exercise.

The whole walk runs in ``.ci/run`` (several minutes); here, one notebook of a copy of the
course with one cell moved: the walk must fail, naming the exercise used too early.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import nbformat
import pytest
from helpers import data_available

from mamlkit.classroom.student import list_source_files
from mamlkit.classroom.walk import _judge, walk_student_path

REPO_ROOT = Path(__file__).resolve().parents[1]

NB04 = "notebooks/04_omniglot_maml.ipynb"


def _copy_course(tmp_path: Path) -> Path:
    copy = tmp_path / "course"
    for rel in list_source_files(REPO_ROOT):
        target = copy / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO_ROOT / rel, target)
    return copy


@pytest.mark.skipif(not data_available(), reason="needs MAMLKIT_DATA with the Omniglot zips")
def test_the_walk_fails_when_a_cell_uses_an_exercise_before_its_section(tmp_path):
    course = _copy_course(tmp_path)
    nb = nbformat.read(course / NB04, as_version=4)
    uses_42 = next(i for i, c in enumerate(nb.cells)
                   if c.cell_type == "code" and c.source.startswith("mean, ci95 = mean_confidence_interval("))
    moved = nb.cells.pop(uses_42)
    nb.cells.insert(2, moved)  # right after the setup cell: before Exercise 4.1 and 4.2
    nbformat.write(nb, course / NB04)
    lines: list[str] = []
    report = walk_student_path(course, notebooks=[NB04], fail_fast=True, log=lines.append)
    assert not report.ok, "\n".join(lines)
    assert "Exercise 4.2" in report.problems[0] and "should be Exercise 4.1" in report.problems[0], report.problems


class _Run:
    def __init__(self, stopped_at, stop_cell, error=None):
        self.notebook, self.solved = "nb.ipynb", ("1.1",)
        self.stopped_at, self.stop_cell, self.error = stopped_at, stop_cell, error


def _nb(*sources):
    return nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(s) for s in sources])


@pytest.mark.parametrize(("run", "expected", "problem"), [
    (_Run(None, None), None, None),                                  # solved: runs clean
    (_Run("2.1", 1), "2.1", None),                                   # stops at its exercise, after the heading
    (_Run("2.1", 0), "2.1", "before its section"),                   # stops before the heading
    (_Run(None, None), "2.1", "runs clean, but should stop"),        # the stub never ran
    (_Run("2.2", 1), "2.1", "the first stop should be Exercise 2.1"),
    (_Run("3.1", 1), None, "which a later notebook sets"),
    (_Run(None, 1, "NameError: x"), None, "NameError"),
])
def test_judge_names_each_way_a_run_can_go_wrong(run, expected, problem):
    nb = _nb("# intro", "## Exercise 2.1 · something")
    found = _judge(nb, run, expected)
    if problem is None:
        assert found is None
    else:
        assert found is not None and problem in found, found
