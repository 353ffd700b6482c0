"""Grade a repository: run the exercises' tests once and turn their outcomes into points.

Each test belongs to the exercises whose markers it carries (``@pytest.mark.ex2_1`` belongs to
Exercise 2.1). :func:`grade` runs pytest once, in a subprocess, on the ``tests/`` folder of the
repository being graded, with ``-m "ex1_1 or ex1_2 or ..."``; a small plugin
(``_outcomes_plugin.py``) records each test's markers and outcome.

Scoring policy, chosen per call:

- ``"all-or-nothing"`` (the default): an exercise earns its points only when every one of its
  tests passes. The tests of one exercise check one piece of code from several sides (shapes,
  values, gradients); code that passes half of them is not half correct.
- ``"proportional"``: points × (tests passed / tests), for partial credit.

A test that is skipped, errors, or was never run counts as not passed; an exercise with no
tests earns nothing (the table says "no tests"), so a broken test file cannot go unnoticed.

Run it as ``python -m mamlkit.classroom grade [--root DIR] [--tests DIR] [--json PATH]``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from .exercises import EXERCISES, Exercise, exercise_id_from_marker, marker_expression, marker_name

__all__ = [
    "POLICIES",
    "ExerciseResult",
    "GradeReport",
    "GradingError",
    "TestOutcome",
    "check_student_tests",
    "grade",
    "run_exercise_tests",
    "run_tests",
    "verify_exercise_tests",
]

POLICIES = ("all-or-nothing", "proportional")
_POLICY_RULES = {
    "all-or-nothing": "an exercise earns its points only when all of its tests pass",
    "proportional": "an exercise earns its points times the fraction of its tests that pass",
}

_PLUGIN_SOURCE = Path(__file__).with_name("_outcomes_plugin.py")
_PLUGIN_MODULE = "mamlkit_grading_outcomes"  # the name it is loaded under, via -p
_OUTCOMES_ENV = "MAMLKIT_OUTCOMES"
# How the outcomes plugin reports a stub's error: "NotImplementedError: Exercise 2.1: ...".
_STUB_FAILURE = re.compile(r"^NotImplementedError: Exercise (?P<id>\d+\.\d+):")


class GradingError(RuntimeError):
    """pytest could not run the tests at all (usage error, internal error, timeout)."""


@dataclass(frozen=True)
class TestOutcome:
    """The outcome of one test: ``passed``, ``failed``, ``error``, ``skipped``, ``xfailed`` or ``not run``."""

    __test__ = False  # not a test class, despite its name

    nodeid: str
    outcome: str
    message: str = ""

    @property
    def passed(self) -> bool:
        return self.outcome == "passed"


@dataclass
class ExerciseResult:
    """The tests of one exercise and the points they earned."""

    exercise: Exercise
    tests: list[TestOutcome]
    points_earned: float

    @property
    def num_passed(self) -> int:
        return sum(t.passed for t in self.tests)

    @property
    def num_tests(self) -> int:
        return len(self.tests)


def _points(exercise: Exercise, tests: list[TestOutcome], policy: str) -> float:
    if not tests:
        return 0
    passed = sum(t.passed for t in tests)
    if policy == "all-or-nothing":
        return exercise.points if passed == len(tests) else 0
    return round(exercise.points * passed / len(tests), 2)


def _fmt(points: float) -> str:
    return f"{points:g}"


def _shorten(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


@dataclass
class GradeReport:
    """Points per exercise, plus what pytest reported."""

    results: list[ExerciseResult]
    policy: str
    collection_errors: list[dict] = field(default_factory=list)
    pytest_exit_code: int = 0
    pytest_output: str = ""

    @property
    def points_earned(self) -> float:
        return round(sum(r.points_earned for r in self.results), 2)

    @property
    def points_possible(self) -> int:
        return sum(r.exercise.points for r in self.results)

    def table(self) -> str:
        """The grade as a plain-text table, followed by the failing tests and their messages."""
        title_width = 46
        lines = [f"{'Exercise':<9} {'Title':<{title_width}} {'Tests':>7} {'Points':>9}"]
        for r in self.results:
            tests = f"{r.num_passed}/{r.num_tests}" if r.tests else "no tests"
            points = f"{_fmt(r.points_earned)}/{r.exercise.points}"
            lines.append(
                f"{r.exercise.id:<9} {_shorten(r.exercise.title, title_width):<{title_width}} "
                f"{tests:>7} {points:>9}"
            )
        total = f"{_fmt(self.points_earned)}/{self.points_possible}"
        lines.append(f"{'Total':<9} {'':<{title_width}} {'':>7} {total:>9}")
        lines.append(f"Policy: {self.policy} ({_POLICY_RULES[self.policy]}).")
        failing = [(r.exercise, t) for r in self.results for t in r.tests if not t.passed]
        if failing:
            lines.append("Tests not passed:")
            lines += [
                f"  {e.id}  {t.nodeid}: {t.outcome}" + (f" - {_shorten(t.message, 100)}" if t.message else "")
                for e, t in failing
            ]
        for error in self.collection_errors:
            lines.append(f"Could not collect {error['nodeid']}: {_shorten(error['message'], 100)}")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        """A JSON-ready summary for a grading system (see the CLI's ``--json``)."""
        return {
            "policy": self.policy,
            "points_earned": self.points_earned,
            "points_possible": self.points_possible,
            "exercises": [
                {
                    "id": r.exercise.id,
                    "title": r.exercise.title,
                    "marker": r.exercise.marker,
                    "points_earned": r.points_earned,
                    "points_possible": r.exercise.points,
                    "tests_passed": r.num_passed,
                    "tests_total": r.num_tests,
                    "tests": [
                        {"nodeid": t.nodeid, "outcome": t.outcome, "message": t.message} for t in r.tests
                    ],
                }
                for r in self.results
            ],
            "collection_errors": self.collection_errors,
            "pytest_exit_code": self.pytest_exit_code,
        }


def run_tests(
    root: str | os.PathLike,
    *,
    tests_dir: str = "tests",
    markexpr: str | None = None,
    ignore: tuple[str, ...] = (),
    timeout: float | None = None,
    env: dict[str, str] | None = None,
) -> tuple[dict, int, str]:
    """Run the tests of the repository at ``root`` in one pytest subprocess and record each outcome.

    ``root`` goes first on ``PYTHONPATH``, so the tests import that repository's package (a
    student's submission), not whichever copy is installed. No bytecode or pytest cache is
    written into ``root``.

    Args:
        root: the repository.
        tests_dir: the tests folder, relative to ``root``, or an absolute path.
        markexpr: a pytest ``-m`` expression selecting the tests to run; ``None`` runs them all.
        ignore: test files or folders, relative to ``root``, not to collect (``--ignore``).
        timeout: seconds before the run is abandoned; ``None`` waits.
        env: the subprocess's environment (default: this process's).

    Returns:
        The plugin's record (``{"tests": [...], "collection_errors": [...]}``, see
        ``_outcomes_plugin.py``), pytest's exit code, and its console output.

    Raises:
        GradingError: pytest did not get as far as reporting outcomes, or ran past ``timeout``.
    """
    root = Path(root).resolve()
    tests = root / tests_dir  # an absolute tests_dir stays as it is
    if not tests.is_dir():
        raise GradingError(f"no tests folder {tests} to run")
    with tempfile.TemporaryDirectory(prefix="mamlkit-grade-") as tmp:
        shutil.copyfile(_PLUGIN_SOURCE, Path(tmp) / f"{_PLUGIN_MODULE}.py")
        outcomes_path = Path(tmp) / "outcomes.json"
        env = dict(os.environ if env is None else env)
        env["PYTHONPATH"] = os.pathsep.join(
            [tmp, str(root)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])
        )
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        env[_OUTCOMES_ENV] = str(outcomes_path)
        command = [
            sys.executable, "-m", "pytest", str(tests),
            *(["-m", markexpr] if markexpr is not None else []),
            *(f"--ignore={root / path}" for path in ignore),
            "-p", _PLUGIN_MODULE,
            "-p", "no:cacheprovider",
            # The repository's own options (running the notebooks, say) stay out, and so does
            # nbval, whose import alone takes seconds.
            "-o", "addopts=",
            "-p", "no:nbval",
            "--rootdir", str(root),
            "--continue-on-collection-errors",
            "-q", "-rN",
        ]
        try:
            result = subprocess.run(
                command, cwd=root, env=env, capture_output=True, text=True, timeout=timeout, check=False
            )
        except subprocess.TimeoutExpired:
            raise GradingError(f"the tests in {tests} did not finish within {timeout} s") from None
        output = result.stdout + result.stderr
        if result.returncode in (3, 4) or not outcomes_path.exists():
            tail = "\n".join(output.strip().splitlines()[-20:])
            raise GradingError(f"pytest failed to run the tests (exit code {result.returncode}):\n{tail}")
        record = json.loads(outcomes_path.read_text(encoding="utf-8"))
    return record, result.returncode, output


