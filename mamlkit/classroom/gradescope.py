"""Gradescope: an autograder zip that grades a submission exercise by exercise.

``python -m mamlkit.classroom gradescope OUT.zip`` writes a zip in Gradescope's autograder
format (Gradescope unpacks it into ``/autograder/source``):

- ``setup.sh``: installs the course's requirements (CPU-only PyTorch) on Gradescope's image;
- ``run_autograder``: grades ``/autograder/submission`` and writes
  ``/autograder/results/results.json``;
- ``course/``: the instructor edition (reference solutions and every test, hidden ones
  included), which the grader carries and the student edition does not;
- ``mamlkit_grader/``: this grading code, so grading does not depend on the
  ``mamlkit`` a submission brings, and ``exercises.json``: the exercise registry.

Each exercise is graded on its own (see :mod:`.reference`) and becomes one entry of
``tests`` in ``results.json`` (``name``, ``number``, ``score``, ``max_score``, ``output``,
``visibility``); its output names the classic mistake the failures show, if any, then the
visible tests that did not pass, the most telling first (the order ``check`` uses), capped in
length, and only a count for the hidden ones. Warnings meant for the instructor (the data not
found, say) go to the autograder's stdout, which students do not see. The environment variable ``AUTOGRADER_ROOT`` stands in for
``/autograder`` (the tests run ``run_autograder`` in a temporary folder).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import zipfile
from dataclasses import asdict
from pathlib import Path

from .exercises import EXERCISES, Exercise
from .grade import GradeReport, GradingError, grade

__all__ = ["build_autograder_zip", "results_json", "run"]

_PACKAGE = "mamlkit_grader"
_FIXED_TIME = (1980, 1, 1, 0, 0, 0)  # zip timestamps fixed, so building twice gives the same bytes

SETUP_SH = """#!/usr/bin/env bash
# Gradescope runs this once, when it builds the autograder image.
set -euo pipefail
cd /autograder/source/course
pip3 install -r requirements.txt --extra-index-url https://download.pytorch.org/whl/cpu
# The Omniglot images (md5-checked), so the tests on the real images run rather than skip.
mkdir -p /autograder/source/omniglot
python3 -c "from mamlkit.data.omniglot import find_omniglot; find_omniglot(cache_dir='/autograder/source/omniglot', progress=False)"
"""

RUN_AUTOGRADER = f"""#!/usr/bin/env bash
# Gradescope runs this for every submission. AUTOGRADER_ROOT stands in for /autograder in tests.
set -euo pipefail
ROOT="${{AUTOGRADER_ROOT:-/autograder}}"
cd "$ROOT/source"
if [ -z "${{MAMLKIT_DATA:-}}" ] && [ -f "$ROOT/source/omniglot/images_background.zip" ]; then
    export MAMLKIT_DATA="$ROOT/source/omniglot"
