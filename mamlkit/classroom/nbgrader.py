"""nbgrader: a course folder whose ``source/`` is the student edition, with graded check cells.

``python -m mamlkit.classroom nbgrader-source COURSE`` writes an nbgrader course folder::

    COURSE/
      nbgrader_config.py    course id, cell timeout, the files a submission keeps (below)
      reference/            the instructor edition: the other exercises' solutions, every test
      source/maml/          the student edition, its notebooks at the top of the folder

The learners write their code in ``mamlkit/*.py``, not in the notebooks, so the notebooks hold
no ``### BEGIN SOLUTION`` regions: ``source/`` is already what learners get, and
``nbgrader generate_assignment maml`` only locks the graded cells and records them. The graded
cells are the notebooks' check cells, ``assert check_exercise("2.1")``. Each one gets nbgrader's
metadata here, from the exercise registry (:mod:`.exercises`), so the points cannot drift from
it: ``grade: true``, ``solution: false``, ``locked: true``, ``points`` (the exercise's),
``grade_id`` (``check_ex2_1``), ``schema_version: 3``. Its code becomes the plain check, with no
smoke-mode shortcut (in ``source/`` only; the notebooks in ``notebooks/`` keep theirs): graded
under ``CI=true`` or ``MAMLKIT_SMOKE=1`` too, a check cell runs the tests. An exercise whose
notebook has no check cell gets one, at the end of the exercise's section. The questions for
written analysis (the notebook's cell headed "Questions for written analysis", read by
:mod:`.questions`) become nbgrader's manually graded answers: the cell is split into its
introduction, then per question a cell with the question and a markdown answer cell (``solution:
true``, ``grade: true``, ``locked: false``, ``points`` :data:`.questions.POINTS`, ``grade_id``
``written_03_q1``, ``schema_version: 3``), then whatever followed the list. Any other cell loses
nbgrader metadata it carries.

``nbgrader autograde`` overwrites a submission's files with ``source/``'s, all but the notebooks
and the files listed in ``Autograde.exclude_overwriting``: there the config lists the exercises'
modules (``mamlkit/inner_loop.py`` ...), which are what a learner submits; the tests and the
rest of the package are the course's. The config also sets ``MAMLKIT_REFERENCE`` to
``reference/``, so in ``autograde`` each check cell grades its exercise *on its own*, as
``grade`` does (:func:`.hints.check_exercise`): every other exercise runs the reference
solution, the tests come from the reference (hidden ones included), and a submission that
solves only Exercise 3.1 earns exactly 3.1's points. The notebooks sit at the top of the
assignment folder, beside ``mamlkit/``, so a notebook's kernel imports the submission's
``mamlkit``, and a check cell refuses to run when the kernel imported another one.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import tempfile
from pathlib import Path

from .exercises import EXERCISES, Exercise
from .questions import POINTS as QUESTION_POINTS
from .questions import WrittenQuestion, question_cells, questions_cell_index, split_questions_cell

__all__ = [
    "ASSIGNMENT",
    "build_nbgrader_course",
    "check_cell_source",
    "grade_id",
    "answer_metadata",
    "nbgrader_metadata",
    "stamp_notebook",
]

#: The assignment's name in the course folder.
ASSIGNMENT = "maml"
#: nbgrader's cell-metadata schema (nbgrader 0.9).
SCHEMA_VERSION = 3
#: Seconds one notebook cell may run under ``autograde`` (a check cell runs an exercise's tests).
CELL_TIMEOUT = 1800

_CHECK_CALL = re.compile(r"""check_exercise\(\s*["'](?P<id>\d+\.\d+)["']""")
_HEADING = re.compile(r"^(?P<hashes>#{1,6})\s+(?P<text>.*)$", re.MULTILINE)


def grade_id(exercise: Exercise) -> str:
    """The ``grade_id`` of an exercise's check cell: ``"check_ex2_1"``."""
    return f"check_{exercise.marker}"


def nbgrader_metadata(exercise: Exercise) -> dict:
    """The nbgrader metadata of an exercise's check cell (an autograder-test cell)."""
    return {
        "grade": True,
        "grade_id": grade_id(exercise),
        "locked": True,
        "points": exercise.points,
        "schema_version": SCHEMA_VERSION,
        "solution": False,
    }


def answer_metadata(question: WrittenQuestion) -> dict:
    """The nbgrader metadata of a question's answer cell (a manually graded answer)."""
    return {
        "grade": True,
        "grade_id": question.grade_id,
        "locked": False,
        "points": QUESTION_POINTS,
        "schema_version": SCHEMA_VERSION,
        "solution": True,
    }


def _markdown_cell(cell_id: str, text: str, metadata: dict | None = None) -> dict:
    return {"cell_type": "markdown", "id": cell_id, "metadata": metadata or {},
            "source": text.splitlines(keepends=True)}


def _stamp_questions(cells: list[dict], notebook: str) -> list[str]:
    """Split the questions' cell into one question cell and one answer cell per question."""
    index = questions_cell_index({"cells": cells})
    if index is None:
        return []
    before, items, after = split_questions_cell(_source(cells[index]))
    if not items:  # the cell form: a cell per question, each followed by its answer cell
        notes = []
        for number, text, at, answer in reversed(question_cells({"cells": cells})):
            question = WrittenQuestion(notebook, number, text)
            if answer is None:
                answer = at + 1
                cells.insert(answer, _markdown_cell(f"{question.grade_id.replace('_', '-')}-answer", "YOUR ANSWER HERE"))
            cells[answer].setdefault("metadata", {})["nbgrader"] = answer_metadata(question)
            notes.insert(0, f"{question.label}: answer cell of {Path(notebook).name}, graded by hand, "
                            f"{QUESTION_POINTS} points")
        return notes
    cells[index]["source"] = before.splitlines(keepends=True)
    new: list[dict] = []
    notes = []
    for number, text in items:
        question = WrittenQuestion(notebook, number, text)
        tag = question.grade_id.replace("_", "-")
        new.append(_markdown_cell(f"{tag}-question", f"**{question.label}.** {text}"))
        new.append(_markdown_cell(f"{tag}-answer", "YOUR ANSWER HERE", {"nbgrader": answer_metadata(question)}))
        notes.append(f"{question.label}: answer cell of {Path(notebook).name}, graded by hand, {QUESTION_POINTS} points")
    if after.strip():
        new.append(_markdown_cell(f"{Path(notebook).stem[:2]}-after-questions", after))
    cells[index + 1:index + 1] = new
    return notes


def check_cell_source(exercise: Exercise) -> str:
    """The code of an exercise's graded check cell."""
    return (
        f"# Graded ({exercise.points} points): the tests of {exercise.label} (a minute or so).\n"
        f'assert check_exercise("{exercise.id}"), "{exercise.label}: see the failures above"'
    )


def _source(cell: dict) -> str:
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else source


def _checked_exercise(cell: dict) -> str | None:
    """The exercise a code cell checks (its first ``check_exercise("2.1")``), if it is a check cell.

    The setup cell, which imports ``check_exercise``, is not one.
    """
    if cell.get("cell_type") != "code":
        return None
    source = _source(cell)
    match = _CHECK_CALL.search(source)
    if match is None or "import check_exercise" in source or "install_exercise_hints(" in source:
        return None
    return match["id"]


def _new_check_cell(exercise: Exercise) -> dict:
    return {
        "cell_type": "code",
        "execution_count": None,
        "id": grade_id(exercise).replace("_", "-"),
        "metadata": {},
        "outputs": [],
        "source": check_cell_source(exercise).splitlines(keepends=True),
    }


def _section_end(cells: list[dict], exercise: Exercise) -> int:
    """Where a check cell for ``exercise`` goes: after the code cells of its section.

    That is before the first markdown cell that follows the exercise's heading and at least one
    code cell; at the end of the notebook when the notebook names the exercise in no heading.
    """
    named = re.compile(rf"\bExercise\s+{re.escape(exercise.id)}\b")
    start = next(
        (i for i, c in enumerate(cells) if c.get("cell_type") == "markdown"
         and any(named.search(h["text"]) for h in _HEADING.finditer(_source(c)))),
        None,
    )
    if start is None:
        return len(cells)
    seen_code = False
    for index in range(start + 1, len(cells)):
        kind = cells[index].get("cell_type")
        if kind == "code":
            seen_code = True
        elif kind == "markdown" and seen_code:
            return index
    return len(cells)


def stamp_notebook(nb: dict, notebook: str, exercises: tuple[Exercise, ...] = EXERCISES) -> tuple[dict, list[str]]:
    """Give each exercise of ``notebook`` one graded check cell with the registry's metadata.

    Args:
        nb: the parsed notebook (modified in place).
        notebook: its path in the repository, as the registry names it (``notebooks/02_...``).

    Returns:
        The notebook and, per exercise, a line saying which cell is its graded cell, then one
        line per written question.
    """
    cells = nb.setdefault("cells", [])
    for cell in cells:
        metadata = cell.get("metadata", {})
        metadata.pop("nbgrader", None)  # whatever it said, the registry decides
    notes = []
    for exercise in (e for e in exercises if e.notebook == notebook):
        index = next((i for i, c in enumerate(cells) if _checked_exercise(c) == exercise.id), None)
        if index is None:
            index = _section_end(cells, exercise)
            cells.insert(index, _new_check_cell(exercise))
            how = "added"
        else:
            how = "stamped"
        cell = cells[index]
        cell["source"] = check_cell_source(exercise).splitlines(keepends=True)
        cell.setdefault("metadata", {})["nbgrader"] = nbgrader_metadata(exercise)
        notes.append(f"{exercise.label}: check cell {index + 1} of {Path(notebook).name} {how}, "
                     f"{exercise.points} points")
    notes += _stamp_questions(cells, notebook)
    return nb, notes


def _config(exercises: tuple[Exercise, ...], assignment: str) -> str:
    modules = sorted({e.module for e in exercises if e.module})
    keep = json.dumps({assignment: modules}, indent=4)
    return f'''"""nbgrader configuration of the MAML course, written by
``python -m mamlkit.classroom nbgrader-source`` (mamlkit/classroom/nbgrader.py)."""

import os
from pathlib import Path

c = get_config()  # noqa: F821 (nbgrader provides it)

c.CourseDirectory.course_id = "{assignment}"
c.CourseDirectory.root = str(Path(__file__).resolve().parent)
# A check cell runs an exercise's tests.
c.Execute.timeout = {CELL_TIMEOUT}
# What a learner writes: autograde keeps these files of a submission, and overwrites every other
# file (the tests, the rest of the package) with source/'s copy.
c.Autograde.exclude_overwriting = {keep}
# The instructor edition: with it, each check cell grades its exercise on its own (every other
# exercise runs this solution) and runs this edition's tests, hidden ones included.
os.environ.setdefault("MAMLKIT_REFERENCE", str(Path(__file__).resolve().parent / "reference"))
'''


def build_nbgrader_course(
    src_root: str | os.PathLike,
    course: str | os.PathLike,
    *,
    exercises: tuple[Exercise, ...] = EXERCISES,
    assignment: str = ASSIGNMENT,
    notebooks: tuple[str, ...] | None = None,
    force: bool = False,
) -> list[str]:
    """Write the nbgrader course folder for the instructor edition at ``src_root``.

    Args:
        src_root: the instructor edition.
        course: the course folder to write (absent or empty, unless ``force``).
        exercises: the registry.
        assignment: the assignment's name (the folder under ``source/``).
        notebooks: only these notebooks (repository paths) and their exercises; default all.
        force: replace ``course`` if it exists.

    Returns:
        One line per graded cell: which notebook cell grades which exercise, with its points.

    Raises:
        BuildError: the student edition cannot be built.
        FileExistsError: ``course`` is not empty and ``force`` is not set.
    """
    from .student import build_student_edition, list_source_files

    src_root, course = Path(src_root), Path(course)
    if course.exists() and any(course.iterdir()):
        if not force:
            raise FileExistsError(f"{course} is not empty; pass force=True (--force) to replace it")
        shutil.rmtree(course)
    if notebooks is not None:
        exercises = tuple(e for e in exercises if e.notebook in notebooks)
    course.mkdir(parents=True, exist_ok=True)
    source = course / "source" / assignment
    with tempfile.TemporaryDirectory(prefix="mamlkit-nbgrader-") as tmp:
        edition = Path(tmp) / "edition"
        build_student_edition(src_root, edition)
        shutil.copytree(edition, source, ignore=shutil.ignore_patterns(".github"))
    notes = []
    # The notebooks go to the top of the assignment folder: nbgrader grades the notebooks there.
    for path in sorted((source / "notebooks").glob("*.ipynb")):
        rel = f"notebooks/{path.name}"
        if notebooks is None or rel in notebooks:
            nb = json.loads(path.read_text(encoding="utf-8"))
            nb, stamped = stamp_notebook(copy.deepcopy(nb), rel, exercises)
            notes += stamped
            (source / path.name).write_text(json.dumps(nb, indent=1, sort_keys=True, ensure_ascii=False) + "\n",
                                            encoding="utf-8")
    shutil.rmtree(source / "notebooks")
    # The reference: the tracked files of the instructor edition, outside source/, never released.
    for rel in list_source_files(src_root, exclude=course):
        target = course / "reference" / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src_root / rel, target)
    (course / "nbgrader_config.py").write_text(_config(exercises, assignment), encoding="utf-8")
    return notes
