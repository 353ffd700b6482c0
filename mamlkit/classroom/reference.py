"""Reference solutions for grading each exercise on its own.

A learner who solved Exercise 4.2 but not 3.2 should earn 4.2's points, even though some of
4.2's tests run through 3.2's code. So when the grader runs the tests of one exercise, every
*other* exercise runs the instructor's solution: the grader takes each solution from the
instructor edition, as the whole function that holds its region, and puts it in place of the
learner's function of the same name in a copy of the submission (a "composite"). The learner's
own code counts only for the exercise being graded.

Solutions are swapped function by function, so two rules hold for every solution region
(``check_isolation`` checks them, and ``tests/test_student_edition.py`` checks the course):

- it lies inside a function or method (the unit that is swapped);
- one function holds regions of one exercise only.

The student edition carries none of this: the grader reads the solutions from the instructor's
files (or from the copy an autograder zip carries).
"""

from __future__ import annotations

import ast
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from .exercises import EXERCISES, Exercise
from .student import _SKIP_DIRS, _parse_marker

__all__ = ["IsolationError", "ReferenceFunction", "build_composite", "check_isolation", "reference_functions"]


class IsolationError(ValueError):
    """A solution region that cannot be swapped on its own (outside a function, or shared)."""


@dataclass(frozen=True)
class ReferenceFunction:
    """The instructor's version of one function that holds an exercise's solution.

    Attributes:
        exercise_id: the exercise whose region(s) the function holds.
        path: the module, relative to the repository root (POSIX form).
        qualname: ``"adapt"`` or ``"OmniglotTaskSampler.sample_with_info"``.
        source: the function's lines, decorators included, without the solution markers.
    """

    exercise_id: str
    path: str
    qualname: str
    source: str


def _functions(tree: ast.Module) -> list[tuple[str, ast.AST]]:
    """``(qualname, node)`` for every function and method, outermost first."""
    found: list[tuple[str, ast.AST]] = []

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                name = f"{prefix}{child.name}"
                found.append((name, child))
                visit(child, f"{name}.<locals>.")
            elif isinstance(child, ast.ClassDef):
                visit(child, f"{prefix}{child.name}.")
            else:
                visit(child, prefix)

    visit(tree, "")
    return found


def _span(node: ast.AST) -> tuple[int, int]:
    """First and last line (1-based) of a definition, decorators included."""
    first = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
    return first, node.end_lineno


def _outermost_function_at(functions: list[tuple[str, ast.AST]], line: int) -> tuple[str, ast.AST] | None:
    for name, node in functions:  # outermost first, so a nested function maps to its parent
        first, last = _span(node)
        if first <= line <= last:
            return name, node
    return None


def reference_functions(
    src_root: str | os.PathLike, exercises: tuple[Exercise, ...] = EXERCISES
) -> dict[str, list[ReferenceFunction]]:
    """The instructor's functions that hold each exercise's solution regions.

    Only the exercises' ``module`` files are read; an exercise solved in a notebook has none.

    Returns:
        ``{exercise id: [ReferenceFunction, ...]}``, one entry per exercise.

    Raises:
        IsolationError: a region outside any function, or a function holding regions of two
            exercises; the message names the file and line.
        FileNotFoundError: a module the registry names is missing from ``src_root``.
    """
    root = Path(src_root)
    by_id = {e.id: [] for e in exercises}
    for module in sorted({e.module for e in exercises if e.module}):
        text = (root / module).read_text(encoding="utf-8")
        lines = text.splitlines(keepends=True)
        functions = _functions(ast.parse(text, module))
        owner: dict[str, tuple[str, ast.AST]] = {}  # qualname -> (exercise id, node)
        for number, line in enumerate(lines, start=1):
            marker = _parse_marker(line, f"{module}:{number}")
            if marker is None or marker[0] != "BEGIN" or marker[2] not in by_id:
                continue
            exercise_id = marker[2]
            found = _outermost_function_at(functions, number)
            if found is None:
                raise IsolationError(
                    f"{module}:{number}: the solution of Exercise {exercise_id} is not inside a "
                    "function, so the grader cannot swap it for the reference on its own"
                )
            name, node = found
            if name in owner and owner[name][0] != exercise_id:
                raise IsolationError(
                    f"{module}:{number}: {name} holds solutions of Exercises {owner[name][0]} and "
                    f"{exercise_id}; put each exercise in a function of its own so that each can be "
                    "graded on its own"
                )
            owner[name] = (exercise_id, node)
        for name, (exercise_id, node) in owner.items():
            first, last = _span(node)
            body = [
                line for number, line in enumerate(lines[first - 1 : last], start=first)
                if _parse_marker(line, f"{module}:{number}") is None
            ]
            by_id[exercise_id].append(ReferenceFunction(exercise_id, module, name, "".join(body)))
    return by_id


