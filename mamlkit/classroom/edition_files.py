"""Files the student edition gets in place of the instructor's: its README and its workflow.

- ``README.md``: the student's README, written from the exercise registry: the assignment, the
  graded exercises with points, file and notebook, the notebooks' questions for written analysis
  (read from the notebooks by :mod:`.questions`), what "done" means and how it is graded, how
  to check one exercise, where the Omniglot data comes from. No instructor steps.
- ``.github/workflows/classroom.yml``: GitHub Classroom's autograding workflow in its current
  format (one ``classroom-resources/autograding-command-grader@v1`` step per exercise with its
  ``max-score``, then ``classroom-resources/autograding-grading-reporter@v1``). Each step runs
  ``python -m mamlkit.classroom check ID``.

Both are pure functions of the registry and the notebooks, so building twice gives identical files.
"""

from __future__ import annotations

from typing import Sequence

from .exercises import EXERCISES, Exercise
from .questions import HEADING as QUESTIONS_HEADING
from .questions import POINTS as QUESTION_POINTS
from .questions import WrittenQuestion

__all__ = ["CLASSROOM_WORKFLOW", "STUDENT_README", "classroom_workflow", "generated_files", "student_readme"]

STUDENT_README = "README.md"
CLASSROOM_WORKFLOW = ".github/workflows/classroom.yml"
#: Python of the Classroom runner, and the CPU-only wheels of PyTorch (the CUDA build is GBs).
_PYTHON_VERSION = "3.11"
_INSTALL = "pip install -r requirements.txt --extra-index-url https://download.pytorch.org/whl/cpu"


def _step_id(exercise: Exercise) -> str:
    return exercise.marker  # "ex2_1": a valid step id, and its reporter variable is EX2_1_RESULTS


def _questions_section(questions: Sequence[WrittenQuestion]) -> str:
    """The README's plain list of the notebooks' questions for written analysis ("" when none)."""
    if not questions:
        return ""
    items = "\n".join(f"- **{q.label[len('Question '):]}** (`{q.notebook}`) {q.text}" for q in questions)
    return f"""
## {QUESTIONS_HEADING} ({len(questions)} questions, {QUESTION_POINTS} points each)

Each notebook ends with a few questions about reasons rather than code; answer each in a few
sentences. They are graded by hand: with nbgrader, in the answer cell under each question of
the released notebook; otherwise as your course asks. The list, numbered notebook.question:

{items}
"""