fi
exec python3 -m {_PACKAGE}.gradescope --root "$ROOT"
"""


def _add(zf: zipfile.ZipFile, name: str, data: bytes, executable: bool = False) -> None:
    info = zipfile.ZipInfo(name, date_time=_FIXED_TIME)
    info.compress_type = zipfile.ZIP_DEFLATED
    info.external_attr = (0o755 if executable else 0o644) << 16
    zf.writestr(info, data)


def build_autograder_zip(
    src_root: str | os.PathLike, out_zip: str | os.PathLike, exercises: tuple[Exercise, ...] = EXERCISES
) -> Path:
    """Write the Gradescope autograder zip for the instructor edition at ``src_root``.

    Raises:
        GradingError: a solution cannot be graded on its own (see :func:`.reference.check_isolation`).
    """
    from .reference import check_isolation
    from .student import list_source_files

    problems = check_isolation(src_root, exercises)
    if problems:
        raise GradingError("the exercises cannot be graded on their own:\n" + "\n".join(problems))
    src_root, out_zip = Path(src_root), Path(out_zip)
    out_zip.parent.mkdir(parents=True, exist_ok=True)
    registry = [asdict(e) for e in exercises]
    with zipfile.ZipFile(out_zip, "w") as zf:
        _add(zf, "setup.sh", SETUP_SH.encode(), executable=True)
        _add(zf, "run_autograder", RUN_AUTOGRADER.encode(), executable=True)
        _add(zf, "exercises.json", (json.dumps(registry, indent=1) + "\n").encode())
        for path in sorted(Path(__file__).parent.glob("*.py")):
            _add(zf, f"{_PACKAGE}/{path.name}", path.read_bytes())
        for rel in list_source_files(src_root, exclude=out_zip.parent):
            _add(zf, f"course/{rel}", (src_root / rel).read_bytes(), os.access(src_root / rel, os.X_OK))
    return out_zip


def _submission_root(submission: Path, package: str) -> Path:
    """The folder that holds ``package``: the submission itself, or its only subfolder that does."""
    if (submission / package).is_dir():
        return submission
    found = [d for d in sorted(submission.iterdir()) if d.is_dir() and (d / package).is_dir()]
    return found[0] if len(found) == 1 else submission


#: Caps on what one exercise's feedback shows: failures listed, lines and characters of each
#: message (a gradcheck failure prints whole Jacobians), and characters in all.
MAX_FAILURES = 5
MAX_MESSAGE_LINES = 12
MAX_MESSAGE_CHARS = 1200
MAX_OUTPUT_CHARS = 6000


def _capped(message: str) -> str:
    from .hints import trim_message

    text = trim_message(message, MAX_MESSAGE_LINES)
    return text if len(text) <= MAX_MESSAGE_CHARS else text[: MAX_MESSAGE_CHARS - 1] + "…"


def _exercise_output(result) -> str:
    """One exercise's feedback: the counts, the classic mistake if the failures show one, then
    the visible failures, the most telling first (the order ``check`` uses), capped in length."""
    from .hints import diagnose, failure_order

    if not result.tests:
        return "No tests were found for this exercise."
    if not result.graded:
        return f"Not graded: all {len(result.tests)} tests were skipped."
    exercise = result.exercise
    visible = [t for t in result.tests if not t.hidden and t.outcome != "skipped"]
    hidden = [t for t in result.tests if t.hidden and t.outcome != "skipped"]
    lines = [f"Visible tests: {sum(t.passed for t in visible)} of {len(visible)} pass."]
    if hidden:
        lines.append(f"Hidden tests: {sum(t.passed for t in hidden)} of {len(hidden)} pass.")
    failing = sorted((t for t in visible if not t.passed), key=lambda t: failure_order(exercise, t.nodeid, t.message))
    mistake = diagnose(exercise, [(t.nodeid, t.message, t.detail) for t in failing + [t for t in hidden if not t.passed]])
    if mistake:
        lines.append(f"Likely mistake: {mistake}")
    lines += result.notes
    for number, test in enumerate(failing[:MAX_FAILURES], start=1):
        lines.append(f"\n✗ {number}. {test.nodeid.split('::', 1)[-1]} ({test.outcome})\n{_capped(test.message)}")
    if len(failing) > MAX_FAILURES:
        lines.append(f"\n… and {len(failing) - MAX_FAILURES} more failing tests: fix the first ones, then submit again.")
    text = "\n".join(lines)
    return text if len(text) <= MAX_OUTPUT_CHARS else text[: MAX_OUTPUT_CHARS - 1] + "…"


def results_json(report: GradeReport) -> dict:
    """``results.json`` in Gradescope's format, one test entry per exercise.

    What students see holds no instructor-facing lines: no warnings about the grader's setup
    (``MAMLKIT_DATA`` not set, say), no names of hidden tests; :func:`main` prints the warnings
    to the autograder's stdout, which only instructors see.
    """
    return {
        "score": report.points_earned,
        "output": _public_table(report),
        "visibility": "visible",
        "stdout_visibility": "hidden",
        "tests": [
            {
                "name": f"{r.exercise.label}: {r.exercise.title}",
                "number": r.exercise.id,
                "score": r.points_earned,
                "max_score": r.exercise.points,
                "output": _exercise_output(r),
                "visibility": "visible",
            }
            for r in report.results
        ],
    }


def _public_table(report: GradeReport) -> str:
    """The summary: points per exercise and the total."""
    lines = [f"{r.exercise.label}: {r.points_earned:g}/{r.exercise.points}" for r in report.results]
    lines.append(f"Total: {report.points_earned:g}/{sum(r.exercise.points for r in report.results)}")
    lines.append("Each exercise is graded on its own: the others run the course's solution.")
    return "\n".join(lines)


def run(root: str | os.PathLike = "/autograder", policy: str = "all-or-nothing", *, with_warnings: bool = False):
    """Grade ``ROOT/submission`` with the course in ``ROOT/source``; write ``ROOT/results/results.json``.

    Returns the results (and, with ``with_warnings``, the grader's warnings, for the instructors).
    """
    warnings: list[str] = []
    root = Path(root)
    source = root / "source"
    registry = json.loads((source / "exercises.json").read_text(encoding="utf-8"))
    exercises = tuple(Exercise(**{**e, "solution_only": tuple(e["solution_only"])}) for e in registry)
    package = next((e.module.split("/")[0] for e in exercises if e.module), "mamlkit")
    submission = _submission_root(root / "submission", package)
    try:
        report = grade(submission, exercises, reference=source / "course", policy=policy, timeout=1800)
        results = results_json(report)
        warnings = list(report.warnings)
    except GradingError as err:
        results = {"score": 0, "output": f"The autograder could not run the tests:\n{err}", "tests": []}
    out = root / "results" / "results.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return (results, warnings) if with_warnings else results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Grade a Gradescope submission (run by run_autograder).")
    parser.add_argument("--root", type=Path, default=Path("/autograder"))
    args = parser.parse_args(argv)
    results, warnings = run(args.root, with_warnings=True)
    # stdout is for the instructors (stdout_visibility "hidden"): the grader's own warnings go here.
    print(results.get("output", ""))
    for warning in warnings:
        print(f"Warning: {warning}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