def check_isolation(src_root: str | os.PathLike, exercises: tuple[Exercise, ...] = EXERCISES) -> list[str]:
    """Problems that stop exercises from being graded on their own; empty when all is well."""
    try:
        found = reference_functions(src_root, exercises)
    except (IsolationError, FileNotFoundError, SyntaxError) as err:
        return [str(err)]
    return [
        f"{e.label} names {e.module}, but no function there holds its solution"
        for e in exercises
        if e.module and not found[e.id]
    ]


def _splice(text: str, path: str, replacements: list[ReferenceFunction]) -> str | None:
    """``text`` with each function in ``replacements`` swapped for the reference version.

    Returns ``None`` when that cannot be done: the file does not parse, or lacks one of the
    functions (the learner renamed or deleted it).
    """
    try:
        tree = ast.parse(text, path)
    except SyntaxError:
        return None
    functions = dict(_functions(tree))  # a later definition of the same name wins, as at runtime
    spans = []
    for ref in replacements:
        if ref.qualname not in functions:
            return None
        spans.append((_span(functions[ref.qualname]), ref.source))
    lines = text.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    for (first, last), source in sorted(spans, reverse=True):  # bottom up: line numbers stay valid
        lines[first - 1 : last] = [source]
    return "".join(lines)


@dataclass
class Composite:
    """The files that differ from the submission when grading one exercise."""

    exercise_id: str
    files: dict[str, str]  # path -> text
    notes: list[str]

    def key(self) -> str:
        """Equal for two composites of one submission that would run identical code."""
        digest = hashlib.sha256()
        for path in sorted(self.files):
            digest.update(path.encode() + b"\0" + self.files[path].encode() + b"\0")
        return digest.hexdigest()


def plan_composite(
    submission: str | os.PathLike,
    exercise: Exercise,
    references: dict[str, list[ReferenceFunction]],
    reference_root: str | os.PathLike,
) -> Composite:
    """Which of the submission's files change, and how, to grade ``exercise`` on its own.

    Every other exercise's functions become the reference's. A module that cannot be spliced
    (it does not parse, or a function is missing) is replaced by the reference module as a
    whole, unless it also holds ``exercise``'s own code, which then stays as submitted.
    """
    submission, reference_root = Path(submission), Path(reference_root)
    own = {ref.path for ref in references.get(exercise.id, [])}
    by_path: dict[str, list[ReferenceFunction]] = {}
    for exercise_id, refs in references.items():
        if exercise_id != exercise.id:
            for ref in refs:
                by_path.setdefault(ref.path, []).append(ref)
    files: dict[str, str] = {}
    notes: list[str] = []
    for path, refs in sorted(by_path.items()):
        target = submission / path
        text = target.read_text(encoding="utf-8") if target.is_file() else None
        spliced = _splice(text, path, refs) if text is not None else None
        if spliced is not None:
            files[path] = spliced
        elif path not in own:
            files[path] = (reference_root / path).read_text(encoding="utf-8")
            notes.append(f"{path} could not be read function by function, so the reference file was used")
        else:
            notes.append(f"{path} could not be read function by function; graded as submitted")
    return Composite(exercise.id, files, notes)


def build_composite(submission: str | os.PathLike, composite: Composite, out_dir: str | os.PathLike) -> Path:
    """Write ``out_dir``: the submission's files as symbolic links, the composite's as copies.

    Links keep this cheap for a repository with data or checkpoints in it; caches, virtual
    environments and ``.git`` are left out.
    """
    submission, out = Path(submission).resolve(), Path(out_dir)
    for directory, dirnames, filenames in os.walk(submission):
        here = Path(directory)
        dirnames[:] = [
            d for d in dirnames
            if d not in _SKIP_DIRS and not d.startswith(".venv") and not d.endswith(".egg-info")
        ]
        rel_dir = here.relative_to(submission)
        (out / rel_dir).mkdir(parents=True, exist_ok=True)
        for name in filenames:
            rel = (rel_dir / name).as_posix()
            if name.endswith((".pyc", ".pyo")) or rel in composite.files:
                continue
            (out / rel).symlink_to(here / name)
    for rel, text in composite.files.items():
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        (out / rel).write_text(text, encoding="utf-8")
    return out
