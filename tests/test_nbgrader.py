"""nbgrader: the course folder's graded cells, and real ``generate_assignment`` + ``autograde``.

The first tests need no nbgrader: every exercise's check cell in the course folder carries the
registry's points and nothing else is graded. The last one runs nbgrader itself (the release
``.ci/run`` installs into ``.venv-nbgrader``; it skips with the reason where nbgrader is not
installed), in smoke mode (``CI=true``), on notebook 01 alone (its four exercises' tests take
seconds, so one release and one autograde of three submissions fit in the suite's time):
untouched 0, fully solved full marks, one exercise alone exactly its points. The whole
course is graded the same way by ``python -m mamlkit.classroom.nbgrader_run DIR``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mamlkit.classroom.exercises import EXERCISES, get_exercise
from mamlkit.classroom.nbgrader import ASSIGNMENT, answer_metadata, build_nbgrader_course, grade_id, stamp_notebook
from mamlkit.classroom.nbgrader_run import NBGRADER_VERSION, NbgraderRun, find_nbgrader
from mamlkit.classroom.questions import POINTS as QUESTION_POINTS
from mamlkit.classroom.questions import course_questions
from mamlkit.classroom.student import BEGIN_MARKER

REPO = Path(__file__).resolve().parents[1]

pytestmark = [
    pytest.mark.hidden,  # about the instructor's grading: the student edition has no reference to grade with
    pytest.mark.skipif(BEGIN_MARKER not in (REPO / "mamlkit/inner_loop.py").read_text(encoding="utf-8"),
                       reason="needs the instructor edition's solutions"),
]


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    out = tmp_path_factory.mktemp("nbgrader") / "course"
    notes = build_nbgrader_course(REPO, out)
    return out, notes


def _graded_cells(source: Path) -> dict[str, list[dict]]:
    found: dict[str, list[dict]] = {}
    for path in sorted(source.glob("*.ipynb")):
        for cell in json.loads(path.read_text(encoding="utf-8"))["cells"]:
            if "nbgrader" in cell.get("metadata", {}):
                found.setdefault(path.name, []).append(cell)
    return found


def test_every_exercise_has_one_graded_check_cell_with_its_points(course):
    out, notes = course
    source = out / "source" / ASSIGNMENT
    cells = _graded_cells(source)
    by_id = {cell["metadata"]["nbgrader"]["grade_id"]: (notebook, cell) for notebook, group in cells.items()
             for cell in group}
    questions = course_questions(REPO)
    assert sorted(by_id) == sorted([grade_id(e) for e in EXERCISES] + [q.grade_id for q in questions]), (
        "one graded cell per exercise and one answer cell per written question, no other")
    for question in questions:
        notebook, cell = by_id[question.grade_id]
        assert notebook == Path(question.notebook).name and cell["cell_type"] == "markdown"
        assert cell["metadata"]["nbgrader"] == answer_metadata(question) == {
            "grade": True, "grade_id": question.grade_id, "locked": False, "points": QUESTION_POINTS,
            "schema_version": 3, "solution": True}
    for exercise in EXERCISES:
        notebook, cell = by_id[grade_id(exercise)]
        assert notebook == Path(exercise.notebook).name
        assert cell["metadata"]["nbgrader"] == {
            "grade": True, "grade_id": grade_id(exercise), "locked": True, "points": exercise.points,
            "schema_version": 3, "solution": False}
        code = "".join(cell["source"])
        assert f'assert check_exercise("{exercise.id}")' in code
        assert "SMOKE_TEST" not in code, "a graded cell must run the tests in smoke mode too"
    total = sum(c["metadata"]["nbgrader"]["points"] for group in cells.values() for c in group)
    assert total == sum(e.points for e in EXERCISES) + QUESTION_POINTS * len(questions)
    assert len(notes) == len(EXERCISES) + len(questions)
    # The layout: notebooks beside the package, the reference outside source/, the learner's
    # modules kept by autograde.
    assert (source / "mamlkit/__init__.py").is_file() and not (source / "notebooks").exists()
    assert BEGIN_MARKER not in (source / "mamlkit/inner_loop.py").read_text(encoding="utf-8")
    assert BEGIN_MARKER in (out / "reference/mamlkit/inner_loop.py").read_text(encoding="utf-8")
    config = (out / "nbgrader_config.py").read_text(encoding="utf-8")
    for module in {e.module for e in EXERCISES if e.module}:
        assert f'"{module}"' in config
    assert "MAMLKIT_REFERENCE" in config


def test_stale_nbgrader_metadata_is_replaced_by_the_registrys():
    exercise = get_exercise("2.1")
    nb = {"cells": [
        {"cell_type": "markdown", "metadata": {}, "source": "## Exercise 2.1 · the inner loop"},
        {"cell_type": "code", "metadata": {"nbgrader": {"grade": True, "points": 99, "grade_id": "old"}},
         "source": "x = 1", "outputs": [], "execution_count": None},
        {"cell_type": "code", "metadata": {}, "outputs": [], "execution_count": None,
         "source": 'if not SMOKE_TEST:\n    assert check_exercise("2.1")'},
    ]}
    stamped, notes = stamp_notebook(nb, exercise.notebook)
    assert "nbgrader" not in stamped["cells"][1]["metadata"], "a cell that checks nothing is not graded"
    assert stamped["cells"][2]["metadata"]["nbgrader"]["points"] == exercise.points
    assert "SMOKE_TEST" not in "".join(stamped["cells"][2]["source"])
    assert notes == [f"Exercise 2.1: check cell 3 of {Path(exercise.notebook).name} stamped, 10 points"]


def test_a_kernel_that_imported_another_mamlkit_is_not_checked(tmp_path):
    """As in a notebook whose folder has no mamlkit of its own: the installed (instructor's) copy
    would pass every test, so the check refuses."""
    code = "from mamlkit.classroom.hints import check_exercise; print(check_exercise('1.1'))"
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("✗ Exercise 1.1 ") and "not checked" in done.stdout
    assert done.stdout.rstrip().endswith("False")


@pytest.mark.skipif(os.environ.get("MAMLKIT_CLASSROOM_QUICK") == "1",
                    reason="runs nbgrader on three submissions (about a minute); MAMLKIT_CLASSROOM_QUICK=1 leaves it out")
@pytest.mark.skipif(find_nbgrader(REPO) is None,
                    reason=f"nbgrader is not installed (.ci/run installs nbgrader=={NBGRADER_VERSION} into "
                           ".venv-nbgrader; or set MAMLKIT_NBGRADER to its nbgrader command)")
def test_real_nbgrader_grades_untouched_solved_and_one_exercise_in_smoke_mode(tmp_path):
    notebook = "notebooks/01_autograd_basics.ipynb"
    ours = [e for e in EXERCISES if e.notebook == notebook]
    env = {**os.environ, "CI": "true", "MAMLKIT_SMOKE": "1", "OMP_NUM_THREADS": "1"}
    run = NbgraderRun(REPO, tmp_path, find_nbgrader(REPO), notebooks=(notebook,), env=env)
    start = time.monotonic()
    run.release()
    released = (tmp_path / "course/release" / ASSIGNMENT / Path(notebook).name).read_text(encoding="utf-8")
    assert '"locked": true' in released and "BEGIN SOLUTION" not in released
    alone = get_exercise("1.2")
    run.submit("untouched")
    run.submit("solved", [e.id for e in ours])
    run.submit("alone", [alone.id])
    run.autograde()
    scores = run.scores()
    print(f"nbgrader: release and autograde of 3 submissions in {time.monotonic() - start:.0f} s")
    assert scores["untouched"] == {grade_id(e): 0 for e in ours}, scores
    assert scores["solved"] == {grade_id(e): e.points for e in ours}, scores
    assert scores["alone"] == {grade_id(e): (e.points if e is alone else 0) for e in ours}, scores
    written = {q.grade_id for q in course_questions(REPO, (notebook,))}
    assert written and set(run.scores(written=True)["solved"]) == {grade_id(e) for e in ours} | written, \
        "the answers to the written questions are graded cells too (by hand)"
    untouched = run.cell_output("untouched", grade_id(ours[0]))
    assert untouched.startswith(f"✗ {ours[0].label} "), untouched
    assert "graded on its own" in untouched


def test_the_instructors_page_describes_the_layout_these_tests_grade():
    text = (REPO / "docs" / "instructors.md").read_text(encoding="utf-8")
    section = text.split("**nbgrader**", 1)[1].split("**GitHub Classroom**", 1)[0]
    for piece in ("python -m mamlkit.classroom nbgrader-source", f"nbgrader generate_assignment {ASSIGNMENT}",
                  f"source/{ASSIGNMENT}/", "reference/", f"submitted/<student>/{ASSIGNMENT}/",
                  f"nbgrader autograde {ASSIGNMENT}", "exclude_overwriting", "MAMLKIT_REFERENCE", NBGRADER_VERSION):
        assert piece in section, f"docs/instructors.md's nbgrader paragraph does not say {piece!r}"
    assert "BEGIN SOLUTION" not in section, "the notebooks hold no solution regions"
