"""Gradescope's feedback on the real course: the telling failure first, capped, for students only.

The whole zip → ``run_autograder`` → ``results.json`` path is tested on a toy course in
``tests/test_classroom.py``; here the feedback for the course's own exercises, from a real grade
of a student edition with a classic mistake in it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from mamlkit.classroom import gradescope
from mamlkit.classroom.exercises import get_exercise
from mamlkit.classroom.grade import grade
from mamlkit.classroom.nbgrader_run import make_mistake
from mamlkit.classroom.student import BEGIN_MARKER, build_student_edition
from mamlkit.classroom.walk import solve_exercises

REPO = Path(__file__).resolve().parents[1]

pytestmark = [
    pytest.mark.hidden,  # about the grader, which the student edition does not carry the solutions of
    pytest.mark.skipif(BEGIN_MARKER not in (REPO / "mamlkit/inner_loop.py").read_text(encoding="utf-8"),
                       reason="needs the instructor edition's solutions"),
]


@pytest.fixture(scope="module")
def mistaken_2_1(tmp_path_factory):
    """The student edition with Exercise 2.1 written without create_graph=True, graded on its own."""
    student = tmp_path_factory.mktemp("gradescope") / "student"
    build_student_edition(REPO, student)
    solve_exercises(student, ["2.1"], REPO)
    make_mistake(student, "no_create_graph")
    env = {k: v for k, v in os.environ.items() if k != "MAMLKIT_DATA"}
    env["OMP_NUM_THREADS"] = "1"
    return grade(student, reference=REPO, only=("2.1",), env=env, timeout=900)


@pytest.mark.skipif(os.environ.get("MAMLKIT_CLASSROOM_QUICK") == "1",
                    reason="grades every Exercise 2.1 test (about a minute); MAMLKIT_CLASSROOM_QUICK=1 leaves it out")
def test_the_feedback_names_the_mistake_and_puts_the_telling_failure_first(mistaken_2_1):
    report = mistaken_2_1
    assert report.warnings and "MAMLKIT_DATA" in report.warnings[0], "the grade ran without the data"
    results = gradescope.results_json(report)
    (entry,) = results["tests"]
    assert entry["score"] == 0 and entry["max_score"] == get_exercise("2.1").points
    output = entry["output"]
    lines = output.splitlines()
    assert lines[0].startswith("Visible tests: ")
    assert any(line.startswith("Likely mistake: the inner gradient is taken without create_graph=True")
               for line in lines[:3]), output
    first = output.split("✗ 1. ", 1)[1].split("✗ 2. ", 1)[0]
    assert "create_graph=True" in first, f"the first failure shown should be the telling one:\n{first}"
    assert "bench" not in first and "numerical:tensor" not in output, "no benchmark failures, no Jacobian dumps"
    # Capped: a few failures, each message cut short, the whole within the limit.
    assert len(output) <= gradescope.MAX_OUTPUT_CHARS
    assert output.count("\n✗ ") <= gradescope.MAX_FAILURES
    failing = sum(not t.passed and t.outcome != "skipped" and not t.hidden for t in report.results[0].tests)
    assert failing > gradescope.MAX_FAILURES and f"… and {failing - gradescope.MAX_FAILURES} more" in output
    # Nothing meant for the instructor.
    assert "MAMLKIT_DATA" not in json.dumps(results) and "Warning" not in json.dumps(results)


def test_the_grader_warnings_go_to_the_instructors_stdout_only(tmp_path):
    """``run_autograder`` on a course of one exercise without data: the warning is printed to
    stdout (hidden from students), and results.json does not hold it."""
    exercise = get_exercise("1.3")
    zip_path = gradescope.build_autograder_zip(REPO, tmp_path / "zip/autograder.zip", (exercise,))
    root = tmp_path / "autograder"
    with zipfile.ZipFile(zip_path) as zf:
        zf.extractall(root / "source")
    shutil.move(root / "source/run_autograder", root / "run_autograder")
    build_student_edition(REPO, root / "submission")
    env = {k: v for k, v in os.environ.items() if k != "MAMLKIT_DATA"}
    env.update(AUTOGRADER_ROOT=str(root), OMP_NUM_THREADS="1",
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    done = subprocess.run(["bash", str(root / "run_autograder")], env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    results = json.loads((root / "results/results.json").read_text(encoding="utf-8"))
    assert results["score"] == 0 and results["stdout_visibility"] == "hidden"
    assert "Warning: MAMLKIT_DATA is not set" in done.stdout
    assert "MAMLKIT_DATA" not in json.dumps(results)
