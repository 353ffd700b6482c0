"""Notebook helpers for learners working through the student edition.

It is one module because its messages are data kept beside the one function that shows each.

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


def _telling(message: str) -> int:
    """0 for a test's own explanation (``AssertionError: gradient_step must return ...``), 1 for
    another error with a message (a ``TypeError`` deep in the library), 2 for a bare assert."""
    if not _explains_itself(message):
        return 2
    first = message.splitlines()[0]
    return 0 if first.startswith(("AssertionError: ", "Failed: ")) else 1


def failure_order(exercise: Exercise, nodeid: str, message: str) -> tuple[bool, int]:
    """Sort key that puts an exercise's most telling failure first (``check`` and Gradescope).

    First the tests of the exercise's own module (``tests/test_inner_loop.py`` for
    ``mamlkit/inner_loop.py``), then, within each, the failures whose message is the test's own
    explanation, then other errors, then bare asserts; each group in the order pytest ran them
    (the sort is stable).
    """
    own_file = f"test_{Path(exercise.module).stem}.py" if exercise.module else None
    return nodeid.split("::")[0].rsplit("/", 1)[-1] != own_file, _telling(message)


#: The classic mistakes: (exercise id, what to look for in a failure, what went wrong). A
#: failure matches when one of the strings occurs in its message, or, for ``("detail", s)``,
#: in its traceback; the first mistake that any failure matches names the verdict.
CLASSIC_MISTAKES: tuple[tuple[str, tuple, str], ...] = (
    (
        "2.1",
        ("'float' and 'NoneType'", "'NoneType' and 'float'", "not put it in .grad",
         "backward through the graph a second time", ".grad attribute of a Tensor that is not a leaf"),
        "`.backward()` in the inner loop: it fills `.grad` of the leaves only (a step later the "
        "parameters are not leaves, so their `.grad` is None) and adds into it. Take the inner "
        "gradient as a value with torch.autograd.grad(loss, <the parameter tensors>, create_graph=True).",
    ),
    (
        "2.1",
        ("create_graph",),
        "the inner gradient is taken without create_graph=True, so it is a constant to the outer "
        "loop and the meta-gradient loses its second-order term: pass create_graph=True to "
        "torch.autograd.grad in gradient_step (unless first_order).",
    ),
    (
        "4.1",
        (("detail", "batch.x_query"),),
        "the query images are not the drawings that follow the support ones: a query set must "
        "hold each class's other drawings (drawings[:, :, K:]), never its support images again.",
    ),
)


def diagnose(exercise: Exercise, failures: list[tuple[str, str, str]]) -> str | None:
    """The classic mistake that ``failures`` (``(nodeid, message, detail)`` each) show, if any."""
    for exercise_id, signs, what in CLASSIC_MISTAKES:
        if exercise_id != exercise.id:
            continue
        for _, message, detail in failures:
            for sign in signs:
                where, text = ("detail", sign[1]) if isinstance(sign, tuple) else ("message", sign)
                if text in (detail if where == "detail" else message):
                    return what
    return None


#: The environment variable that names the instructor edition: with it, ``check_exercise``
#: grades an exercise on its own, as ``grade`` does (set in an nbgrader course's config).
REFERENCE_ENV = "MAMLKIT_REFERENCE"


def _notebook_repository(cwd: Path | None = None) -> Path | None:
    """The folder, this one or one above it, that holds a ``mamlkit`` package."""
    cwd = (cwd or Path.cwd()).resolve()
    return next((p for p in (cwd, *cwd.parents) if (p / "mamlkit" / "__init__.py").is_file()), None)


def _imported_elsewhere(exercise: Exercise, imported: Path, own: Path | None) -> str:
    where = (f"the repository of this notebook, {own}" if own is not None
             else f"no folder at or above {Path.cwd()} (where this runs) holds a mamlkit/ package")
    return (
        f"✗ {exercise.label} ({exercise.title}): not checked. This kernel imported mamlkit from "
        f"{imported}, but {where}: the tests would check that copy, not yours. Restart the kernel "
        "from the notebook's folder (its first cell puts your repository first on sys.path), or "
        f"call check_exercise('{exercise.id}', root='path/to/your/repository')."
    )


def check_exercise(
    exercise_id: str,
    *,
    root: str | os.PathLike | None = None,
    exercises: tuple[Exercise, ...] = EXERCISES,
    timeout: float | None = 600,
    reference: str | os.PathLike | None = None,
) -> bool:
    """Run the tests of one exercise and print what a learner can act on.

    The first line is the verdict: ``✓`` or ``✗``, how many of the exercise's tests pass, and
    how many *wait* for other exercises (they stop at the stub of an exercise not done yet, so
    they say nothing about this one until it is); when the failures show one of the classic
    mistakes (:data:`CLASSIC_MISTAKES`), the verdict names it. Then each real failure, the most
    telling first (:func:`failure_order`), with its message. A test skipped for want of the
    Omniglot data is neither a pass nor a failure; a warning says how to run it.

    The tests run in a subprocess (``pytest -m ex2_1`` on the test files that carry the
    marker), so they see the files as saved now, whatever this kernel has imported. Called
    without ``root`` (in a notebook), it checks the repository of the ``mamlkit`` this kernel
    imported, and refuses (``False``) when that is not the repository at or above the current
    folder: a kernel that imported an installed copy would otherwise test that copy.

    With ``reference`` (or the environment variable ``MAMLKIT_REFERENCE``), the instructor
    edition, the exercise is graded on its own, as ``grade`` grades it: every other exercise runs
    the reference solution, the reference's tests run (hidden ones included), and the result
    is ``True`` only when the exercise earns its points. An nbgrader course sets it.

    Args:
        exercise_id: ``"2.1"`` (or ``"Exercise 2.1"``, or ``"ex2_1"``).
        root: the repository; by default the one this ``mamlkit`` was imported from.
        exercises: the registry.
        timeout: seconds before giving up on the tests.
        reference: the instructor edition, to grade the exercise on its own.

    Returns:
        ``True`` when no test of the exercise fails and at least one passes (tests that wait
        for other exercises aside), so a check cell can ``assert check_exercise("2.1")``.

    Raises:
        ValueError: an unknown exercise.
        FileNotFoundError: ``root`` has no ``tests/`` folder.
    """
    exercise = get_exercise(exercise_id, exercises)
    if root is None:
        imported, own = _default_root(), _notebook_repository()
        if own is None or own != imported.resolve():
            print(_imported_elsewhere(exercise, imported, own))
            return False
        root = imported
    root = Path(root)
    if not (root / "tests").is_dir():
        raise FileNotFoundError(_location_hint(root))
    reference = reference if reference is not None else (os.environ.get(REFERENCE_ENV) or None)
    if reference is not None:
        return _check_on_its_own(exercise, root, Path(reference), exercises, timeout)
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
    failing.sort(key=lambda pair: failure_order(exercise, pair[0]["nodeid"], pair[0]["message"]))
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
        names = (f"Exercise {ids[0]}" if len(ids) == 1
                 else f"Exercises {', '.join(ids[:-1])} and {ids[-1]}")  # "Exercises 2.1, 3.2 and 4.1"
        print(f"… {exercise.label} ({exercise.title}): waiting for {names}: all {len(waiting)} of its tests "
              f"run through {'them' if len(ids) > 1 else 'it'}, so they cannot say anything about "
              f"{exercise.label} yet. Finish {names}, then check again.")
        if skipped:
            print(f"  {len(skipped)} test(s) skipped, neither passed nor failed.")
            warning = data_warning()
            if warning:
                print(f"  {warning}")
        return False
    mistake = diagnose(exercise, [(t["nodeid"], t["message"], t.get("detail", "")) for t, _ in failing])
    print(("✓ " if ok else "✗ ") + summary + "." + (f" Likely mistake: {mistake}" if mistake else ""))
    if not tests:
        print(f"  No tests found for {exercise.label} (marker {exercise.marker}).")
    for error in record["collection_errors"]:
        print(f"✗ could not load {error['nodeid']}:\n{_indent(error['message'])}")
    _print_failures([(test["nodeid"], kind, test["message"], test.get("detail", "")) for test, kind in failing])
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


def trim_message(message: str, max_lines: int) -> str:
    """A failure's message, at most ``max_lines`` lines, a gradcheck's Jacobians left out."""
    lines = message.splitlines()
    # A gradcheck failure goes on with both Jacobians: the explanation is what comes before them.
    dump = next((i for i, line in enumerate(lines) if line.startswith("Jacobian mismatch")), None)
    if dump:
        lines = lines[:dump] + ["(the two Jacobians follow in pytest's output)"]
    more = f"\n… ({len(lines) - max_lines} more lines)" if len(lines) > max_lines else ""
    return "\n".join(lines[:max_lines]) + more


def _print_failures(failing: list[tuple[str, str, str, str]]) -> None:
    """Each failure ``(nodeid, outcome, message, detail)``, numbered, its message capped."""
    for number, (nodeid, kind, message, detail) in enumerate(failing, start=1):
        print(f"\n✗ {number}. {nodeid.split('::', 1)[-1]} ({kind})")
        if message:
            print(_indent(trim_message(message, _MAX_LINES)))
        if not _explains_itself(message) and detail:
            print("    where it failed:")
            print(_indent(detail))


def _check_on_its_own(exercise: Exercise, root: Path, reference: Path, exercises: tuple[Exercise, ...],
                      timeout: float | None) -> bool:
    """``check_exercise`` with a reference: the exercise graded on its own, as ``grade`` does."""
    from .grade import grade

    report = grade(root, exercises, reference=reference, only=(exercise.id,), timeout=timeout)
    result = next(r for r in report.results if r.exercise.id == exercise.id)
    counted = [t for t in result.tests if t.outcome != "skipped"]
    failing = [t for t in counted if not t.passed]
    failing.sort(key=lambda t: failure_order(exercise, t.nodeid, t.message))
    mistake = diagnose(exercise, [(t.nodeid, t.message, t.detail) for t in failing])
    ok = result.graded and bool(counted) and result.points_earned == exercise.points
    verdict = (f"{'✓' if ok else '✗'} {exercise.label} ({exercise.title}): {result.points_earned:g} of "
               f"{exercise.points} points; {result.num_passed} of {len(counted)} tests pass, graded on its own "
               "(every other exercise ran the course's solution)")
    if not result.tests:
        verdict += f"; no tests carry the marker {exercise.marker}"
    elif not result.graded:
        verdict += f"; not graded: all {len(result.tests)} of its tests were skipped"
    print(verdict + "." + (f" Likely mistake: {mistake}" if mistake else ""))
    for note in result.notes:
        print(f"  Note: {note}")
    for error in report.collection_errors:
        print(f"✗ could not load {error['nodeid']}:\n{_indent(error['message'])}")
    hidden = [t for t in failing if t.hidden]
    _print_failures([(t.nodeid, t.outcome, t.message, t.detail) for t in failing if not t.hidden])
    if hidden:
        print(f"  {len(hidden)} hidden test(s) did not pass either.")
    return ok
