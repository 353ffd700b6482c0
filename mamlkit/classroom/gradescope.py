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
``visibility``); its output lists the visible tests that did not pass with their messages, and
only a count for the hidden ones. The environment variable ``AUTOGRADER_ROOT`` stands in for
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
"""

RUN_AUTOGRADER = f"""#!/usr/bin/env bash
# Gradescope runs this for every submission. AUTOGRADER_ROOT stands in for /autograder in tests.
set -euo pipefail
ROOT="${{AUTOGRADER_ROOT:-/autograder}}"
cd "$ROOT/source"
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


def _exercise_output(result) -> str:
    lines = []
    if not result.tests:
        return "No tests were found for this exercise."
    if not result.graded:
        return f"Not graded: all {len(result.tests)} tests were skipped."
    visible = [t for t in result.tests if not t.hidden and t.outcome != "skipped"]
    hidden = [t for t in result.tests if t.hidden and t.outcome != "skipped"]
    lines.append(f"Visible tests: {sum(t.passed for t in visible)} of {len(visible)} pass.")
    if hidden:
        lines.append(f"Hidden tests: {sum(t.passed for t in hidden)} of {len(hidden)} pass.")
    for test in visible:
        if not test.passed:
            first = "\n".join(test.message.splitlines()[:12])
            lines.append(f"\n✗ {test.nodeid.split('::', 1)[-1]} ({test.outcome})\n{first}")
    return "\n".join(lines)


def results_json(report: GradeReport) -> dict:
    """``results.json`` in Gradescope's format, one test entry per exercise."""
    return {
        "score": report.points_earned,
        "output": report.table() if not report.hidden_tests else _public_table(report),
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
    """The summary without the names of hidden tests."""
    lines = [f"{r.exercise.label}: {r.points_earned:g}/{r.exercise.points}" for r in report.results]
    lines.append(f"Total: {report.points_earned:g}/{report.points_possible}")
    lines += [f"Warning: {w}" for w in report.warnings]
    return "\n".join(lines)


def run(root: str | os.PathLike = "/autograder", policy: str = "all-or-nothing") -> dict:
    """Grade ``ROOT/submission`` with the course in ``ROOT/source``; write ``ROOT/results/results.json``."""
    root = Path(root)
    source = root / "source"
    registry = json.loads((source / "exercises.json").read_text(encoding="utf-8"))
    exercises = tuple(Exercise(**{**e, "solution_only": tuple(e["solution_only"])}) for e in registry)
    package = next((e.module.split("/")[0] for e in exercises if e.module), "mamlkit")
    submission = _submission_root(root / "submission", package)
    try:
        report = grade(submission, exercises, reference=source / "course", policy=policy, timeout=1800)
        results = results_json(report)
    except GradingError as err:
        results = {"score": 0, "output": f"The autograder could not run the tests:\n{err}", "tests": []}
    out = root / "results" / "results.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Grade a Gradescope submission (run by run_autograder).")
    parser.add_argument("--root", type=Path, default=Path("/autograder"))
    args = parser.parse_args(argv)
    results = run(args.root)
    print(results.get("output", ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