def student_readme(exercises: tuple[Exercise, ...] = EXERCISES, questions: Sequence[WrittenQuestion] = ()) -> str:
    """The student edition's ``README.md``; ``questions`` are the notebooks' (:func:`.questions.course_questions`)."""
    total = sum(e.points for e in exercises)
    rows = "\n".join(
        f"| {e.id} | {e.title} | {e.points} | `{e.module or e.notebook}` | `{e.notebook}` |" for e in exercises
    )
    first = exercises[0].id if exercises else "1.1"
    return f"""# Model-Agnostic Meta-Learning, from autograd to Omniglot: your assignment

In this course you build MAML (Finn, Abbeel & Levine, ICML 2017) yourself, piece by piece, in
PyTorch: gradients with autograd, the inner loop that adapts a model to one task, the outer
loop that learns an initialisation from many tasks, and few-shot classification of Omniglot
characters. The notebooks in `notebooks/` teach each piece and tell you what to write; the
package `mamlkit/` is where your code goes, so the tests, the notebooks and the command line
all run it.

## Set up

Python 3.10 or newer; a CPU is enough.

```bash
python3 -m venv .venv && . .venv/bin/activate
{_INSTALL}
jupyter lab notebooks/
```

Work through the notebooks in order: 01 (autograd), 02 (the inner loop), 03 (the outer loop),
04 (MAML on Omniglot), 05 (MAML's neighbours: first-order MAML, ANIL, Meta-SGD, Prototypical
Networks). Each notebook's header says how long a full run takes on a CPU and which exercises it
needs from the earlier ones.

**Smoke mode.** With `MAMLKIT_SMOKE=1` (or `CI=true`) set before starting Jupyter, every long
loop shrinks (a few training steps, a few test tasks), so a notebook runs top to bottom in a
minute or so: handy for checking that your code runs before a long run. The numbers it prints
are then too rough to mean anything, and the cells that run an exercise's tests
(`check_exercise`) are skipped in smoke mode: run `check` (below) for the verdict.

```bash
MAMLKIT_SMOKE=1 jupyter lab notebooks/
```

## The graded exercises ({total} points)

| exercise | what you write | points | file | notebook |
|---|---|---|---|---|
{rows}

Each exercise is a function (or a few) whose body is `raise NotImplementedError("Exercise …")`.
Replace that line with your code; keep the signature and the checks above it. Sections called
"Try it" in the notebooks are not graded: they are there to try things out.
{_questions_section(questions)}
## What "done" looks like, and how it is graded

An exercise is done when all of its tests pass. Each test carries the exercise's marker
(`@pytest.mark.ex2_1` for Exercise 2.1) and says, when it fails, what it expected and what
came back.

- **Each exercise is graded on its own.** When your Exercise 2.1 is graded, every other
  exercise runs the course's solution, so a mistake in one exercise costs that exercise's
  points only, and an exercise you solve earns its points even if an earlier one is unfinished.
- **All or nothing per exercise**: an exercise earns its points when every one of its tests
  passes.
- **Hidden tests**: the grader may also run tests that are not in this repository (the
  tests here are a part of the grader's). Your own copies of the tests do not count: the
  grader runs its copy, so editing a test changes nothing. Code that does what the exercise
  asks, for every valid input, passes the hidden tests too.
- A test **skipped** because the Omniglot data is not there neither earns nor costs points.

## Check one exercise

From the root of this repository:

```bash
python -m mamlkit.classroom check {first}
python -m mamlkit.classroom check {first} --root path/to/this/repository   # from elsewhere
```

or, in a notebook, `check_exercise("{first}")`. The first line is the verdict:

    ✓ Exercise 2.1 (...): your tests: 16 of 16 pass; 49 more wait for Exercises 3.1, 3.2

"Wait" means those tests also run an exercise you have not done yet; they run once you have.
Then come the tests that fail, each with its whole message: start with the first.

When a notebook reaches an exercise you have not done, it stops with one line that says which
exercise and where, and skips the cells after it (they need the exercise's result); run the
cell again once the exercise is done.

## The Omniglot data

Notebook 04 and some tests need the Omniglot images (about 16 MB). Notebook 04 downloads them
on first use into `~/.cache/mamlkit/omniglot`. If you already have `images_background.zip` and
`images_evaluation.zip`, point at their folder:

```bash
export MAMLKIT_DATA=/path/to/omniglot
```

Without the data, the tests that need it are skipped, and `check` says so. The grader runs
with the data, so those tests count in your grade: run them before you submit.

## Submitting

Commit and push your work (or upload this repository, as your course asks). If your course
uses GitHub Classroom, every push runs the checks of `.github/workflows/classroom.yml` (one per
exercise, worth its points) and shows the result in the Actions tab.
"""


def classroom_workflow(exercises: tuple[Exercise, ...] = EXERCISES) -> str:
    """The student edition's ``.github/workflows/classroom.yml`` for GitHub Classroom."""
    steps = []
    for e in exercises:
        test_name = f"Exercise {e.id}: {e.title}".replace('"', "'")
        steps.append(
            f"""      - name: Exercise {e.id}
        id: {_step_id(e)}
        uses: classroom-resources/autograding-command-grader@v1
        with:
          test-name: "{test_name}"
          setup-command: ""
          command: "python -m mamlkit.classroom check {e.id} --root ."
          timeout: 15
          max-score: {e.points}"""
        )
    env = "\n".join(f'          {_step_id(e).upper()}_RESULTS: "${{{{ steps.{_step_id(e)}.outputs.result }}}}"' for e in exercises)
    runners = ",".join(_step_id(e) for e in exercises)
    return f"""name: Autograding Tests
on:
  push:
  repository_dispatch:
permissions:
  checks: write
  actions: read
  contents: read
jobs:
  run-autograding-tests:
    runs-on: ubuntu-latest
    if: github.actor != 'github-classroom[bot]'
    steps:
      - name: Checkout code
        uses: actions/checkout@v4
      - name: Set up Python
        uses: actions/setup-python@v5
        with:
          python-version: "{_PYTHON_VERSION}"
      - name: Install the course
        run: {_INSTALL}
{chr(10).join(steps)}
      - name: Autograding Reporter
        uses: classroom-resources/autograding-grading-reporter@v1
        env:
{env}
        with:
          runners: {runners}
"""


def generated_files(exercises: tuple[Exercise, ...] = EXERCISES,
                    questions: Sequence[WrittenQuestion] = ()) -> dict[str, str]:
    """``{path: text}`` of the files the builder writes into the student edition."""
    return {STUDENT_README: student_readme(exercises, questions), CLASSROOM_WORKFLOW: classroom_workflow(exercises)}
