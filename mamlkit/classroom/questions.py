"""The notebooks' questions for written analysis: read from the notebooks, never copied by hand.

A notebook asks them in one markdown cell under the heading ``## Questions for written
analysis``: a sentence or two, then a numbered list, one question per item (an item may run
over several lines, indented)::

    ## Questions for written analysis

    Answer each in a few sentences.

    1. Why must the query set be disjoint from the support set? ...
    2. ...

or in cells: the heading and its introduction in one cell, then per question a markdown cell
``**Question 3.1.** ...`` followed by the markdown cell the learner answers in.

:func:`course_questions` reads them from every notebook, so the student README's list
(:mod:`.edition_files`) and nbgrader's manually graded answer cells (:mod:`.nbgrader`) follow
the notebooks: a question added to a notebook appears in both.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "HEADING",
    "POINTS",
    "WrittenQuestion",
    "course_questions",
    "notebook_questions",
    "question_cells",
    "questions_cell_index",
    "split_questions_cell",
]

#: The heading of the questions' cell.
HEADING = "Questions for written analysis"
#: Points of each question, graded by hand.
POINTS = 2

_HEADING_LINE = re.compile(rf"^#{{1,6}}\s+{re.escape(HEADING)}\s*$", re.MULTILINE)
_ANY_HEADING = re.compile(r"^#{1,6}\s", re.MULTILINE)
_ITEM = re.compile(r"^(\d+)\.\s+(.*)$")
_QUESTION_CELL = re.compile(r"^\*\*Question\s+\d+\.(\d+)\.?\*\*\.?\s*")


@dataclass(frozen=True)
class WrittenQuestion:
    """One question for written analysis.

    Attributes:
        notebook: the notebook that asks it, relative to the repository root.
        number: its number in the notebook's list (1, 2, ...).
        text: the question, its lines joined by single spaces (Markdown and LaTeX kept).
    """

    notebook: str
    number: int
    text: str

    @property
    def chapter(self) -> str:
        """The notebook's number, ``"03"`` for ``notebooks/03_outer_loop.ipynb``."""
        return Path(self.notebook).name.split("_", 1)[0]

    @property
    def label(self) -> str:
        """``"Question 3.2"``: the notebook's number and the question's."""
        return f"Question {int(self.chapter)}.{self.number}" if self.chapter.isdigit() else f"Question {self.number}"

    @property
    def grade_id(self) -> str:
        """The ``grade_id`` of its nbgrader answer cell: ``"written_03_q2"``."""
        return f"written_{self.chapter}_q{self.number}"


def _source(cell: dict) -> str:
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else source


def questions_cell_index(nb: dict) -> int | None:
    """The index of the notebook's markdown cell with the questions' heading, or ``None``."""
    for index, cell in enumerate(nb.get("cells", [])):
        if cell.get("cell_type") == "markdown" and _HEADING_LINE.search(_source(cell)):
            return index
    return None


def _parse(text: str) -> tuple[list[tuple[int, str]], int, int]:
    """The numbered items of the questions' section of ``text``, and where the list starts and ends.

    The section runs from the heading to the next heading; the list ends there, or at the first
    unindented paragraph after it. Offsets are character positions in ``text``.
    """
    start = _HEADING_LINE.search(text).end()
    following = _ANY_HEADING.search(text, start)
    section_end = following.start() if following else len(text)
    items: list[tuple[int, list[str]]] = []
    list_start = list_end = section_end
    position = start
    for line in text[start:section_end].splitlines(keepends=True):
        match = _ITEM.match(line.rstrip("\n"))
        if match:
            if not items:
                list_start = position
            items.append((int(match[1]), [match[2].strip()]))
        elif items and line.startswith((" ", "\t")) and line.strip():
            items[-1][1].append(line.strip())
        elif items and line.strip():
            list_end = position  # a paragraph after the list ends it
            break
        position += len(line)
    return [(number, " ".join(lines)) for number, lines in items], list_start, list_end


def split_questions_cell(text: str) -> tuple[str, list[tuple[int, str]], str]:
    """``(before, items, after)``: the cell's text before the list, the questions, the text after it."""
    items, list_start, list_end = _parse(text)
    return text[:list_start].rstrip() + "\n", items, text[list_end:].lstrip("\n")


def question_cells(nb: dict) -> list[tuple[int, str, int, int | None]]:
    """The cell form: ``(number, text, question cell, answer cell or None)`` per question.

    The question cells are the markdown cells ``**Question 3.1.** ...`` right after the heading's
    cell; each may be followed by one markdown cell that is not a question, its answer cell.
    """
    cells = nb.get("cells", [])
    index = questions_cell_index(nb)
    found: list[tuple[int, str, int, int | None]] = []
    if index is None:
        return found
    position = index + 1
    while position < len(cells) and cells[position].get("cell_type") == "markdown":
        text = _source(cells[position])
        match = _QUESTION_CELL.match(text)
        if match is None:
            break
        answer = position + 1
        has_answer = (answer < len(cells) and cells[answer].get("cell_type") == "markdown"
                      and not _QUESTION_CELL.match(_source(cells[answer]))
                      and not _ANY_HEADING.match(_source(cells[answer])))
        found.append((int(match[1]), " ".join(line.strip() for line in text[match.end():].splitlines() if line.strip()),
                      position, answer if has_answer else None))
        position = answer + 1 if has_answer else answer
    return found


def notebook_questions(nb: dict, notebook: str) -> list[WrittenQuestion]:
    """The questions of one parsed notebook (none when it has no questions' cell).

    Raises:
        ValueError: the cell has the heading but no numbered list, or its items are not
            numbered 1, 2, 3, ...
    """
    index = questions_cell_index(nb)
    if index is None:
        return []
    items, _, _ = _parse(_source(nb["cells"][index]))
    if not items:
        items = [(number, text) for number, text, _, _ in question_cells(nb)]
    if not items:
        raise ValueError(f"{notebook}: the cell '{HEADING}' has no numbered list of questions, "
                         "and no '**Question N.M.**' cells follow it")
    numbers = [number for number, _ in items]
    if numbers != list(range(1, len(items) + 1)):
        raise ValueError(f"{notebook}: the questions are numbered {numbers}, not 1, 2, 3, ...")
    return [WrittenQuestion(notebook, number, text) for number, text in items]


def course_questions(root: str | os.PathLike, notebooks: tuple[str, ...] | None = None) -> list[WrittenQuestion]:
    """Every notebook's questions, in course order (the notebooks' file names).

    Args:
        root: the repository (either edition: the questions are the same in both).
        notebooks: only these notebooks (repository paths); default every numbered notebook,
            ``notebooks/NN_*.ipynb`` (not scratch copies such as ``notebooks/_tmp.ipynb``).
    """
    root = Path(root)
    if notebooks is None:  # the course's notebooks are numbered: 01_autograd_basics.ipynb, ...
        paths = sorted(p for p in (root / "notebooks").glob("*.ipynb") if re.match(r"\d+_", p.name))
    else:
        paths = [root / n for n in notebooks]
    found: list[WrittenQuestion] = []
    for path in paths:
        rel = path.relative_to(root).as_posix()
        found += notebook_questions(json.loads(path.read_text(encoding="utf-8")), rel)
    return found
