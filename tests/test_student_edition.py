"""The student edition of this repository, built as it is handed out, checked end to end.

The edition is built, like ``python -m mamlkit.classroom build-student``, from the files git
tracks (on CI a clean clone, so exactly what is committed; locally, files not yet added are
left out) into a temporary folder. Then:

(a) building it again gives byte-identical files;
(b) nothing gives a solution away: no solution marker lines, no notebook outputs, none of the
    registry's ``solution_only`` strings (``find_leaks``); every exercise has a stub in the
    files the registry names, and the notebooks' headings name their exercises (a notebook
    not written yet is tolerated, one saved under another name than the registry's is not);
(c) in the student edition every test marked with an exercise fails with the
    ``NotImplementedError`` of one of its exercises' stubs, and every other test passes
    (``check_student_tests``), so a learner starts from a suite in which exactly the
    exercises are red.

(d), the instructor edition passing everything, is the test run this file is part of.

In (c) ``MAMLKIT_DATA`` is unset, so the tests on the real Omniglot files are skipped: they
test the loader, which is not an exercise, and loading the data would only add time. For the
same reason (c) leaves out ``tests/test_classroom.py`` (see ``NOT_RUN_IN_THE_EDITION``).

In the student edition itself there are no solution regions, and this file skips.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mamlkit.classroom.exercises import EXERCISES
from mamlkit.classroom.grade import _stub_exercise, check_student_tests
from mamlkit.classroom.questions import course_questions
from mamlkit.classroom.reference import _splice, check_isolation, plan_composite, reference_functions
from mamlkit.classroom.student import BEGIN_MARKER, build_student_edition, find_leaks

REPO = Path(__file__).resolve().parents[1]
THIS_FILE = Path(__file__).resolve().relative_to(REPO).as_posix()
#: Test files that run the same way in both editions, so (c) skips them for speed: the classroom
#: tests build toy courses in temporary folders and import nothing that has a stub.
NOT_RUN_IN_THE_EDITION = ("tests/test_classroom.py",)


def _has_solution_regions() -> bool:
    """Whether the files the registry names hold solution regions (the student edition's do not)."""
    for rel in {e.module or e.notebook for e in EXERCISES}:
        path = REPO / rel
        if path.is_file() and BEGIN_MARKER in path.read_text(encoding="utf-8"):
            return True
    return False


pytestmark = [
    pytest.mark.skipif(not _has_solution_regions(), reason="no solution regions: this is the student edition"),
    pytest.mark.skipif(
        (REPO / ".git").exists() and shutil.which("git") is None,
        reason="the edition is built from the files git tracks, and git is not installed",
    ),
]


def _uncommitted_note() -> str:
    """A reminder, for failure messages, that files git does not track are not in the edition."""
    if not (REPO / ".git").exists():
        return ""
    status = subprocess.run(
        ["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=all"],
        capture_output=True, text=True, check=False,
    ).stdout.splitlines()
    untracked = [line[3:] for line in status if line.startswith("??")]
    if not untracked:
        return ""
    shown = ", ".join(untracked[:8]) + (f" and {len(untracked) - 8} more" if len(untracked) > 8 else "")
    return (
        f"\n(Note: the edition holds only files git tracks; {len(untracked)} untracked file(s) are "
        f"left out: {shown}. `git add` them to include them.)"
    )


def _is_notebook_not_written_yet(warning: str) -> bool:
    """True for "notebooks/03_x.ipynb (...) is not in the repository" when no 03_*.ipynb exists."""
    match = re.fullmatch(r"notebooks/(\d\d)_\S+\.ipynb \(Exercise [^)]*\) is not in the repository", warning)
    return match is not None and not any((REPO / "notebooks").glob(f"{match[1]}_*.ipynb"))


def _tree_bytes(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def edition(tmp_path_factory):
    out = tmp_path_factory.mktemp("edition") / "student"
    report = build_student_edition(REPO, out)
    return out, report


def test_building_twice_gives_identical_files(edition, tmp_path):
    first, _ = edition
    build_student_edition(REPO, tmp_path / "again")
    a, b = _tree_bytes(first), _tree_bytes(tmp_path / "again")
    assert sorted(a) == sorted(b), f"the two builds hold different files: {sorted(set(a) ^ set(b))}"
    differing = [rel for rel in a if a[rel] != b[rel]]
    assert not differing, f"building twice gave different bytes in {differing}"


def test_the_student_edition_gives_no_solution_away(edition):
    out, report = edition
    leaks = find_leaks(out)
    assert not leaks, "the student edition gives solutions away:\n" + "\n".join(leaks) + _uncommitted_note()
    # A notebook not written yet is fine; one under another name than the registry's is not.
    warnings = [w for w in report.warnings if not _is_notebook_not_written_yet(w)]
    assert not warnings, (
        "the solution regions or notebook headings disagree with the registry "
        "(mamlkit/classroom/exercises.py):\n" + "\n".join(warnings) + _uncommitted_note()
    )
    for exercise in EXERCISES:
        where = exercise.module or exercise.notebook
        text = (out / where).read_text(encoding="utf-8")
        stub = exercise.stub_message(in_notebook=exercise.module is None)
        assert stub in text, f"{where} in the student edition has no stub of {exercise.label} ({stub!r})"


@pytest.fixture(scope="module")
def edition_run(edition):
    """One run of every test of the edition (without data), reused by the tests below."""
    out, _ = edition
    env = {k: v for k, v in os.environ.items() if k != "MAMLKIT_DATA"}
    return check_student_tests(out, ignore=(THIS_FILE, *NOT_RUN_IN_THE_EDITION), timeout=600, env=env)


def test_the_edition_has_the_students_readme_and_classroom_workflow(edition):
    out, _ = edition
    readme = (out / "README.md").read_text(encoding="utf-8")
    assert readme != (REPO / "README.md").read_text(encoding="utf-8")
    for instructor_only in ("build-student", "classroom verify", "classroom grade", "gradescope", "--reference",
                            "instructor edition", "For instructors"):
        assert instructor_only not in readme, f"the student README mentions {instructor_only!r}"
    for exercise in EXERCISES:
        assert f"| {exercise.id} | {exercise.title} | {exercise.points} |" in readme
    questions = course_questions(REPO)
    assert len(questions) >= 10, "notebooks 01-03 ask questions for written analysis"
    for q in questions:  # read from the notebooks, so the list follows them
        assert f"- **{q.label[len('Question '):]}** (`{q.notebook}`) {q.text}" in readme, f"{q.label} is not listed"
    assert (out / ".github/workflows/classroom.yml").is_file()
    assert not (out / ".github/workflows/ci.yml").exists(), "the maintainers' CI would run on the stubs"


def test_in_the_student_edition_exactly_the_exercise_tests_fail_each_at_its_stub(edition_run):
    problems, record = edition_run
    assert not problems, (
        f"the tests of the student edition ({len(record['tests'])} run) are not red exactly at the "
        "exercises:\n" + "\n".join(problems) + _uncommitted_note()
    )


def _solved_alone(edition_root: Path, exercise, references, tmp: Path) -> Path:
    """A copy of the edition's modules with one exercise's reference solution written in."""
    submission = tmp / f"solved_{exercise.marker}"
    for rel in {ref.path for refs in references.values() for ref in refs}:
        (submission / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(edition_root / rel, submission / rel)
    for rel in {ref.path for ref in references[exercise.id]}:
        refs = [ref for ref in references[exercise.id] if ref.path == rel]
        text = _splice((submission / rel).read_text(encoding="utf-8"), rel, refs)
        (submission / rel).write_text(text, encoding="utf-8")
    return submission


def test_every_exercise_solved_alone_earns_its_points_and_no_other(edition, edition_run, tmp_path):
    """For each exercise X, a submission that solves X alone earns X's points and no other.

    Grading X, the grader runs the instructor's code in every module (checked here file by file),
    which the rest of this suite shows passes every test: X earns its points. Grading Y ≠ X, it
    runs exactly what it runs for the untouched edition (checked here too); there, at least one
    of Y's tests stopped at Y's own stub in the edition run, and such a test reaches that stub
    the same way when the other exercises are solved (before it, no other exercise's code ran:
    that would have raised first), so under the all-or-nothing policy Y earns nothing.

    ``python -m mamlkit.classroom verify`` also runs every exercise test with all the other
    exercises solved, which finds tests marked for an exercise they do not need (they matter
    for the proportional policy); that takes minutes, so it is not repeated here.
    """
    out, _ = edition
    problems = check_isolation(REPO)
    assert not problems, "exercises that cannot be graded on their own:\n" + "\n".join(problems)
    references = reference_functions(REPO)
    reference_text = {
        rel: "".join(
            line for line in (REPO / rel).read_text(encoding="utf-8").splitlines(keepends=True)
            if not line.lstrip().startswith(("### BEGIN SOLUTION", "### END SOLUTION"))
        )
        for rel in {ref.path for refs in references.values() for ref in refs}
    }
    graded = [e for e in EXERCISES if e.module is not None]
    for exercise in graded:
        submission = _solved_alone(out, exercise, references, tmp_path)
        own = plan_composite(submission, exercise, references, REPO)
        for rel, text in reference_text.items():
            code = own.files.get(rel, (submission / rel).read_text(encoding="utf-8"))
            assert code == text, (
                f"grading {exercise.label} of a submission that solves it alone does not run the reference {rel}"
            )
        for other in graded:
            if other is not exercise:
                assert (
                    plan_composite(submission, other, references, REPO).files
                    == plan_composite(out, other, references, REPO).files
                ), f"grading {other.label} of a submission that solves only {exercise.label} runs other code than in the edition"
    _, record = edition_run
    for exercise in graded:
        at_own_stub = [
            t["nodeid"] for t in record["tests"]
            if exercise.marker in t["markers"] and t["outcome"] in ("failed", "error")
            and _stub_exercise(t["message"]) == exercise.id
        ]
        assert at_own_stub, (
            f"no test of {exercise.label} stops at its own stub in the student edition, so a submission "
            f"that solves every other exercise could earn {exercise.label}'s points without it"
        )


@pytest.mark.skipif(
    os.environ.get("MAMLKIT_CLASSROOM_QUICK") == "1",
    reason="runs every Exercise 2.1 test twice (about a minute); MAMLKIT_CLASSROOM_QUICK=1 leaves it out",
)
def test_check_shows_a_tick_for_a_correct_2_1_alone_and_names_the_create_graph_mistake_first(edition, tmp_path):
    """As a learner: Exercise 2.1 written (the reference solution) and nothing else, then the
    classic mistake, the inner gradient without ``create_graph=True``."""
    out, _ = edition
    refs = reference_functions(REPO)["2.1"]
    # The mistake, made in the reference's gradient_step (spelled out here, the solution's line
    # would itself be a leak of this file into the edition).
    step = next(ref for ref in refs if ref.qualname == "gradient_step")
    mistake = step.source.replace(", create_graph=True)", ")")
    assert mistake != step.source
    # Two copies of the edition, one solved and one with the mistake, checked side by side:
    # each check runs every Exercise 2.1 test, and the two processes share the cores.
    env = {k: v for k, v in os.environ.items() if k != "MAMLKIT_DATA"}
    env["OMP_NUM_THREADS"] = "1"
    checks, results = {}, {}
    try:
        for name, edit in (("solved", lambda code: code),
                           ("mistaken", lambda code: code.replace(step.source, mistake))):
            student = tmp_path / name
            shutil.copytree(out, student)
            module = student / refs[0].path
            solved = _splice(module.read_text(encoding="utf-8"), refs[0].path, refs)
            module.write_text(edit(solved), encoding="utf-8")
            command = [sys.executable, "-m", "mamlkit.classroom", "check", "2.1", "--root", str(student)]
            checks[name] = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                                            stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 900
        for name, process in checks.items():
            stdout, stderr = process.communicate(timeout=max(1.0, deadline - time.monotonic()))
            results[name] = (process.returncode, stdout, stderr)
    finally:
        for process in checks.values():
            if process.poll() is None:  # a timeout or an error above: leave no process behind
                process.kill()
                process.communicate()
    returncode, stdout, stderr = results["solved"]
    assert returncode == 0, stdout + stderr
    assert stdout.startswith("✓ Exercise 2.1 "), stdout
    returncode, stdout, stderr = results["mistaken"]
    assert returncode == 1, stdout + stderr
    assert stdout.startswith("✗ Exercise 2.1 "), stdout
    assert "Likely mistake: the inner gradient is taken without create_graph=True" in stdout.splitlines()[0], stdout
    first = stdout.split("✗ 1. ", 1)[1].split("\n✗ 2. ", 1)[0]
    assert "create_graph=True" in first, f"the first failure should name create_graph=True:\n{first}"


@pytest.mark.skipif(
    os.environ.get("MAMLKIT_CLASSROOM_QUICK") == "1",
    reason="runs the tests of Exercises 2.1 and 4.1 (about a minute); MAMLKIT_CLASSROOM_QUICK=1 leaves it out",
)
def test_check_names_the_classic_mistake_in_its_first_line(edition, tmp_path):
    """As a learner who made one of the classic mistakes: ``.backward()`` in the inner loop (whose
    failures are a bare TypeError deep in the library), or queries that are support images again
    (caught by a bare ``assert torch.equal``). The verdict, the first line, names the mistake."""
    from mamlkit.classroom.nbgrader_run import make_mistake
    from mamlkit.classroom.walk import solve_exercises

    out, _ = edition
    cases = {
        "backward_in_the_inner_loop": ("2.1", "Likely mistake: `.backward()` in the inner loop"),
        "queries_are_support_images": ("4.1", "Likely mistake: the query images are not the drawings that follow "
                                              "the support ones"),
    }
    env = {k: v for k, v in os.environ.items() if k != "MAMLKIT_DATA"}
    env["OMP_NUM_THREADS"] = "1"
    checks = {}
    try:
        for mistake, (exercise_id, _) in cases.items():
            student = tmp_path / mistake
            shutil.copytree(out, student)
            solve_exercises(student, [exercise_id], REPO)
            make_mistake(student, mistake)
            command = [sys.executable, "-m", "mamlkit.classroom", "check", exercise_id, "--root", str(student)]
            checks[mistake] = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                                               stderr=subprocess.PIPE, text=True)
        results = {name: process.communicate(timeout=900) for name, process in checks.items()}
    finally:
        for process in checks.values():
            if process.poll() is None:
                process.kill()
                process.communicate()
    for mistake, (exercise_id, named) in cases.items():
        stdout, stderr = results[mistake]
        assert checks[mistake].returncode == 1, stdout + stderr
        first = stdout.splitlines()[0]
        assert first.startswith(f"✗ Exercise {exercise_id} ") and named in first, f"{mistake}:\n{stdout[:2000]}"