def run_exercise_tests(
    root: str | os.PathLike,
    exercises: tuple[Exercise, ...] = EXERCISES,
    *,
    tests_dir: str = "tests",
    timeout: float | None = None,
) -> tuple[dict, int, str]:
    """Run the tests of ``exercises`` in the repository at ``root``: :func:`run_tests` with ``-m``.

    Raises:
        GradingError: no exercises, or pytest did not get as far as reporting outcomes.
    """
    if not exercises:
        raise GradingError("no exercises to grade")
    return run_tests(root, tests_dir=tests_dir, markexpr=marker_expression(exercises), timeout=timeout)


def grade(
    root: str | os.PathLike = ".",
    exercises: tuple[Exercise, ...] = EXERCISES,
    *,
    tests_dir: str = "tests",
    policy: str = "all-or-nothing",
    timeout: float | None = None,
) -> GradeReport:
    """Run the exercises' tests of the repository at ``root`` and score them.

    Args:
        root: the repository to grade (a student's submission, or the instructor edition).
        exercises: the registry; each exercise's tests are those carrying its marker.
        tests_dir: the tests folder, relative to ``root``, or an absolute path: pass the
            course's own copy of the tests so that a submission's edited tests do not count.
        policy: ``"all-or-nothing"`` or ``"proportional"`` (see the module docstring).
        timeout: seconds before the whole test run is abandoned; ``None`` waits.

    Returns:
        A :class:`GradeReport`; ``report.table()`` prints it, ``report.to_dict()`` serialises it.
    """
    if policy not in POLICIES:
        raise ValueError(f"policy must be one of {', '.join(POLICIES)}, got {policy!r}")
    record, exit_code, output = run_exercise_tests(root, exercises, tests_dir=tests_dir, timeout=timeout)
    by_exercise: dict[str, list[TestOutcome]] = {e.id: [] for e in exercises}
    for test in record["tests"]:
        outcome = TestOutcome(test["nodeid"], test["outcome"], test.get("message", ""))
        for marker in test["markers"]:
            exercise_id = exercise_id_from_marker(marker)
            if exercise_id in by_exercise:
                by_exercise[exercise_id].append(outcome)
    results = [
        ExerciseResult(e, by_exercise[e.id], _points(e, by_exercise[e.id], policy)) for e in exercises
    ]
    return GradeReport(results, policy, record["collection_errors"], exit_code, output)


