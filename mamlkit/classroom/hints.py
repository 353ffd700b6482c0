"""Notebook helpers for learners working through the student edition.

In the setup cell of a notebook::

    from mamlkit.classroom.hints import install_exercise_hints, check_exercise
    install_exercise_hints()

When a cell reaches an exercise that is not done yet, the learner then sees one short message
instead of a traceback through the library::

    Exercise 2.1 is not done yet: write the second-order gradient in `gradient_step` and the
    loop of `adapt` in mamlkit/inner_loop.py, then run check_exercise('2.1').

and ``check_exercise("2.1")`` runs that exercise's tests and prints which pass. Outside IPython
``install_exercise_hints`` does nothing, so scripts and tests can call it safely.
"""

from __future__ import annotations

import os
import re
import sys
import traceback
from pathlib import Path

from .exercises import EXERCISES, Exercise, get_exercise
from .grade import run_exercise_tests

__all__ = ["check_exercise", "exercise_hint", "install_exercise_hints"]

_STUB_MESSAGE = re.compile(r"^Exercise (?P<id>\d+\.\d+):")


def _get_ipython():
    try:
        from IPython import get_ipython
    except ImportError:
        return None
    return get_ipython()


def _raised_in(tb, root: Path) -> str | None:
    """``"adapt (mamlkit/inner_loop.py:57)"`` if the innermost frame is a file under ``root``."""
    frames = traceback.extract_tb(tb)
    if not frames:
        return None
    frame = frames[-1]
    try:
        relative = Path(frame.filename).resolve().relative_to(root)
    except ValueError:  # a notebook cell, or a file outside the repository
        return None
    return f"{frame.name} ({relative.as_posix()}:{frame.lineno})"


def exercise_hint(error: BaseException, exercises: tuple[Exercise, ...] = EXERCISES) -> str | None:
    """The learner's message for a stub's ``NotImplementedError``; ``None`` for any other error."""
    if not isinstance(error, NotImplementedError):
        return None
    match = _STUB_MESSAGE.match(str(error))
    if match is None:
        return None
    try:
        exercise = get_exercise(match["id"], exercises)
    except ValueError:
        return None
    task = exercise.task or f"complete {exercise.title}"
    if exercise.module is not None:
        where = f"{task} in {exercise.module}"
    else:
        where = f"{task} in the cell marked '# YOUR CODE HERE ({exercise.label})' in {exercise.notebook}"
    return f"{exercise.label} is not done yet: {where}, then run check_exercise('{exercise.id}')."


def install_exercise_hints(exercises: tuple[Exercise, ...] = EXERCISES) -> None:
    """Show a short hint, not a traceback, when a notebook reaches an unfinished exercise.

    Registers an IPython handler for ``NotImplementedError``. Errors that are not exercise
    stubs get IPython's usual traceback. After a hint, ``%tb`` still shows the full traceback.
    Outside IPython this does nothing. (It returns nothing, so a setup cell that ends with it
    shows no output.)
    """
    shell = _get_ipython()
    if shell is None:
        return

    def handler(shell, etype, value, tb, tb_offset=None):
        hint = exercise_hint(value, exercises)
        if hint is None:
            shell.showtraceback((etype, value, tb), tb_offset=tb_offset)
            return None
        # Keep the traceback for %tb and %debug, as IPython's own handler would.
        sys.last_type, sys.last_value, sys.last_traceback = etype, value, tb
        where = _raised_in(tb, _default_root())
        full = "run %tb for the full traceback"
        lines = [hint, f"(raised in {where}; {full})" if where else f"({full})"]
        # _showtraceback is how an IPython kernel sends an error to the notebook: the cell
        # is shown as failed, and "Run All" stops there.
        shell._showtraceback(etype, value, lines)
        return None

    shell.set_custom_exc((NotImplementedError,), handler)


def _default_root() -> Path:
    """The repository that holds this ``mamlkit`` (an editable install or a checkout)."""
    return Path(__file__).resolve().parents[2]


def check_exercise(
    exercise_id: str,
    *,
    root: str | os.PathLike | None = None,
    exercises: tuple[Exercise, ...] = EXERCISES,
    timeout: float | None = 600,
) -> bool:
    """Run the tests of one exercise and print a short summary of what passes.

    Equivalent to ``pytest -m ex2_1`` on the repository's ``tests/`` folder, in a subprocess,
    so the tests see the files as saved now, whatever this kernel has imported.

    Args:
        exercise_id: ``"2.1"`` (or ``"Exercise 2.1"``, or ``"ex2_1"``).
        root: the repository; by default the one this ``mamlkit`` was imported from.
        exercises: the registry.
        timeout: seconds before giving up on the tests.

    Returns:
        ``True`` if the exercise has tests and all of them pass, so a check cell can
        ``assert check_exercise("2.1")``.
    """
    exercise = get_exercise(exercise_id, exercises)
    root = Path(root) if root is not None else _default_root()
    if not (root / "tests").is_dir():
        raise FileNotFoundError(
            f"no tests/ folder in {root}; pass root= the folder of your copy of the course"
        )
    record, _, _ = run_exercise_tests(root, (exercise,), timeout=timeout)
    tests = [t for t in record["tests"] if exercise.marker in t["markers"]]
    passed = [t for t in tests if t["outcome"] == "passed"]
    for error in record["collection_errors"]:
        print(f"✗ could not load {error['nodeid']}: {error['message']}")
    if not tests:
        print(f"✗ {exercise.label}: no tests found (marker {exercise.marker}).")
        return False
    if len(passed) == len(tests):
        print(f"✓ {exercise.label} ({exercise.title}): all {len(tests)} tests pass.")
        return True
    print(f"✗ {exercise.label} ({exercise.title}): {len(passed)} of {len(tests)} tests pass.")
    for test in tests:
        if test["outcome"] != "passed":
            name = test["nodeid"].split("::", 1)[-1]
            message = f": {test['message']}" if test["message"] else ""
            print(f"  ✗ {name} ({test['outcome']}){message}")
    return False
