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
from .grade import _stub_exercise, classify, data_warning, run_exercise_tests

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


#: Cells that run even after a hint: checking an exercise, and the setup cell.
_ALWAYS_RUN = ("check_exercise(", "install_exercise_hints(", "%tb", "%debug")


def install_exercise_hints(exercises: tuple[Exercise, ...] = EXERCISES) -> None:
    """Show a short hint, not a traceback, when a notebook reaches an unfinished exercise.

    Registers an IPython handler for ``NotImplementedError``. Errors that are not exercise
    stubs get IPython's usual traceback. After a hint, ``%tb`` still shows the full traceback.

    After a hint, the cells that follow are skipped, each with a one-line note, rather than
    failing one after another with a ``NameError`` for what the stopped cell did not compute
    (in Jupyter and under nbval alike). Running the stopped cell again lifts the stop; cells
    that call ``check_exercise`` always run.
    Outside IPython this does nothing. (It returns nothing, so a setup cell that ends with it
    shows no output.)
    """
    shell = _get_ipython()
    if shell is None:
        return
    state = {"running": None, "stopped_at": None, "exercise": None}

    def before_cell(info) -> None:
        state["running"] = info.raw_cell.rstrip("\n")

    def skip_after_hint(lines: list[str]) -> list[str]:
        source = "".join(lines).rstrip("\n")
        if source == state["stopped_at"]:
            state["stopped_at"] = None  # the learner runs the cell that stopped again: try it
        if state["stopped_at"] is None or any(f in source for f in _ALWAYS_RUN):
            return lines
        message = (
            f"Skipped: this cell comes after {state['exercise']}, which is not done yet. Finish it, "
            "then run the cell that stopped again, and go on from there."
        )
        return [f"print({message!r})\n"]

    def handler(shell, etype, value, tb, tb_offset=None):
        hint = exercise_hint(value, exercises)
        if hint is None:
            shell.showtraceback((etype, value, tb), tb_offset=tb_offset)
            return None
        # Later cells need what this one did not compute: skip them instead of a NameError each.
        state["stopped_at"], state["exercise"] = state["running"], hint.split(" is not done yet")[0]
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
    # Running the setup cell again replaces the hooks rather than adding a second set.
    previous = getattr(shell, "_mamlkit_hint_hooks", None)
    if previous is not None:
        shell.events.unregister("pre_run_cell", previous[0])
        shell.input_transformers_cleanup.remove(previous[1])
    shell.events.register("pre_run_cell", before_cell)
    shell.input_transformers_cleanup.insert(0, skip_after_hint)
    shell._mamlkit_hint_hooks = (before_cell, skip_after_hint)


def _default_root() -> Path:
    """The repository that holds this ``mamlkit`` (an editable install or a checkout)."""
    return Path(__file__).resolve().parents[2]


def _location_hint(root: Path) -> str:
    return (
        f"no tests/ folder in {root}; pass the folder of your copy of the course: "
        "check_exercise('2.1', root='path/to/course') in a notebook, or "
        "python -m mamlkit.classroom check 2.1 --root path/to/course"
    )


def _indent(text: str, prefix: str = "      ") -> str:
    return "\n".join(prefix + line for line in text.splitlines())


_MAX_LINES = 25  # of one failure's message; a gradcheck error prints whole Jacobians


def _explains_itself(message: str) -> bool:
    """Whether a failure message says what was expected; a bare ``assert x == y`` does not, nor
    does a gradcheck error, which is two Jacobians."""
    first = message.splitlines()[0] if message else ""
    return bool(first) and not first.startswith(
        ("assert ", "AssertionError: assert ", "torch.autograd.gradcheck.GradcheckError")
    ) and first != "AssertionError"


