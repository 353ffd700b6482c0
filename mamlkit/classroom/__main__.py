"""Command line of the classroom edition: ``python -m mamlkit.classroom COMMAND``.

Commands:
    build-student OUT   write the student edition of the repository into OUT
    verify              check that each exercise's tests pass with the solution and fail at
                        its stub, and that all other tests pass in the student edition
    grade               grade a submission, each exercise on its own (``--json`` to save)
    check ID            run one exercise's tests, as ``check_exercise`` does in a notebook
    gradescope OUT.zip  write the Gradescope autograder zip
    nbgrader-source DIR write an nbgrader course folder: source/maml is the student edition, its
                        check cells graded with the registry's points (mamlkit.classroom.nbgrader)
    grade-checkpoint CKPT  points for a trained checkpoint's accuracy on fixed validation tasks
    walk                run every notebook of the student edition as a learner meets it
                        (mamlkit.classroom.walk)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .exercises import EXERCISES
from .grade import POLICIES, GradingError, default_reference, grade, verify_exercise_tests
from .hints import check_exercise
from .student import BuildError, build_student_edition, find_leaks


def _build_student(args: argparse.Namespace) -> int:
    try:
        report = build_student_edition(args.src, args.out, force=args.force)
    except BuildError as err:
        print(err, file=sys.stderr)
        return 1
    print(report.summary())
    leaks = find_leaks(args.out)
    if leaks:
        print(f"Leak check: {len(leaks)} problem(s); do not hand this edition out:", file=sys.stderr)
        for leak in leaks:
            print(f"  {leak}", file=sys.stderr)
        return 1
    print("Leak check: clean.")
    return 0


def _verify(args: argparse.Namespace) -> int:
    try:
        problems = verify_exercise_tests(args.src, timeout=args.timeout)
    except (BuildError, GradingError) as err:
        print(err, file=sys.stderr)
        return 1
    for problem in problems:
        print(problem)
    if problems:
        return 1
    print(
        f"All {len(EXERCISES)} exercises: tests pass with the solutions and fail at their own stubs; "
        "every other test passes in the student edition too."
    )
    return 0


def _grade(args: argparse.Namespace) -> int:
    reference = None if args.no_reference else (args.reference or default_reference())
    if reference is None:
        print(
            "warning: no reference solutions (pass --reference, the instructor edition), so exercises "
            "are not graded on their own: a test that stops at another exercise's stub does not pass",
            file=sys.stderr,
        )
    try:
        tests = str(args.tests.resolve()) if args.tests is not None else None
        report = grade(args.root, tests_dir=tests, policy=args.policy, timeout=args.timeout, reference=reference)
    except GradingError as err:
        print(err, file=sys.stderr)
        return 1
    print(report.table())
    if args.verbose:
        print(report.pytest_output)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        text = json.dumps(report.to_dict(), indent=2, ensure_ascii=False) + "\n"
        args.json.write_text(text, encoding="utf-8")
        print(f"Wrote {args.json}")
    return 0


def _gradescope(args: argparse.Namespace) -> int:
    from .gradescope import build_autograder_zip

    try:
        path = build_autograder_zip(args.src, args.out)
    except GradingError as err:
        print(err, file=sys.stderr)
        return 1
    print(f"Wrote {path}: upload it as the autograder of a Gradescope programming assignment.")
    return 0


def _nbgrader_source(args: argparse.Namespace) -> int:
    from .nbgrader import build_nbgrader_course

    try:
        notes = build_nbgrader_course(args.src, args.out, force=args.force)
    except (BuildError, FileExistsError) as err:
        print(err, file=sys.stderr)
        return 1
    for note in notes:
        print(f"  {note}")
    print(f"Wrote the nbgrader course {args.out}: cd there, then nbgrader generate_assignment maml; "
          "after collecting the submissions, nbgrader autograde maml.")
    return 0


def _grade_checkpoint(args: argparse.Namespace) -> int:
    from .performance import grade_checkpoint

    extra = ("--data-root", str(args.data_root)) if args.data_root else ()
    result = grade_checkpoint(args.checkpoint, num_tasks=args.tasks, seed=args.seed,
                              time_limit_s=args.time_limit, extra_args=extra)
    print(f"{result.points}/{result.max_points} points: {result.message}")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result.to_dict(), indent=2) + "\n", encoding="utf-8")
    # 0 points because the file could not be evaluated is not a grade: say so in the exit status.
    return 0 if result.graded else 1


def _walk(args: argparse.Namespace) -> int:
    from .walk import walk_student_path

    try:
        report = walk_student_path(args.src, notebooks=args.notebook, keep=args.keep)
    except (BuildError, ValueError) as err:
        print(err, file=sys.stderr)
        return 2
    seconds = sum(run.seconds for run in report.runs)
    if report.ok:
        print(f"The student's path is clear: {len(report.runs)} notebook runs, {seconds:.0f} s.")
        return 0
    print(f"{len(report.problems)} problem(s) on the student's path:", file=sys.stderr)
    for problem in report.problems:
        print(f"  {problem}", file=sys.stderr)
    return 1


def _check(args: argparse.Namespace) -> int:
    try:
        return 0 if check_exercise(args.exercise, root=args.root, timeout=args.timeout) else 1
    except (ValueError, FileNotFoundError, GradingError) as err:
        print(err, file=sys.stderr)
        return 2


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m mamlkit.classroom",
        description="Build the student edition of the course, check its exercises' tests, grade.",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    build = commands.add_parser("build-student", help="write the student edition into OUT")
    build.add_argument("out", type=Path, help="output folder (empty, or only a .git folder, unless --force)")
    build.add_argument("--src", type=Path, default=Path.cwd(), help="the instructor edition (default: .)")
    build.add_argument("--force", action="store_true", help="replace OUT's contents, keeping OUT/.git")
    build.set_defaults(run=_build_student)

    verify = commands.add_parser("verify", help="tests pass with the solutions and fail with the stubs")
    verify.add_argument("--src", type=Path, default=Path.cwd(), help="the instructor edition (default: .)")
    verify.add_argument("--timeout", type=float, default=None, help="seconds allowed per test run")
    verify.set_defaults(run=_verify)

    grade_ = commands.add_parser("grade", help="run the exercises' tests and print the points")
    grade_.add_argument("--root", type=Path, default=Path.cwd(), help="repository to grade (default: .)")
    grade_.add_argument(
        "--tests", type=Path, default=None,
        help="the tests to run (default: the reference's tests, so a submission's edited tests do not count; "
             "with --no-reference, ROOT/tests)",
    )
    grade_.add_argument(
        "--reference", type=Path, default=None,
        help="the instructor edition, whose solutions the other exercises run while one is graded "
        "(default: the repository of this mamlkit, when it holds the solutions)",
    )
    grade_.add_argument(
        "--no-reference", action="store_true",
        help="grade without reference solutions: one run, tests that reach another exercise's stub wait",
    )
    grade_.add_argument("--json", type=Path, default=None, help="also write the grade as JSON here")
    grade_.add_argument("--policy", choices=POLICIES, default=POLICIES[0], help="how tests become points")
    grade_.add_argument("--timeout", type=float, default=None, help="seconds allowed for the test run")
    grade_.add_argument("-v", "--verbose", action="store_true", help="also print pytest's output")
    grade_.set_defaults(run=_grade)

    gradescope = commands.add_parser("gradescope", help="write the Gradescope autograder zip")
    gradescope.add_argument("out", type=Path, help="the zip to write, e.g. autograder.zip")
    gradescope.add_argument("--src", type=Path, default=Path.cwd(), help="the instructor edition (default: .)")
    gradescope.set_defaults(run=_gradescope)

    nbg = commands.add_parser("nbgrader-source", help="write an nbgrader course folder with graded check cells")
    nbg.add_argument("out", type=Path, help="the course folder to write")
    nbg.add_argument("--src", type=Path, default=Path.cwd(), help="the instructor edition (default: .)")
    nbg.add_argument("--force", action="store_true", help="replace OUT if it exists")
    nbg.set_defaults(run=_nbgrader_source)

    perf = commands.add_parser("grade-checkpoint", help="points for a trained checkpoint's accuracy")
    perf.add_argument("checkpoint", type=Path, help="the submitted weights (model.pt)")
    perf.add_argument("--tasks", type=int, default=200, help="fixed validation tasks (default: 200)")
    perf.add_argument("--seed", type=int, default=2024, help="seed of the fixed tasks (default: 2024)")
    perf.add_argument("--time-limit", type=float, default=600, help="seconds allowed (default: 600)")
    perf.add_argument("--data-root", type=Path, default=None, help="the Omniglot folder")
    perf.add_argument("--json", type=Path, default=None, help="also write the result as JSON here")
    perf.set_defaults(run=_grade_checkpoint)

    check = commands.add_parser("check", help="run one exercise's tests")
    check.add_argument("exercise", help="e.g. 2.1")
    check.add_argument("--root", type=Path, default=Path.cwd(), help="repository (default: .)")
    check.add_argument("--timeout", type=float, default=600)
    check.set_defaults(run=_check)

    walk = commands.add_parser(
        "walk", help="run every notebook of the student edition, exercises solved one at a time")
    walk.add_argument("--src", type=Path, default=Path.cwd(), help="the instructor edition (default: .)")
    walk.add_argument("--notebook", action="append", default=None,
                      help="walk only this notebook, e.g. notebooks/04_omniglot_maml.ipynb (repeatable)")
    walk.add_argument("--keep", type=Path, default=None, help="keep every edition the walk ran in this folder")
    walk.set_defaults(run=_walk)

    args = parser.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
