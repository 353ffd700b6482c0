"""Grade a repository: run each exercise's tests and turn their outcomes into points.

It is one module because grading, the check that each exercise's tests really test it
(:func:`verify_exercise_tests`) and grading each exercise on its own share one runner and one
record of outcomes; an instructor reads them together.

Each test belongs to the exercises whose markers it carries (``@pytest.mark.ex2_1`` belongs to
Exercise 2.1). A small plugin (``_outcomes_plugin.py``) records each test's markers, outcome
and message; pytest runs in a subprocess, on only the test files that carry the markers wanted.

**Each exercise on its own.** Given the instructor edition as ``reference``, :func:`grade` runs
an exercise's tests on a copy of the submission in which every *other* exercise's functions are
the reference solution (:mod:`.reference`): a learner who solved 4.2 but not 3.2 earns 4.2's
points, although some of 4.2's tests run through 3.2's code. Exercises whose copies would run
the same code share one pytest run. The tests come from the reference too (``tests_dir``), so
tests the instructor marked ``@pytest.mark.hidden`` (absent from the student edition) are run,
and the report names them. Without a reference, one run grades everything, and a test that
stops at another exercise's stub is *waiting*: it does not pass.

Scoring policy, chosen per call:

- ``"all-or-nothing"`` (the default): an exercise earns its points only when every one of its
  tests passes. The tests of one exercise check one piece of code from several sides (shapes,
  values, gradients); code that passes half of them is not half correct.
- ``"proportional"``: points × (tests passed / tests), for partial credit.

A test skipped for want of something outside the course (the Omniglot data) neither earns nor
costs credit: it leaves the count. An exercise all of whose tests were skipped is *not graded*
and leaves the points possible too; the report warns. A test that fails, errors, waits or was
never run counts as not passed; an exercise with no tests earns nothing (the table says
"no tests"), so a broken test file cannot go unnoticed.

Run it as ``python -m mamlkit.classroom grade [--root DIR] [--reference DIR] [--json PATH]``.
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

from .exercises import EXERCISES, Exercise, marker_expression, marker_name

__all__ = [
    "HIDDEN_MARKER",
    "POLICIES",
    "ExerciseResult",
    "GradeReport",
    "GradingError",
    "TestOutcome",
    "check_isolated_grading",
    "check_student_tests",
    "classify",
    "data_warning",
    "grade",
    "run_exercise_tests",
    "run_tests",
    "files_with_marked_tests",
    "verify_exercise_tests",
]

POLICIES = ("all-or-nothing", "proportional")
_POLICY_RULES = {
    "all-or-nothing": "an exercise earns its points only when all of its tests pass",
    "proportional": "an exercise earns its points times the fraction of its tests that pass",
}
#: The marker of tests the student edition leaves out and the grader runs.
HIDDEN_MARKER = "hidden"

_PLUGIN_SOURCE = Path(__file__).with_name("_outcomes_plugin.py")
_PLUGIN_MODULE = "mamlkit_grading_outcomes"  # the name it is loaded under, via -p
_OUTCOMES_ENV = "MAMLKIT_OUTCOMES"
# How the outcomes plugin reports a stub's error: "NotImplementedError: Exercise 2.1: ...", at
# the start of the message or, for an error raised in a worker process, inside it.
_STUB_FAILURE = re.compile(r"(?:^|\n|: )NotImplementedError: Exercise (?P<id>\d+\.\d+):")


class GradingError(RuntimeError):
    """pytest could not run the tests at all (usage error, internal error, timeout)."""


def data_warning(env: dict[str, str] | None = None) -> str | None:
    """A warning when ``MAMLKIT_DATA`` is unset, so the tests on real Omniglot images skip."""
    env = os.environ if env is None else env
    if env.get("MAMLKIT_DATA"):
        return None
    return (
        "MAMLKIT_DATA is not set, so the tests that need the Omniglot images are skipped; they "
        "neither earn nor cost credit. Set it to the data folder to run them "
        "(export MAMLKIT_DATA=/path/to/omniglot)."
    )


def _stub_exercise(message: str) -> str | None:
    """The exercise id if ``message`` is a stub's ``NotImplementedError: Exercise 2.1: ...``."""
    matches = list(_STUB_FAILURE.finditer(message))
    return matches[-1]["id"] if matches else None