def _stub_exercise(message: str) -> str | None:
    """The exercise id if ``message`` is a stub's ``NotImplementedError: Exercise 2.1: ...``."""
    match = _STUB_FAILURE.match(message)
    return match["id"] if match else None


def check_student_tests(
    student_root: str | os.PathLike,
    exercises: tuple[Exercise, ...] = EXERCISES,
    *,
    tests_dir: str = "tests",
    ignore: tuple[str, ...] = (),
    timeout: float | None = None,
    env: dict[str, str] | None = None,
) -> tuple[list[str], dict]:
    """Run *every* test of a built student edition and check that only the exercises' tests fail.

    In the student edition each exercise-marked test must fail, with the ``NotImplementedError``
    of the stub of one of the exercises it is marked with: a test that passes would give points
    for nothing, and a test that reaches the stub of an exercise it is not marked with is missing
    that marker (it would count against the wrong exercise). Every unmarked test must pass (or be
    skipped): it tests code that learners are given, so it must not depend on a stub. Every
    exercise needs at least one test.

    Args:
        student_root: the built student edition.
        ignore: test files to leave out, relative to ``student_root``.
        timeout, env: as in :func:`run_tests`.

    Returns:
        The problems found, one line each (empty when all is well), and the outcomes record.
    """
    markers = {e.marker: e for e in exercises}
    record, _, _ = run_tests(student_root, tests_dir=tests_dir, ignore=ignore, timeout=timeout, env=env)
    problems = [f"could not collect {e['nodeid']}: {e['message']}" for e in record["collection_errors"]]
    marked = {m for test in record["tests"] for m in test["markers"]}
    problems += [
        f"{e.label} has no tests (none carries @pytest.mark.{e.marker})" for e in exercises if e.marker not in marked
    ]
    for test in record["tests"]:
        ids = [markers[m].id for m in test["markers"] if m in markers]
        nodeid, outcome, message = test["nodeid"], test["outcome"], test["message"]
        stub_of = _stub_exercise(message) if outcome in ("failed", "error") else None
        if not ids:
            if outcome in ("passed", "skipped", "xfailed"):
                continue
            if stub_of is not None:
                problems.append(
                    f"{nodeid} is {outcome} in the student edition: it reaches the stub of "
                    f"Exercise {stub_of}, so mark it @pytest.mark.{marker_name(stub_of)}"
                )
            else:
                problems.append(
                    f"{nodeid} is {outcome} in the student edition, without an exercise marker"
                    + (f": {message}" if message else "")
                )
            continue
        labels = " and ".join(f"Exercise {i}" for i in ids)
        if outcome == "skipped":
            # Skipped for want of something outside the course (data, a GPU): it proves nothing
            # either way here, and it runs wherever that is present.
            continue
        if outcome == "passed":
            problems.append(f"{labels}: {nodeid} passes in the student edition, without the solution")
        elif stub_of is None:
            problems.append(
                f"{labels}: {nodeid} is {outcome} in the student edition, but not with an exercise stub"
                + (f": {message}" if message else "")
            )
        elif stub_of not in ids:
            problems.append(
                f"{labels}: {nodeid} reaches the stub of Exercise {stub_of}; mark it "
                f"@pytest.mark.{marker_name(stub_of)} too"
            )
    return problems, record