def check_exercise(
    exercise_id: str,
    *,
    root: str | os.PathLike | None = None,
    exercises: tuple[Exercise, ...] = EXERCISES,
    timeout: float | None = 600,
) -> bool:
    """Run the tests of one exercise and print what a learner can act on.

    The first line is the verdict: ``✓`` or ``✗``, how many of the exercise's tests pass, and
    how many *wait* for other exercises (they stop at the stub of an exercise not done yet, so
    they say nothing about this one until it is). Then each real failure, with its whole
    message. A test skipped for want of the Omniglot data is neither a pass nor a failure; a
    warning says how to run it.

    The tests run in a subprocess (``pytest -m ex2_1`` on the test files that carry the
    marker), so they see the files as saved now, whatever this kernel has imported.

    Args:
        exercise_id: ``"2.1"`` (or ``"Exercise 2.1"``, or ``"ex2_1"``).
        root: the repository; by default the one this ``mamlkit`` was imported from.
        exercises: the registry.
        timeout: seconds before giving up on the tests.

    Returns:
        ``True`` when no test of the exercise fails and at least one passes (tests that wait
        for other exercises aside), so a check cell can ``assert check_exercise("2.1")``.

    Raises:
        ValueError: an unknown exercise.
        FileNotFoundError: ``root`` has no ``tests/`` folder.
    """
    exercise = get_exercise(exercise_id, exercises)
    root = Path(root) if root is not None else _default_root()
    if not (root / "tests").is_dir():
        raise FileNotFoundError(_location_hint(root))
    record, _, _ = run_exercise_tests(root, (exercise,), timeout=timeout)
    tests = [
        (t, classify(t["outcome"], t["message"], (exercise.id,)))
        for t in record["tests"]
        if exercise.marker in t["markers"]
    ]
    passed = [t for t, kind in tests if kind == "passed"]
    skipped = [t for t, kind in tests if kind == "skipped"]
    waiting = [t for t, kind in tests if kind == "waiting"]
    failing = [(t, kind) for t, kind in tests if kind not in ("passed", "skipped", "waiting")]
    # The most telling failure first: the tests of the exercise's own module, then those whose
    # message says what was expected, then the rest, each group in the order pytest ran them.
    own_file = f"test_{Path(exercise.module).stem}.py" if exercise.module else None
    failing.sort(key=lambda pair: (
        pair[0]["nodeid"].split("::")[0].rsplit("/", 1)[-1] != own_file,
        not _explains_itself(pair[0]["message"]),
    ))
    own = len(tests) - len(skipped) - len(waiting)
    summary = f"{exercise.label} ({exercise.title}): your tests: {len(passed)} of {own} pass"
    if waiting:
        ids = sorted({_stub_exercise(t["message"]) for t in waiting}, key=lambda i: tuple(map(int, i.split("."))))
        summary += f"; {len(waiting)} more wait for Exercise{'s' if len(ids) > 1 else ''} {', '.join(ids)}"
    if skipped:
        summary += f"; {len(skipped)} skipped"
    ok = bool(passed) and not failing and not record["collection_errors"]
    if not passed and not failing and waiting and not record["collection_errors"]:
        # Nothing of this exercise could run: that is neither a pass nor a failure.
        ids = sorted({_stub_exercise(t["message"]) for t in waiting}, key=lambda i: tuple(map(int, i.split("."))))
        names = " and ".join(f"Exercise {i}" for i in ids)
        print(f"… {exercise.label} ({exercise.title}): waiting for {names}: all {len(waiting)} of its tests "
              f"run through {'them' if len(ids) > 1 else 'it'}, so they cannot say anything about "
              f"{exercise.label} yet. Finish {names}, then check again.")
        if skipped:
            print(f"  {len(skipped)} test(s) skipped, neither passed nor failed.")
            warning = data_warning()
            if warning:
                print(f"  {warning}")
        return False
    print(("✓ " if ok else "✗ ") + summary + ".")
    if not tests:
        print(f"  No tests found for {exercise.label} (marker {exercise.marker}).")
    for error in record["collection_errors"]:
        print(f"✗ could not load {error['nodeid']}:\n{_indent(error['message'])}")
    for number, (test, kind) in enumerate(failing, start=1):
        name = test["nodeid"].split("::", 1)[-1]
        print(f"\n✗ {number}. {name} ({kind})")
        if test["message"]:
            lines = test["message"].splitlines()
            shown = "\n".join(lines[:_MAX_LINES])
            more = f"\n… ({len(lines) - _MAX_LINES} more lines)" if len(lines) > _MAX_LINES else ""
            print(_indent(shown + more))
        if not _explains_itself(test["message"]) and test.get("detail"):
            print("    where it failed:")
            print(_indent(test["detail"]))
    if skipped:
        reasons = sorted({t["message"] for t in skipped if t["message"]})
        print(f"  {len(skipped)} test(s) skipped, neither passed nor failed" + (f": {'; '.join(reasons)}" if reasons else "."))
        warning = data_warning()
        if warning:
            print(f"  {warning}")
    if ok and waiting:
        print(f"  The waiting tests run {exercise.label} together with the exercises they wait for; "
              "check again when those are done.")
    return ok
