"""No graded answer in the student edition: Exercises 1.3 and 1.4 are closed forms, and the
edition a learner receives must state them as tasks, not print them.

The edition is built as ``python -m mamlkit.classroom build-student`` builds it (the files git
tracks); its ``mamlkit/lessons/autograd_warmups.py`` (docstrings, comments, stubs) and the text of
notebooks 01–03 (markdown and code cells) are searched for the answers, written in any of the
usual ways: ``(1 − α L_S'')²``, ``(1 - \\alpha L_S'')^2``, ``(1 - inner_lr * curvature) ** 2``;
``α = 1/L_S''``, ``\\frac{1}{L_S''}``, ``1.0 / curvature``. The same search run on the
instructor's solution finds them, so the check can fail.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from mamlkit.classroom.student import BEGIN_MARKER, build_student_edition

REPO = Path(__file__).resolve().parents[1]

#: About how the edition is built: it reads the solutions, which the student edition does not carry.
pytestmark = pytest.mark.hidden
MODULE = "mamlkit/lessons/autograd_warmups.py"
NOTEBOOKS = ("notebooks/01_autograd_basics.ipynb", "notebooks/02_inner_loop.ipynb", "notebooks/03_outer_loop.ipynb")

_CURVATURE = r"(l_s''|l''|curvature|support_hessian)"
_ALPHA = r"(alpha|α|inner_lr|lr|step_size)"
#: What each exercise's answer looks like once :func:`normalise` has run.
ANSWERS = {
    "1.3": re.compile(r"\(1(\.0)?-" + _ALPHA + r"\*?" + _CURVATURE + r"\)(\^2|²|\*\*2)"),
    "1.4": re.compile(r"(?<![0-9.])(1(\.0)?/|frac1)" + _CURVATURE),
}


def normalise(text: str) -> str:
    """Lower case, no spaces, no LaTeX sizing or braces, ``−`` as ``-``: one spelling per formula."""
    text = text.lower().replace("−", "-").replace("\\", "")
    for noise in ("bigl", "bigr", "left", "right", "mathrm", ",", " ", "\n", "{", "}", "$", "`", "\""):
        text = text.replace(noise, "")
    return text.replace(":math:", "")


def answers_in(text: str) -> list[str]:
    """The exercises whose answer ``text`` gives away."""
    flat = normalise(text)
    return [exercise for exercise, pattern in ANSWERS.items() if pattern.search(flat)]


def notebook_text(path: Path) -> str:
    return "\n".join("".join(cell["source"]) for cell in json.loads(path.read_text(encoding="utf-8"))["cells"])


@pytest.mark.parametrize("text, expected", [
    ("the factor :math:`(1 - \\alpha L_S'')^2`", ["1.3"]),
    ("(1 − α L_S'')² L_Q'(φ₂)", ["1.3"]),
    ("return (1.0 - inner_lr * curvature) ** 2", ["1.3"]),
    ("the step size :math:`\\alpha = 1 / L_S''`", ["1.4"]),
    ("α = \\frac{1}{L_S''}", ["1.4"]),
    ("return 1.0 / curvature", ["1.4"]),
    ("compare one gradient step of size $1/L_S''$ with Newton's method", ["1.4"]),
    ("the factor 1 − α L_S'' of one step", []),
    ("a step of 2/L_S'' overshoots", []),
])
def test_the_search_recognises_the_answers(text, expected):
    assert answers_in(text) == expected


def test_the_instructor_solution_contains_both_answers():
    """The solution regions hold the answers, so a search that misses them would prove nothing."""
    source = (REPO / MODULE).read_text(encoding="utf-8")
    assert BEGIN_MARKER in source, "this test needs the instructor edition"
    assert answers_in(source) == ["1.3", "1.4"]


@pytest.mark.skipif(not (REPO / ".git").exists() or shutil.which("git") is None,
                    reason="the edition is built from the files git tracks")
def test_the_student_edition_states_the_tasks_without_the_answers(tmp_path):
    if BEGIN_MARKER not in (REPO / MODULE).read_text(encoding="utf-8"):
        pytest.skip("this is the student edition: nothing to build")
    out = tmp_path / "student"
    build_student_edition(REPO, out)
    module = (out / MODULE).read_text(encoding="utf-8")
    assert "def two_step_factor" in module and "def one_step_inner_lr" in module
    assert "NotImplementedError" in module
    found = {MODULE: answers_in(module)}
    for rel in NOTEBOOKS:
        if (out / rel).is_file():
            found[rel] = answers_in(notebook_text(out / rel))
    leaks = {rel: exercises for rel, exercises in found.items() if exercises}
    assert not leaks, (
        f"the student edition prints the graded answer of {leaks}: docstrings, comments outside the "
        "solution region and notebook cells must state the task, not its closed form"
    )