def verify_exercise_tests(
    src_root: str | os.PathLike,
    exercises: tuple[Exercise, ...] = EXERCISES,
    *,
    tests_dir: str = "tests",
    timeout: float | None = None,
) -> list[str]:
    """Check that every exercise's tests really test it, before handing the course out.

    Builds the student edition in a temporary folder and runs the tests on both editions. Each
    exercise should have tests; all of them should pass on the instructor edition (the
    solutions). On the student edition (the stubs) every exercise test should fail with the stub
    of one of its exercises, and every other test should pass (:func:`check_student_tests`). A
    test that passes on the stubs would give points for nothing.

    Returns:
        The problems found, one line each; an empty list means all is well.
    """
    from .student import build_student_edition  # grade.py is also used without building

    with tempfile.TemporaryDirectory(prefix="mamlkit-verify-") as tmp:
        student = Path(tmp) / "student"
        build_student_edition(src_root, student, exercises=exercises)
        solved = grade(src_root, exercises, tests_dir=tests_dir, timeout=timeout)
        student_problems, _ = check_student_tests(student, exercises, tests_dir=tests_dir, timeout=timeout)
    problems = [f"could not collect {e['nodeid']}: {e['message']}" for e in solved.collection_errors]
    for result in solved.results:
        problems += [
            f"{result.exercise.label}: {t.nodeid} is {t.outcome} with the solution"
            + (f": {t.message}" if t.message else "")
            for t in result.tests
            if not t.passed
        ]
    return problems + student_problems
