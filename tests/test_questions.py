"""The questions for written analysis: read from the notebooks into the student README and nbgrader's answer cells."""

import json
from pathlib import Path

import pytest

from mamlkit.classroom.edition_files import student_readme
from mamlkit.classroom.nbgrader import answer_metadata, stamp_notebook
from mamlkit.classroom.questions import (
    POINTS,
    WrittenQuestion,
    course_questions,
    notebook_questions,
    split_questions_cell,
)

REPO = Path(__file__).resolve().parents[1]

CELL = """## Questions for written analysis

Answer each in a few sentences.

1. Why is the sky blue? Say it
   in two lines.
2. Why $\\alpha$?

## Next

[04 · Omniglot](04_omniglot_maml.ipynb)
"""


def _notebook(text=CELL):
    return {"cells": [
        {"cell_type": "markdown", "metadata": {}, "source": "# 03 · The outer loop"},
        {"cell_type": "markdown", "metadata": {}, "source": text.splitlines(keepends=True)},
        {"cell_type": "code", "metadata": {}, "source": "x = 1", "outputs": [], "execution_count": None},
    ]}


def test_questions_are_the_numbered_items_under_the_heading():
    found = notebook_questions(_notebook(), "notebooks/03_outer_loop.ipynb")
    assert found == [WrittenQuestion("notebooks/03_outer_loop.ipynb", 1, "Why is the sky blue? Say it in two lines."),
                     WrittenQuestion("notebooks/03_outer_loop.ipynb", 2, "Why $\\alpha$?")]
    assert [q.label for q in found] == ["Question 3.1", "Question 3.2"]
    assert found[1].grade_id == "written_03_q2"
    before, items, after = split_questions_cell(CELL)
    assert before == "## Questions for written analysis\n\nAnswer each in a few sentences.\n"
    assert [n for n, _ in items] == [1, 2] and after.startswith("## Next\n")
    assert notebook_questions({"cells": []}, "notebooks/06.ipynb") == []


def test_a_malformed_list_is_refused():
    with pytest.raises(ValueError, match="no numbered list"):
        notebook_questions(_notebook("## Questions for written analysis\n\nNone yet.\n"), "notebooks/03_x.ipynb")
    with pytest.raises(ValueError, match=r"numbered \[1, 3\]"):
        notebook_questions(_notebook("## Questions for written analysis\n\n1. a?\n3. b?\n"), "notebooks/03_x.ipynb")


def test_notebooks_01_to_03_ask_questions_and_the_student_readme_lists_each():
    questions = course_questions(REPO)
    chapters = {q.chapter for q in questions}
    assert all(c.isdigit() for c in chapters), "only the numbered notebooks count"
    assert {"01", "02", "03"} <= chapters
    readme = student_readme(questions=questions)
    assert f"## Questions for written analysis ({len(questions)} questions, {POINTS} points each)" in readme
    for q in questions:
        assert f"- **{q.label[len('Question '):]}** (`{q.notebook}`) {q.text}" in readme
    assert "Questions for written analysis" not in student_readme(), "no section without questions"


def test_nbgrader_gets_one_manually_graded_answer_cell_per_question():
    nb, notes = stamp_notebook(_notebook(), "notebooks/03_outer_loop.ipynb", exercises=())
    cells = nb["cells"]
    texts = ["".join(c["source"]) for c in cells]
    assert texts[1] == "## Questions for written analysis\n\nAnswer each in a few sentences.\n"
    assert texts[2] == "**Question 3.1.** Why is the sky blue? Say it in two lines." and texts[4].startswith("**Question 3.2.**")
    for index, number in ((3, 1), (5, 2)):
        question = WrittenQuestion("notebooks/03_outer_loop.ipynb", number, "")
        assert cells[index]["cell_type"] == "markdown" and texts[index] == "YOUR ANSWER HERE"
        assert cells[index]["metadata"]["nbgrader"] == answer_metadata(question) == {
            "grade": True, "grade_id": f"written_03_q{number}", "locked": False, "points": POINTS,
            "schema_version": 3, "solution": True}
    assert texts[6].startswith("## Next\n"), "what followed the list stays, after the answers"
    assert texts[7] == "x = 1" and len(cells) == 8
    assert len({c["id"] for c in cells[2:7]}) == 5, "new cells have their own ids"
    assert notes == [f"Question 3.{n}: answer cell of 03_outer_loop.ipynb, graded by hand, {POINTS} points" for n in (1, 2)]


def test_every_notebook_with_questions_splits_cleanly_for_nbgrader():
    for path in sorted((REPO / "notebooks").glob("*.ipynb")):
        rel = f"notebooks/{path.name}"
        nb = json.loads(path.read_text(encoding="utf-8"))
        questions = notebook_questions(nb, rel)
        stamped, _ = stamp_notebook(nb, rel, exercises=())
        answers = [c for c in stamped["cells"] if c["metadata"].get("nbgrader", {}).get("solution")]
        assert [c["metadata"]["nbgrader"]["grade_id"] for c in answers] == [q.grade_id for q in questions], rel


def test_the_cell_form_is_read_and_its_answer_cells_stamped():
    def md(text, cid):
        return {"cell_type": "markdown", "id": cid, "metadata": {}, "source": text}

    nb = {"cells": [md("## Questions for written analysis\n\nAnswer each in a few sentences.", "h"),
                    md("**Question 5.1.** Why\nthis?", "q1"), md("*Your answer here.*", "a1"),
                    md("**Question 5.2.** And that?", "q2"),
                    md("## Next", "n")]}
    found = notebook_questions(nb, "notebooks/05_maml_neighbours.ipynb")
    assert [(q.number, q.text) for q in found] == [(1, "Why this?"), (2, "And that?")]
    stamped, notes = stamp_notebook(nb, "notebooks/05_maml_neighbours.ipynb", exercises=())
    ids = [c["id"] for c in stamped["cells"]]
    assert ids == ["h", "q1", "a1", "q2", "written-05-q2-answer", "n"], "a question without an answer cell gets one"
    graded = [c["metadata"]["nbgrader"]["grade_id"] for c in stamped["cells"] if "nbgrader" in c["metadata"]]
    assert graded == ["written_05_q1", "written_05_q2"] and len(notes) == 2
    assert "".join(stamped["cells"][2]["source"]) == "*Your answer here.*"