def classify(outcome: str, message: str, own_ids: tuple[str, ...] | list[str]) -> str:
    """``"waiting"`` for a failure at the stub of an exercise not in ``own_ids``; else ``outcome``.

    ``own_ids`` is the exercise being checked or graded: a test of 2.1 that also carries 3.1's
    marker and stops at 3.1's stub waits for 3.1, as far as 2.1 is concerned.
    """
    if outcome in ("failed", "error"):
        stub_of = _stub_exercise(message)
        if stub_of is not None and stub_of not in own_ids:
            return "waiting"
    return outcome


@dataclass(frozen=True)
class TestOutcome:
    """One test's outcome: ``passed``, ``failed``, ``error``, ``skipped``, ``xfailed``, ``not run``,
    or ``waiting`` (it stopped at the stub of another exercise, not yet done)."""

    __test__ = False  # not a test class, despite its name

    nodeid: str
    outcome: str
    message: str = ""
    hidden: bool = False
    detail: str = ""

    @property
    def passed(self) -> bool:
        return self.outcome == "passed"

    @property
    def waiting_for(self) -> str | None:
        """The exercise whose stub this test stopped at, when it is waiting."""
        return _stub_exercise(self.message) if self.outcome == "waiting" else None


@dataclass
class ExerciseResult:
    """The tests of one exercise and the points they earned."""

    exercise: Exercise
    tests: list[TestOutcome]
    points_earned: float
    notes: list[str] = field(default_factory=list)

    @property
    def counted(self) -> list[TestOutcome]:
        """The tests that count: all but the skipped ones."""
        return [t for t in self.tests if t.outcome != "skipped"]

    @property
    def num_passed(self) -> int:
        return sum(t.passed for t in self.tests)

    @property
    def num_tests(self) -> int:
        return len(self.counted)

    @property
    def num_skipped(self) -> int:
        return len(self.tests) - len(self.counted)

    @property
    def graded(self) -> bool:
        """False when every test was skipped: then the exercise neither earns nor costs."""
        return not (self.tests and not self.counted)

    @property
    def points_possible(self) -> int:
        return self.exercise.points if self.graded else 0

    @property
    def hidden_tests(self) -> list[TestOutcome]:
        return [t for t in self.tests if t.hidden]


def _points(exercise: Exercise, tests: list[TestOutcome], policy: str) -> float:
    counted = [t for t in tests if t.outcome != "skipped"]
    if not counted:
        return 0
    passed = sum(t.passed for t in counted)
    if policy == "all-or-nothing":
        return exercise.points if passed == len(counted) else 0
    return round(exercise.points * passed / len(counted), 2)


def _fmt(points: float) -> str:
    return f"{points:g}"


