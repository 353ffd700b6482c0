"""The student's path, walked: every notebook as a learner meets it in the student edition.

The instructor edition running clean says nothing about the path a class takes: a notebook
that calls Exercise 4.2 in section 4 but introduces it in section 6 works for the instructor
and stops a student three minutes into training. :func:`walk_student_path` builds the
student edition and, notebook by notebook in course order, runs it (in the smoke mode,
``CI=true``) with exactly the exercises of the earlier notebooks solved, then with its own
exercises solved one at a time (the reference solution put in place, function by function,
as the grader does). It checks what a learner should see:

- with none of the notebook's own exercises solved, the first error is the one-line hint of
  the notebook's *first* exercise, raised at or after that exercise's section heading, and
  no earlier cell fails;
- with its first ``j`` exercises solved, the notebook stops at exercise ``j + 1`` (again at or
  after its heading), or runs clean when ``j`` is all of them;
- fully solved, with every *later* notebook's exercises still stubs, it runs clean: no cell
  depends on an exercise a later notebook sets.

Command line: ``python -m mamlkit.classroom walk`` (``.ci/run`` runs it).
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from .exercises import EXERCISES, Exercise
from .reference import _splice, reference_functions

__all__ = ["NotebookRun", "WalkReport", "run_notebook", "solve_exercises", "walk_student_path"]

_HINT = re.compile(r"Exercise (\d+\.\d+) is not done yet")
_HEADING = re.compile(r"^#+ .*Exercise (\d+\.\d+)\b", re.MULTILINE)


@dataclass
class NotebookRun:
    """What one execution of a notebook showed.

    Attributes:
        notebook: path relative to the edition's root.
        solved: the exercise ids solved in the edition for this run.
        stopped_at: the exercise whose hint the first failing cell showed, or ``None``.
        stop_cell: index of the first cell with an error, or ``None`` when none failed.
        error: the first failing cell's error, one line (``ename: evalue``).
        seconds: wall-clock time of the run.
    """

    notebook: str
    solved: tuple[str, ...]
    stopped_at: str | None
    stop_cell: int | None
    error: str | None
    seconds: float


@dataclass
class WalkReport:
    """Every run of the walk and the problems found (empty when the path is clear)."""

    runs: list[NotebookRun] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def solve_exercises(edition: str | os.PathLike, exercise_ids, reference: str | os.PathLike,
                    exercises: tuple[Exercise, ...] = EXERCISES) -> None:
    """Put the reference solution of each exercise in ``exercise_ids`` into ``edition``, in place.

    Each solution is the whole function that holds the exercise's region in the reference
    (instructor) edition, swapped for the edition's function of the same name.

    Raises:
        ValueError: an edition file cannot be spliced (it does not parse, or lacks the function).
    """
    references = reference_functions(reference, exercises)
    by_path: dict[str, list] = {}
    for exercise_id in exercise_ids:
        for ref in references[exercise_id]:
            by_path.setdefault(ref.path, []).append(ref)
    for path, refs in by_path.items():
        target = Path(edition) / path
        spliced = _splice(target.read_text(encoding="utf-8"), path, refs)
        if spliced is None:
            raise ValueError(f"{path} in {edition} could not take the reference solutions of "
                             f"{sorted({r.exercise_id for r in refs})}")
        target.write_text(spliced, encoding="utf-8")


def _first_error(nb) -> tuple[int | None, str | None, str | None]:
    """``(cell index, exercise id of its hint or None, one-line error)`` of the first error."""
    for index, cell in enumerate(nb.cells):
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                text = f"{output.get('ename')}: {output.get('evalue')}"
                joined = text + "\n" + "\n".join(output.get("traceback", []))
                match = _HINT.search(joined)
                return index, (match[1] if match else None), text.splitlines()[0][:300]
    return None, None, None


def run_notebook(path: str | os.PathLike, *, cwd: str | os.PathLike, env: dict[str, str],
                 timeout: int = 600):
    """Execute a notebook top to bottom as "Restart and Run All" does, errors kept in the outputs.

    The kernel is started with ``env`` as its environment. Returns the executed notebook
    (``nbformat.NotebookNode``).
    """
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        # allow_errors: a stopped cell is what the walk looks for; the hint handler then
        # turns every later cell into a one-line "Skipped" note, as in Jupyter.
        client = NotebookClient(nb, timeout=timeout, kernel_name="python3", allow_errors=True,
                                resources={"metadata": {"path": str(cwd)}})
        client.execute()
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return nb


def _headings(nb) -> dict[str, int]:
    """Exercise id -> index of the markdown cell whose heading introduces it."""
    found: dict[str, int] = {}
    for index, cell in enumerate(nb.cells):
        if cell.cell_type == "markdown":
            for match in _HEADING.finditer(cell.source):
                found.setdefault(match[1], index)
    return found


def walk_student_path(
    src_root: str | os.PathLike,
    *,
    exercises: tuple[Exercise, ...] = EXERCISES,
    notebooks: list[str] | None = None,
    env: dict[str, str] | None = None,
    keep: str | os.PathLike | None = None,
    fail_fast: bool = False,
    log=print,
) -> WalkReport:
    """Walk every notebook of the student edition built from ``src_root`` (see the module doc).

    Args:
        src_root: the instructor edition (the repository).
        exercises: the registry.
        notebooks: the notebooks to walk, relative to the root; by default every notebook in
            ``notebooks/`` in order. The earlier notebooks' exercises are solved either way.
        env: extra environment for the kernels (``CI=true`` is always set).
        keep: a folder to keep the editions in (for a look afterwards); default: temporary.
        fail_fast: stop at the first problem.
        log: called with one line per run.

    A notebook that loads Omniglot is skipped, with the reason logged, when the data cannot be
    had (as the test suite skips it).

    Returns:
        A :class:`WalkReport`; ``report.ok`` when every run showed what it should.
    """
    from .student import build_student_edition

    src_root = Path(src_root).resolve()
    all_notebooks = sorted(p.relative_to(src_root).as_posix() for p in (src_root / "notebooks").glob("*.ipynb"))
    chosen = notebooks or all_notebooks
    unknown = sorted(set(chosen) - set(all_notebooks))
    if unknown:
        raise ValueError(f"no such notebook(s) {unknown}; the course has {all_notebooks}")
    base_env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "MAMLKIT_SMOKE")}
    base_env.update(env or {})
    base_env["CI"] = "true"
    base_env.setdefault("MPLBACKEND", "Agg")
    report = WalkReport()
    work = Path(keep) if keep else Path(tempfile.mkdtemp(prefix="mamlkit-walk-"))
    try:
        pristine = work / "edition"
        if pristine.exists():
            shutil.rmtree(pristine)
        build_student_edition(src_root, pristine, exercises=exercises)
        data_problem = None
        for notebook in all_notebooks:
            if notebook not in chosen:
                continue
            if _loads_omniglot(src_root / notebook):
                data_problem = data_problem or _omniglot_unavailable()
                if data_problem:
                    log(f"- {notebook} skipped: Omniglot cannot be had ({data_problem})")
                    continue
            earlier = tuple(e.id for e in exercises if e.notebook < notebook)
            own = [e for e in exercises if e.notebook == notebook]
            for solved_own in range(len(own) + 1):
                solved = earlier + tuple(e.id for e in own[:solved_own])
                edition = work / f"run-{Path(notebook).stem}-{solved_own}"
                if edition.exists():
                    shutil.rmtree(edition)
                shutil.copytree(pristine, edition, symlinks=True)
                solve_exercises(edition, solved, src_root, exercises)
                start = time.perf_counter()
                nb = run_notebook(edition / notebook, cwd=(edition / notebook).parent, env=base_env)
                cell, stopped_at, error = _first_error(nb)
                run = NotebookRun(notebook, solved, stopped_at, cell, error, time.perf_counter() - start)
                report.runs.append(run)
                expected = own[solved_own].id if solved_own < len(own) else None
                problem = _judge(nb, run, expected)
                log(f"{'✓' if problem is None else '✗'} {notebook} with {len(solved)} exercise(s) solved "
                    f"({', '.join(e.id for e in own[:solved_own]) or 'none of its own'}): "
                    + (f"stops at Exercise {stopped_at} (cell {cell})" if stopped_at else
                       f"error in cell {cell}: {error}" if cell is not None else "runs clean")
                    + f", {run.seconds:.0f} s")
                if keep is None:
                    shutil.rmtree(edition, ignore_errors=True)
                if problem:
                    report.problems.append(problem)
                    log(f"  {problem}")
                    if fail_fast:
                        return report
    finally:
        if keep is None:
            shutil.rmtree(work, ignore_errors=True)
    return report


#: Calls that load Omniglot (as notebooks/conftest.py looks for them).
_LOADS_OMNIGLOT = ("load_omniglot(", "omniglot_task_samplers(", "evaluate_checkpoint(")


def _loads_omniglot(path: Path) -> bool:
    import nbformat

    nb = nbformat.read(path, as_version=4)
    return any(call in cell.source for cell in nb.cells if cell.cell_type == "code" for call in _LOADS_OMNIGLOT)


def _omniglot_unavailable() -> str | None:
    """Why Omniglot cannot be had, or ``None`` when it can."""
    from mamlkit.data.omniglot import find_omniglot
    from mamlkit.errors import DataUnavailableError

    try:
        find_omniglot(progress=False)
    except DataUnavailableError as error:
        return str(error).splitlines()[0]
    return None


def _judge(nb, run: NotebookRun, expected: str | None) -> str | None:
    """The problem this run shows, or ``None`` when it is what a learner should see."""
    solved = ", ".join(run.solved) or "none"
    if expected is None:
        if run.stop_cell is None:
            return None
        if run.stopped_at:
            return (f"{run.notebook}: with its own and every earlier exercise solved ({solved}) it stops "
                    f"at cell {run.stop_cell} for Exercise {run.stopped_at}, which a later notebook sets")
        return f"{run.notebook}: with exercises {solved} solved, cell {run.stop_cell} fails: {run.error}"
    if run.stop_cell is None:
        return (f"{run.notebook}: with exercises {solved} solved it runs clean, but should stop at the "
                f"stub of Exercise {expected} (does it import this edition's mamlkit?)")
    if run.stopped_at != expected:
        what = f"the hint of Exercise {run.stopped_at}" if run.stopped_at else run.error
        return (f"{run.notebook}: with exercises {solved} solved, cell {run.stop_cell} stops with {what}; "
                f"the first stop should be Exercise {expected}")
    heading = _headings(nb).get(expected)
    if heading is None:
        return f"{run.notebook}: no markdown heading names Exercise {expected}"
    if run.stop_cell < heading:
        return (f"{run.notebook}: cell {run.stop_cell} uses Exercise {expected} before its section "
                f"(cell {heading}) introduces it")
    return None