def _shorten(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


@dataclass
class GradeReport:
    """Points per exercise, plus what pytest reported."""

    results: list[ExerciseResult]
    policy: str
    collection_errors: list[dict] = field(default_factory=list)
    pytest_exit_code: int = 0
    pytest_output: str = ""
    isolated: bool = False
    warnings: list[str] = field(default_factory=list)

    @property
    def points_earned(self) -> float:
        return round(sum(r.points_earned for r in self.results), 2)

    @property
    def points_possible(self) -> int:
        return sum(r.points_possible for r in self.results)

    @property
    def hidden_tests(self) -> list[str]:
        """The node ids of the tests that the student edition does not contain."""
        return sorted({t.nodeid for r in self.results for t in r.hidden_tests})

    def table(self) -> str:
        """The grade as a plain-text table, followed by the failing tests and their messages."""
        title_width = 46
        lines = [f"{'Exercise':<9} {'Title':<{title_width}} {'Tests':>9} {'Points':>9}"]
        for r in self.results:
            if not r.tests:
                tests = "no tests"
            elif not r.graded:
                tests = "skipped"
            else:
                tests = f"{r.num_passed}/{r.num_tests}"
            points = f"{_fmt(r.points_earned)}/{r.points_possible}"
            lines.append(
                f"{r.exercise.id:<9} {_shorten(r.exercise.title, title_width):<{title_width}} "
                f"{tests:>9} {points:>9}"
            )
        total = f"{_fmt(self.points_earned)}/{self.points_possible}"
        lines.append(f"{'Total':<9} {'':<{title_width}} {'':>9} {total:>9}")
        lines.append(f"Policy: {self.policy} ({_POLICY_RULES[self.policy]}).")
        if self.isolated:
            lines.append("Each exercise was graded on its own: the others ran the reference solution.")
        hidden = self.hidden_tests
        if hidden:
            lines.append(f"Hidden tests (not in the student edition): {len(hidden)}")
            lines += [f"  {nodeid}" for nodeid in hidden]
        failing = [(r.exercise, t) for r in self.results for t in r.tests if t.outcome not in ("passed", "skipped")]
        if failing:
            lines.append("Tests not passed:")
            lines += [
                f"  {e.id}  {t.nodeid}: {t.outcome}" + (f" - {_shorten(t.message, 100)}" if t.message else "")
                for e, t in failing
            ]
        for r in self.results:
            lines += [f"Note ({r.exercise.label}): {note}" for note in r.notes]
            if r.tests and not r.graded:
                lines.append(f"Note: {r.exercise.label} is not graded: all {len(r.tests)} of its tests were skipped.")
        for error in self.collection_errors:
            lines.append(f"Could not collect {error['nodeid']}: {_shorten(error['message'], 100)}")
        lines += [f"Warning: {w}" for w in self.warnings]
        return "\n".join(lines)

    def to_dict(self) -> dict:
        """A JSON-ready summary for a grading system (see the CLI's ``--json``)."""
        return {
            "policy": self.policy,
            "isolated": self.isolated,
            "points_earned": self.points_earned,
            "points_possible": self.points_possible,
            "hidden_tests": self.hidden_tests,
            "exercises": [
                {
                    "id": r.exercise.id,
                    "title": r.exercise.title,
                    "marker": r.exercise.marker,
                    "graded": r.graded,
                    "points_earned": r.points_earned,
                    "points_possible": r.points_possible,
                    "tests_passed": r.num_passed,
                    "tests_total": r.num_tests,
                    "tests_skipped": r.num_skipped,
                    "notes": r.notes,
                    "tests": [
                        {"nodeid": t.nodeid, "outcome": t.outcome, "message": t.message, "hidden": t.hidden}
                        for t in r.tests
                    ],
                }
                for r in self.results
            ],
            "collection_errors": self.collection_errors,
            "warnings": self.warnings,
            "pytest_exit_code": self.pytest_exit_code,
        }


def files_with_marked_tests(tests: Path, markers: list[str], *, root: str | os.PathLike | None = None,
                             env: dict[str, str] | None = None) -> list[Path]:
    """The test files under ``tests`` that hold a test carrying one of ``markers``.

    Found by pytest's own marker selection (one ``--collect-only -m`` run), so tests marked in
    any way pytest understands count: ``@pytest.mark.ex2_1``, ``pytest.param(..., marks=...)``,
    ``pytestmark``, or marks built with ``getattr(pytest.mark, name)``. Running only these files
    afterwards spares importing every other test module. The answer is kept for the life of the
    process, per folder and file times, since grading one submission asks it once per exercise.
    """
    tests = Path(tests).absolute()
    stamp = tuple(sorted((str(p), p.stat().st_mtime_ns) for p in tests.rglob("*.py") if "__pycache__" not in p.parts))
    # One collection answers for every exercise: checking or grading them one after another (the
    # check cells of a notebook, say) collects once.
    wanted = tuple(sorted(set(markers) | {e.marker for e in EXERCISES}))
    key = (str(tests), wanted, stamp)
    if key not in _MARKED_FILES:
        record, _, _ = run_tests(root if root is not None else tests.parent, tests_dir=str(tests),
                                 markexpr=" or ".join(wanted), collect_only=True, env=env)
        by_marker: dict[str, set[str]] = {m: set() for m in wanted}
        for test in record["tests"]:
            for marker in test["markers"]:
                if marker in by_marker:
                    by_marker[marker].add(test["nodeid"].split("::", 1)[0])
        errors = {e["nodeid"] for e in record["collection_errors"] if e["nodeid"]}
        _MARKED_FILES[key] = (by_marker, errors)
    by_marker, errors = _MARKED_FILES[key]
    # Files that failed to collect are run too, so that pytest reports them.
    names = set().union(*(by_marker.get(m, set()) for m in markers)) | errors
    return sorted(tests.parent / name for name in names)


_MARKED_FILES: dict[tuple, tuple[dict[str, set[str]], set[str]]] = {}


def run_tests(
    root: str | os.PathLike,
    *,
    tests_dir: str = "tests",
    markexpr: str | None = None,
    ignore: tuple[str, ...] = (),
    only_files_with: list[str] | None = None,
    nodeids: list[str] | None = None,
    timeout: float | None = None,
    env: dict[str, str] | None = None,
    collect_only: bool = False,
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
        only_files_with: collect only the test files that name one of these markers.
        nodeids: run just these tests (``"tests/test_x.py::test_y[p]"``, relative to the
            folder that holds the tests folder).
        timeout: seconds before the run is abandoned; ``None`` waits.
        env: the subprocess's environment (default: this process's).
        collect_only: only collect (every test's outcome is then ``"not run"``).

    Returns:
        The plugin's record (``{"tests": [...], "collection_errors": [...]}``, see
        ``_outcomes_plugin.py``), pytest's exit code, and its console output.

    Raises:
        GradingError: pytest did not get as far as reporting outcomes, or ran past ``timeout``.
    """
    root = Path(root).absolute()
    tests = root / tests_dir  # an absolute tests_dir stays as it is
    if not tests.is_dir():
        raise GradingError(f"no tests folder {tests} to run")
    if nodeids is not None:
        targets = [str(tests.parent / nodeid) for nodeid in nodeids]
    elif only_files_with is not None:
        targets = files_with_marked_tests(tests, only_files_with, root=root, env=env)
    else:
        targets = [tests]
    if not targets:
        return {"tests": [], "collection_errors": []}, 5, "no test file names the markers"
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
            sys.executable, "-m", "pytest", *map(str, targets),
            *(["-m", markexpr] if markexpr is not None else []),
            *(f"--ignore={root / path}" for path in ignore),
            "-p", _PLUGIN_MODULE,
            "-p", "no:cacheprovider",
            # The repository's own options (running the notebooks, say) stay out, and so does
            # nbval, whose import alone takes seconds.
            "-o", "addopts=",
            "-p", "no:nbval",
            # Node ids relative to the tests' repository: "tests/test_x.py::test_y".
            "--rootdir", str(tests.parent),
            "--continue-on-collection-errors",
            *(["--collect-only"] if collect_only else []),
            "--tb=short",
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
    env: dict[str, str] | None = None,
) -> tuple[dict, int, str]:
    """Run the tests of ``exercises`` in the repository at ``root``: :func:`run_tests` with ``-m``,
    collecting only the test files that carry their markers.

    Raises:
        GradingError: no exercises, or pytest did not get as far as reporting outcomes.
    """
    if not exercises:
        raise GradingError("no exercises to grade")
    return run_tests(
        root, tests_dir=tests_dir, markexpr=marker_expression(exercises),
        only_files_with=[e.marker for e in exercises], timeout=timeout, env=env,
    )


def _outcomes_for(record: dict, exercise: Exercise) -> list[TestOutcome]:
    outcomes = []
    for test in record["tests"]:
        if exercise.marker not in test["markers"]:
            continue
        outcomes.append(
            TestOutcome(
                test["nodeid"],
                # From this exercise's side, a stop at any other exercise's stub is a wait.
                classify(test["outcome"], test.get("message", ""), (exercise.id,)),
                test.get("message", ""),
                HIDDEN_MARKER in test["markers"],
                test.get("detail", ""),
            )
        )
    return outcomes


def default_reference() -> Path | None:
    """The instructor edition that holds this ``mamlkit``, if it has solution regions; else ``None``."""
    from .student import BEGIN_MARKER

    root = Path(__file__).resolve().parents[2]
    for exercise in EXERCISES:
        path = root / (exercise.module or exercise.notebook)
        if path.is_file() and BEGIN_MARKER in path.read_text(encoding="utf-8"):
            return root
    return None


def grade(
    root: str | os.PathLike = ".",
    exercises: tuple[Exercise, ...] = EXERCISES,
    *,
    tests_dir: str | None = None,
    policy: str = "all-or-nothing",
    timeout: float | None = None,
    reference: str | os.PathLike | None = None,
    env: dict[str, str] | None = None,
    only: tuple[str, ...] | None = None,
) -> GradeReport:
    """Run the exercises' tests of the repository at ``root`` and score them.

    Args:
        root: the repository to grade (a student's submission, or the instructor edition).
        exercises: the registry; each exercise's tests are those carrying its marker.
        tests_dir: the tests folder, relative to ``root``, or an absolute path. Default: the
            reference's ``tests`` when a reference is given (the course's copy, hidden tests
            included, so a submission's edited tests do not count), else ``root``'s.
        policy: ``"all-or-nothing"`` or ``"proportional"`` (see the module docstring).
        timeout: seconds allowed for each pytest run; ``None`` waits.
        reference: the instructor edition. With it each exercise is graded on its own, every
            other exercise running the reference solution; without it, one run grades all.
        env: the test runs' environment (default: this process's).
        only: grade just these exercise ids (the others still run the reference solution).

    Returns:
        A :class:`GradeReport`; ``report.table()`` prints it, ``report.to_dict()`` serialises it.

    Raises:
        ValueError: an unknown ``policy``.
        GradingError: pytest could not run, or the reference's solutions cannot be swapped in.
    """
    if policy not in POLICIES:
        raise ValueError(f"policy must be one of {', '.join(POLICIES)}, got {policy!r}")
    if not exercises:
        raise GradingError("no exercises to grade")
    graded = tuple(e for e in exercises if only is None or e.id in only)
    # The tests import the package from ``root``; without it there, Python would import an
    # installed copy (the instructor's, on a grading server) and grade that instead.
    package = next((e.module.split("/")[0] for e in exercises if e.module), None)
    if package is not None and not (Path(root) / package / "__init__.py").is_file():
        raise GradingError(
            f"the submission has no {package}/ package ({Path(root).absolute() / package / '__init__.py'} "
            f"is missing): submit the whole repository folder, with {package}/ and its files, "
            "not single files"
        )
    # Graded against the reference, an exercise whose file the submission lacks earns nothing,
    # with a note naming the file (a misplaced or forgotten file, not a wrong answer).
    missing = {e.id for e in graded
               if reference is not None and e.module and not (Path(root) / e.module).is_file()}
    absent = [
        ExerciseResult(e, [TestOutcome(f"{e.module} (missing)", "failed",
                                       f"{e.module} is not in the submission")],
                       0, [f"{e.module} is not in the submission: nothing of {e.label} to grade"])
        for e in graded if e.id in missing
    ]
    graded = tuple(e for e in graded if e.id not in missing)
    if tests_dir is None:
        tests_dir = str(Path(reference).absolute() / "tests") if reference is not None else "tests"
    warnings = [w for w in [data_warning(env)] if w]
    records: list[tuple[tuple[Exercise, ...], dict, list[str]]] = []
    exit_code, outputs = 0, []
    if graded and reference is None:
        record, exit_code, output = run_exercise_tests(root, graded, tests_dir=tests_dir, timeout=timeout, env=env)
        records.append((graded, record, []))
        outputs.append(output)
    elif graded:
        from .reference import IsolationError, build_composite, plan_composite, reference_functions

        try:
            references = reference_functions(reference, exercises)
        except (IsolationError, SyntaxError, FileNotFoundError) as err:
            raise GradingError(f"the reference solutions cannot be used: {err}") from None
        groups: dict[str, list] = {}
        for exercise in graded:
            composite = plan_composite(root, exercise, references, reference)
            groups.setdefault(composite.key(), []).append((exercise, composite))
        for members in groups.values():
            group = tuple(exercise for exercise, _ in members)
            with tempfile.TemporaryDirectory(prefix="mamlkit-composite-") as tmp:
                tree = build_composite(root, members[0][1], Path(tmp) / "submission")
                record, code, output = run_exercise_tests(tree, group, tests_dir=tests_dir, timeout=timeout, env=env)
            records.append((group, record, members[0][1].notes))
            exit_code = max(exit_code, code)
            outputs.append(output)
    results, collection_errors = list(absent), []
    for group, record, notes in records:
        for error in record["collection_errors"]:
            if error not in collection_errors:
                collection_errors.append(error)
        for exercise in group:
            tests = _outcomes_for(record, exercise)
            results.append(ExerciseResult(exercise, tests, _points(exercise, tests, policy), list(notes)))
    order = {e.id: i for i, e in enumerate(exercises)}
    results.sort(key=lambda r: order[r.exercise.id])
    return GradeReport(
        results, policy, collection_errors, exit_code, "\n".join(outputs),
        isolated=reference is not None, warnings=warnings,
    )


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
        nodeid, outcome = test["nodeid"], test["outcome"]
        message = test["message"].splitlines()[0] if test["message"] else ""
        stub_of = _stub_exercise(test["message"]) if outcome in ("failed", "error") else None
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
        student_problems += check_isolated_grading(student, src_root, exercises, timeout=timeout)
    problems = [f"could not collect {e['nodeid']}: {e['message']}" for e in solved.collection_errors]
    for result in solved.results:
        problems += [
            f"{result.exercise.label}: {t.nodeid} is {t.outcome} with the solution"
            + (f": {t.message}" if t.message else "")
            for t in result.tests
            # Skipped for want of the data (or a GPU): it proves nothing, and runs where that is.
            if not t.passed and t.outcome not in ("skipped", "xfailed")
        ]
    return problems + student_problems


def check_isolated_grading(
    student_root: str | os.PathLike,
    reference: str | os.PathLike,
    exercises: tuple[Exercise, ...] = EXERCISES,
    *,
    timeout: float | None = None,
    env: dict[str, str] | None = None,
    only: tuple[str, ...] | None = None,
) -> list[str]:
    """Check that the untouched student edition, graded each exercise on its own, earns nothing.

    With every other exercise running the reference solution, each test of an exercise must
    stop at *that* exercise's stub: a test that passes would give the exercise's points to a
    learner who did not write it (it does not really test the exercise), and one that fails
    otherwise fails for a reason the learner cannot fix. Together with the instructor edition
    passing every test, this means a submission that solves one exercise alone earns exactly
    that exercise's points.

    Returns:
        The problems found, one line each (empty when all is well).
    """
    from .reference import check_isolation

    problems = check_isolation(reference, exercises)
    if problems:
        return problems
    report = grade(student_root, exercises, reference=reference, timeout=timeout, env=env, only=only)
    problems = [f"could not collect {e['nodeid']}: {e['message'].splitlines()[0]}" for e in report.collection_errors]
    for result in report.results:
        exercise = result.exercise
        for test in result.tests:
            if test.outcome in ("skipped", "xfailed"):
                continue
            first = test.message.splitlines()[0] if test.message else ""
            if test.passed:
                problems.append(
                    f"{exercise.label}: {test.nodeid} passes when every other exercise is solved and "
                    f"{exercise.label} is not: it does not test {exercise.label}, so unmark it"
                )
            elif _stub_exercise(test.message) != exercise.id:
                problems.append(
                    f"{exercise.label}: {test.nodeid} is {test.outcome} when every other exercise is "
                    f"solved, but not at the stub of {exercise.label}" + (f": {first}" if first else "")
                )
        if result.points_earned:
            problems.append(f"{exercise.label} earns {result.points_earned} points in the untouched edition")
    return problems
