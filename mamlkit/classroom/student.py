"""Build the student edition of the course: the same repository with the solutions cut out.

It is one module because cutting the solutions out of ``.py`` files and notebooks, the files an
edition holds and the checks of the result against the exercise registry are one build, run and
tested as one step.

The instructor edition puts each solution between a line ``### BEGIN SOLUTION (Exercise 2.1)``
and a line ``### END SOLUTION`` (nbgrader's markers, with the exercise id added), indented like
the code around them. In the student edition, a ``.py`` file gets one line in place of each
region, at the indentation of its BEGIN marker::

    raise NotImplementedError("Exercise 2.1: the inner loop `adapt`; see notebooks/02_inner_loop.ipynb")

The docstring and any argument checks above the region stay, so learners start from a documented
signature. A notebook code cell gets a prompt and the same kind of stub; markdown cells get
"YOUR ANSWER HERE". Every notebook loses its outputs and execution counts. All other files are
copied byte for byte, and the build is deterministic: building twice gives identical files.

Only lines whose text *starts* with the marker count (leading whitespace allowed), so code and
docs that merely mention the markers, like this module, are left alone.

Run it as ``python -m mamlkit.classroom build-student OUT``.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from .exercises import EXERCISES, Exercise
from .questions import notebook_questions

__all__ = [
    "BEGIN_MARKER",
    "END_MARKER",
    "REGISTRY_PATH",
    "BuildError",
    "BuildReport",
    "MarkerError",
    "Region",
    "build_student_edition",
    "find_leaks",
    "list_source_files",
    "strip_hidden_tests",
    "stub_notebook",
    "stub_python",
]

BEGIN_MARKER = "### BEGIN SOLUTION"
END_MARKER = "### END SOLUTION"

#: The registry names the solution-only strings, so the leak check does not search it for them.
REGISTRY_PATH = "mamlkit/classroom/exercises.py"
#: Files of the instructor edition that the student edition does not carry (it gets its own
#: README and workflow instead, see :mod:`.edition_files`).
INSTRUCTOR_ONLY = (".github/", "docs/instructors.md")

# Directories never copied when the source is not a git repository.
_SKIP_DIRS = {
    ".git", ".hg", "__pycache__", ".ipynb_checkpoints", ".pytest_cache", ".mypy_cache",
    ".ruff_cache", ".tox", ".nox", "build", "dist", "venv", "node_modules",
}
_SKIP_SUFFIXES = (".pyc", ".pyo")

# Cell metadata that records when a cell ran; it would make two builds differ.
_VOLATILE_CELL_METADATA = ("execution", "ExecuteTime")
# Saved widget state holds the values widgets displayed: outputs, in effect.
_DROPPED_NOTEBOOK_METADATA = ("widgets",)

_MARKER_LINE = re.compile(r"^(?P<indent>[ \t]*)### (?P<kind>BEGIN|END) SOLUTION(?P<rest>.*?)\s*$")
_EXERCISE_SUFFIX = re.compile(r"^\s*\(Exercise\s+(?P<id>[^)\s]+)\)$")
_HEADING = re.compile(r"^(?P<hashes>#{1,6})\s+(?P<text>.*)$")
_HEADING_EXERCISE = re.compile(r"\bExercise\s+(?P<id>\d+\.\d+)\b")


class MarkerError(ValueError):
    """A solution marker that cannot be processed; the message starts with ``file:line``."""

    def __init__(self, location: str, message: str) -> None:
        super().__init__(f"{location}: {message}")
        self.location = location


class BuildError(RuntimeError):
    """The student edition could not be built; ``errors`` lists every problem found."""

    def __init__(self, errors: list[str]) -> None:
        self.errors = list(errors)
        lines = "\n".join(f"  {e}" for e in self.errors)
        super().__init__(f"the student edition was not built ({len(self.errors)} problem(s)):\n{lines}")


@dataclass(frozen=True)
class Region:
    """One solution region that was replaced by a stub.

    Attributes:
        exercise_id: the exercise it belongs to, e.g. ``"2.1"``.
        path: the file, relative to the repository root, in POSIX form.
        line: the line of the BEGIN marker (within the cell, for notebooks).
        cell: for notebooks, the 1-based index of the cell; ``None`` for other files.
    """

    exercise_id: str
    path: str
    line: int
    cell: int | None = None

    def where(self) -> str:
        return f"{self.path}:{self.line}" if self.cell is None else f"{self.path} cell {self.cell}"


@dataclass
class BuildReport:
    """What :func:`build_student_edition` did."""

    out_dir: Path
    files: list[str] = field(default_factory=list)
    regions: list[Region] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    hidden_tests: list[str] = field(default_factory=list)

    def summary(self, exercises: tuple[Exercise, ...] = EXERCISES) -> str:
        """A few lines for the terminal: files written and, per exercise, where its stubs are."""
        lines = [
            f"Student edition written to {self.out_dir}: {len(self.files)} files, "
            f"{len(self.regions)} solution region(s) replaced by stubs."
        ]
        for exercise in exercises:
            places = [r.where() for r in self.regions if r.exercise_id == exercise.id]
            lines.append(f"  {exercise.label:<13} {', '.join(places) if places else '-'}")
        if self.hidden_tests:
            lines.append(f"  {len(self.hidden_tests)} hidden test(s) left out; the grader runs them.")
        lines += [f"warning: {w}" for w in self.warnings]
        return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# Stubbing one piece of text


def _parse_marker(line: str, location: str) -> tuple[str, str, str | None] | None:
    """``(kind, indent, exercise id or None)`` if ``line`` is a marker line, else ``None``."""
    stripped = line.lstrip(" \t")
    if not (stripped.startswith(BEGIN_MARKER) or stripped.startswith(END_MARKER)):
        return None
    match = _MARKER_LINE.match(line.rstrip("\r\n"))
    assert match is not None  # the line starts with a marker, so the pattern matches
    if not match["rest"]:
        return match["kind"], match["indent"], None
    suffix = _EXERCISE_SUFFIX.match(match["rest"])
    if suffix is None:
        raise MarkerError(
            location,
            f"malformed solution marker {line.strip()!r}; write "
            f"'{BEGIN_MARKER} (Exercise 2.1)' and '{END_MARKER}' on lines of their own",
        )
    return match["kind"], match["indent"], suffix["id"]


def _newline_of(line: str) -> str:
    if line.endswith("\r\n"):
        return "\r\n"
    return "\n" if line.endswith("\n") else ""


def _replace_regions(
    text: str,
    *,
    location: Callable[[int], str],
    exercises: tuple[Exercise, ...],
    make_stub: Callable[[Exercise, str], list[str]],
    default_id: str | None = None,
    id_hint: str = "",
) -> tuple[str, list[tuple[str, int]]]:
    """Replace every marked region of ``text`` by ``make_stub(exercise, indent)``.

    Args:
        text: the source (a file, or one notebook cell).
        location: maps a 1-based line number to ``"file:line"`` for error messages.
        exercises: the registry that marker ids are looked up in.
        make_stub: the replacement lines, without line endings, for an exercise and indent.
        default_id: the exercise of markers that carry no id (``None``: such markers are errors).
        id_hint: appended to the error for a marker without an id.

    Returns:
        The new text and, per region, ``(exercise id, line of its BEGIN marker)``.
    """
    by_id = {e.id: e for e in exercises}
    lines = text.splitlines(keepends=True)
    out: list[str] = []
    regions: list[tuple[str, int]] = []
    open_region: tuple[Exercise, int, str] | None = None  # exercise, BEGIN line, indent

    for number, line in enumerate(lines, start=1):
        marker = _parse_marker(line, location(number))
        if marker is None:
            if open_region is None:
                out.append(line)
            continue
        kind, indent, exercise_id = marker
        if kind == "BEGIN":
            if open_region is not None:
                raise MarkerError(
                    location(number),
                    f"BEGIN SOLUTION inside the region opened at line {open_region[1]}; "
                    "close it with END SOLUTION first (regions cannot nest)",
                )
            exercise_id = exercise_id or default_id
            if exercise_id is None:
                raise MarkerError(
                    location(number),
                    f"BEGIN SOLUTION does not say which exercise it solves; write "
                    f"'{BEGIN_MARKER} (Exercise 2.1)'{id_hint}",
                )
            if exercise_id not in by_id:
                raise MarkerError(
                    location(number),
                    f"unknown Exercise {exercise_id}; the registry ({REGISTRY_PATH}) lists "
                    + ", ".join(by_id),
                )
            open_region = (by_id[exercise_id], number, indent)
        else:
            if open_region is None:
                raise MarkerError(location(number), "END SOLUTION without a BEGIN SOLUTION before it")
            exercise, begin_line, begin_indent = open_region
            if exercise_id is not None and exercise_id != exercise.id:
                raise MarkerError(
                    location(number),
                    f"END SOLUTION (Exercise {exercise_id}) closes the region of "
                    f"Exercise {exercise.id} opened at line {begin_line}",
                )
            stub = make_stub(exercise, begin_indent)
            # Each stub line ends like the BEGIN line; the last like the END line, so a
            # region at the very end of a cell leaves no trailing newline behind.
            newline = _newline_of(lines[begin_line - 1])
            out += [s + newline for s in stub[:-1]] + [stub[-1] + _newline_of(line)]
            regions.append((exercise.id, begin_line))
            open_region = None

    if open_region is not None:
        exercise, begin_line, _ = open_region
        raise MarkerError(
            location(begin_line),
            f"BEGIN SOLUTION (Exercise {exercise.id}) has no matching END SOLUTION",
        )
    return "".join(out), regions


def _python_string(text: str) -> str:
    # A JSON string is also a valid Python string literal.
    return json.dumps(text, ensure_ascii=False)


def stub_python(
    source: str, path: str = "<source>", exercises: tuple[Exercise, ...] = EXERCISES
) -> tuple[str, list[Region]]:
    """The student version of a ``.py`` file's text, and the regions that were stubbed.

    Raises:
        MarkerError: a marker is malformed, unbalanced, nested, lacks an exercise id, names an
            unknown exercise, or the stubbed file is no longer valid Python.
    """

    def make_stub(exercise: Exercise, indent: str) -> list[str]:
        return [f"{indent}raise NotImplementedError({_python_string(exercise.stub_message())})"]

    text, found = _replace_regions(
        source, location=lambda n: f"{path}:{n}", exercises=exercises, make_stub=make_stub
    )
    if found:
        try:
            compile(text, path, "exec", dont_inherit=True)
        except SyntaxError as err:
            raise MarkerError(
                f"{path}:{err.lineno}",
                f"after stubbing, the file is not valid Python ({err.msg}); a solution region "
                "must cover whole statements",
            ) from None
    return text, [Region(exercise_id, path, line) for exercise_id, line in found]


def _cell_source(cell: dict) -> str:
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else source


def _heading_exercises(markdown: str) -> Iterator[tuple[int, str | None]]:
    """``(level, exercise id or None)`` for each markdown heading line."""
    for line in markdown.splitlines():
        heading = _HEADING.match(line)
        if heading:
            named = _HEADING_EXERCISE.search(heading["text"])
            yield len(heading["hashes"]), named["id"] if named else None


def stub_notebook(
    nb: dict, path: str = "<notebook>", exercises: tuple[Exercise, ...] = EXERCISES
) -> tuple[dict, list[Region], set[str]]:
    """Stub the solution regions of a notebook (a parsed ``.ipynb``) and clear its outputs.

    A marker without an exercise id takes the exercise named by the nearest enclosing markdown
    heading (``## Exercise 2.1 · ...``); writing the id on the marker is clearer.

    Returns:
        The new notebook (``nb`` is modified in place), the stubbed regions, and the ids of the
        exercises that the notebook's headings name.
    """

    def code_stub(exercise: Exercise, indent: str) -> list[str]:
        message = _python_string(exercise.stub_message(in_notebook=True))
        return [
            f"{indent}# YOUR CODE HERE ({exercise.label})",
            f"{indent}raise NotImplementedError({message})",
        ]

    def markdown_stub(exercise: Exercise, indent: str) -> list[str]:
        return [f"{indent}YOUR ANSWER HERE ({exercise.label})"]

    regions: list[Region] = []
    named: set[str] = set()
    headings: list[tuple[int, str | None]] = []  # the enclosing headings, outermost first
    for index, cell in enumerate(nb.get("cells", []), start=1):
        kind = cell.get("cell_type")
        source = _cell_source(cell)
        enclosing = next((i for _, i in reversed(headings) if i is not None), None)
        new_source, found = _replace_regions(
            source,
            location=lambda n, index=index: f"{path} cell {index}, line {n}",
            exercises=exercises,
            make_stub=code_stub if kind == "code" else markdown_stub,
            default_id=enclosing,
            id_hint=" or put the cell under a heading that names the exercise",
        )
        cell["source"] = new_source.splitlines(keepends=True)
        regions += [Region(exercise_id, path, line, cell=index) for exercise_id, line in found]
        if kind == "markdown":
            for level, exercise_id in _heading_exercises(new_source):
                while headings and headings[-1][0] >= level:
                    headings.pop()
                headings.append((level, exercise_id))
                if exercise_id is not None:
                    named.add(exercise_id)
        if kind == "code":
            cell["outputs"] = []
            cell["execution_count"] = None
        metadata = cell.get("metadata", {})
        for key in _VOLATILE_CELL_METADATA:
            metadata.pop(key, None)
    for key in _DROPPED_NOTEBOOK_METADATA:
        nb.get("metadata", {}).pop(key, None)
    return nb, regions, named


def _dump_notebook(nb: dict) -> str:
    # The layout Jupyter itself writes, so diffs against a saved notebook stay small.
    return json.dumps(nb, indent=1, sort_keys=True, ensure_ascii=False) + "\n"


_HIDDEN_LINE = re.compile(r"^\s*(@pytest\.mark\.hidden\b|pytestmark\b.*pytest\.mark\.hidden\b)")
_HIDDEN_DECORATOR = re.compile(r"^pytest\.mark\.hidden\b")


def strip_hidden_tests(source: str, path: str = "<tests>") -> tuple[str | None, list[str]]:
    """The student version of a test file: the tests marked hidden left out.

    A test function or class is hidden when one of its decorators is the ``hidden`` marker of
    pytest; a whole file is hidden when its module-level ``pytestmark`` includes that marker.

    Returns:
        The new text (``None`` when the whole file is hidden, ``source`` itself when nothing
        is), and the names of the hidden tests.
    """
    if "mark.hidden" not in source:
        return source, []
    try:
        tree = ast.parse(source, path)
    except SyntaxError as err:
        raise MarkerError(f"{path}:{err.lineno}", f"cannot look for hidden tests: {err.msg}") from None
    spans, names = [], []
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "pytestmark" for t in node.targets):
            if "pytest.mark.hidden" in ast.unparse(node.value):
                return None, [path]
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            if any(_HIDDEN_DECORATOR.match(ast.unparse(d)) for d in node.decorator_list):
                first = min(d.lineno for d in node.decorator_list)
                spans.append((first, node.end_lineno))
                names.append(f"{path}::{node.name}")
    lines = source.splitlines(keepends=True)
    for first, last in sorted(spans, reverse=True):
        del lines[first - 1 : last]
    return "".join(lines), names


# --------------------------------------------------------------------------------------------
# Building the whole tree


def _git_files(root: Path) -> list[str]:
    try:
        result = subprocess.run(
            ["git", "-C", str(root), "ls-files", "-z", "--cached"],
            capture_output=True,
            check=False,
        )
    except FileNotFoundError:
        raise BuildError([f"{root} is a git repository, but the git command is not installed"]) from None
    if result.returncode != 0:
        message = result.stderr.decode(errors="replace").strip()
        raise BuildError([f"git ls-files failed in {root}: {message}"])
    names = [n.decode("utf-8", errors="surrogateescape") for n in result.stdout.split(b"\0") if n]
    # A tracked file deleted from the working tree, or a submodule, is not a file to copy.
    return [n for n in names if (root / n).is_file()]


def _walk_files(root: Path, exclude: Path | None = None, *, everything: bool = False) -> list[str]:
    """Files under ``root``, relative and unsorted; ``everything`` skips only ``.git``."""

    def keep_dir(here: Path, name: str) -> bool:
        if name == ".git":
            return False
        if exclude is not None and (here / name).resolve() == exclude:
            return False
        return everything or not (
            name in _SKIP_DIRS or name.endswith(".egg-info") or name.startswith(".venv")
        )

    files = []
    for directory, dirnames, filenames in os.walk(root):
        here = Path(directory)
        dirnames[:] = [d for d in dirnames if keep_dir(here, d)]
        files += [
            (here / f).relative_to(root).as_posix()
            for f in filenames
            if everything or not f.endswith(_SKIP_SUFFIXES)
        ]
    return files


def list_source_files(src_root: str | os.PathLike, exclude: str | os.PathLike | None = None) -> list[str]:
    """The files of the instructor edition, relative to ``src_root`` and sorted.

    In a git repository these are the tracked files (``git ls-files``): a file that is not
    committed, or is ignored, is not handed out. Elsewhere the tree is walked, skipping
    ``.git``, caches, virtual environments, build folders and the directory ``exclude``.
    """
    root = Path(src_root)
    if (root / ".git").exists():
        files = _git_files(root)
    else:
        files = _walk_files(root, Path(exclude).resolve() if exclude is not None else None)
    return sorted(files)


def _prepare_out_dir(src_root: Path, out_dir: Path, force: bool) -> None:
    src, out = src_root.resolve(), out_dir.resolve()
    if out == src or out in src.parents:
        raise BuildError([f"the output directory {out_dir} would contain the source {src_root}"])
    if not out_dir.exists():
        return
    # A .git folder is kept: the edition may be a repository that students clone.
    entries = sorted(p for p in out_dir.iterdir() if p.name != ".git")
    if entries and not force:
        raise BuildError(
            [f"{out_dir} already exists and is not empty; pass force=True (--force) to replace its contents"]
        )
    for entry in entries:
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def _check_against_registry(
    report: BuildReport, files: list[str], named: dict[str, set[str]], exercises: tuple[Exercise, ...]
) -> None:
    for exercise in exercises:
        regions = [r for r in report.regions if r.exercise_id == exercise.id]
        if not regions:
            report.warnings.append(f"{exercise.label} has no solution region, so it has no stub")
        expected = {exercise.notebook} | ({exercise.module} if exercise.module else set())
        for region in regions:
            if region.path not in expected:
                report.warnings.append(
                    f"{exercise.label} has a solution region in {region.path}, but the registry "
                    f"names {' and '.join(sorted(expected))}"
                )
        if exercise.notebook in files and exercise.id not in named.get(exercise.notebook, set()):
            report.warnings.append(f"{exercise.notebook} has no heading that names {exercise.label}")
    missing: dict[str, list[str]] = {}
    for exercise in exercises:
        if exercise.notebook not in files:
            missing.setdefault(exercise.notebook, []).append(exercise.id)
    for notebook, ids in missing.items():
        report.warnings.append(f"{notebook} (Exercise {', '.join(ids)}) is not in the repository")


def build_student_edition(
    src_root: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    exercises: tuple[Exercise, ...] = EXERCISES,
    force: bool = False,
) -> BuildReport:
    """Write the student edition of the repository at ``src_root`` into ``out_dir``.

    ``.py`` files have their solution regions replaced by ``raise NotImplementedError(...)``;
    notebooks have theirs replaced by a "YOUR CODE HERE" prompt and a stub, and lose all outputs;
    everything else is copied unchanged. Every file is checked before anything is written, so a
    marker error leaves no half-built edition behind.

    Args:
        src_root: the instructor edition (a git repository: its tracked files are used).
        out_dir: where to write; must be empty (apart from a ``.git`` folder) or absent unless
            ``force`` is set.
        exercises: the registry that the exercise ids on the markers refer to.
        force: first delete everything in ``out_dir`` except its ``.git`` folder, so a
            student repository can be rebuilt in place and the changes committed.

    Returns:
        A :class:`BuildReport` with the files written, the stubbed regions and warnings about
        exercises whose regions or notebook headings disagree with the registry.

    Raises:
        BuildError: listing every marker problem, as ``file:line: what is wrong``.
    """
    src_root, out_dir = Path(src_root), Path(out_dir)
    files = list_source_files(src_root, exclude=out_dir)
    report = BuildReport(out_dir=out_dir, files=files)
    errors: list[str] = []
    contents: dict[str, bytes] = {}  # transformed files; the rest are copied
    named: dict[str, set[str]] = {}
    questions: list = []  # the notebooks' questions for written analysis, in file order
    # The maintainers' workflows would run the instructor's checks on the stubs.
    dropped: set[str] = {rel for rel in files if rel.startswith(INSTRUCTOR_ONLY)}

    for rel in files:
        suffix = Path(rel).suffix
        if suffix not in (".py", ".ipynb"):
            continue
        raw = (src_root / rel).read_bytes()
        try:
            text = raw.decode("utf-8")
            if suffix == ".py":
                new_text, regions = stub_python(text, rel, exercises)
                visible, hidden = strip_hidden_tests(new_text, rel)
                report.hidden_tests += hidden
                if visible is None:
                    dropped.add(rel)
                elif regions or hidden:
                    contents[rel] = visible.encode("utf-8")
            else:
                parsed = json.loads(text)
                if rel.startswith("notebooks/"):
                    try:
                        questions += notebook_questions(parsed, rel)  # the README lists them
                    except ValueError as err:  # a heading without a list, or items numbered out of order
                        errors.append(str(err))
                nb, regions, named[rel] = stub_notebook(parsed, rel, exercises)
                contents[rel] = _dump_notebook(nb).encode("utf-8")
        except UnicodeDecodeError:
            errors.append(f"{rel}: not valid UTF-8, so its solution markers cannot be read")
            continue
        except json.JSONDecodeError as err:
            errors.append(f"{rel}:{err.lineno}: not a valid notebook ({err.msg})")
            continue
        except MarkerError as err:
            errors.append(str(err))
            continue
        report.regions += regions

    if errors:
        raise BuildError(errors)
    from .edition_files import generated_files  # the student README and the Classroom workflow

    generated = generated_files(exercises, sorted(questions, key=lambda q: (q.notebook, q.number)))
    _prepare_out_dir(src_root, out_dir, force)
    for rel in files:
        if rel in dropped or rel in generated:
            continue
        source, target = src_root / rel, out_dir / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if rel in contents:
            target.write_bytes(contents[rel])
        else:
            shutil.copyfile(source, target)
        shutil.copymode(source, target)
    for rel, text in generated.items():
        (out_dir / rel).parent.mkdir(parents=True, exist_ok=True)
        (out_dir / rel).write_text(text, encoding="utf-8")
    _check_against_registry(report, files, named, exercises)
    report.files = sorted((set(files) - dropped) | set(generated))
    return report


# --------------------------------------------------------------------------------------------
# Leak check


def _read_text(path: Path) -> str | None:
    try:
        return path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        return None  # a binary file: images, checkpoints


def _source_lines(rel: str, text: str) -> Iterator[tuple[str, str]]:
    """``(location, line)`` for each line of a text file, or of each cell of a notebook."""
    nb = None
    if rel.endswith(".ipynb"):
        try:
            nb = json.loads(text)
        except json.JSONDecodeError:
            pass  # searched as plain text below
    if isinstance(nb, dict):
        for index, cell in enumerate(nb.get("cells", []), start=1):
            for number, line in enumerate(_cell_source(cell).splitlines(), start=1):
                yield f"{rel} cell {index}, line {number}", line
    else:
        for number, line in enumerate(text.splitlines(), start=1):
            yield f"{rel}:{number}", line


def _cells_with_outputs(rel: str, text: str) -> list[int]:
    try:
        nb = json.loads(text)
    except json.JSONDecodeError:
        return []
    return [
        index
        for index, cell in enumerate(nb.get("cells", []), start=1)
        if cell.get("outputs") or cell.get("execution_count") is not None
    ]


def find_leaks(
    out_dir: str | os.PathLike,
    exercises: tuple[Exercise, ...] = EXERCISES,
    *,
    exempt: tuple[str, ...] = (REGISTRY_PATH,),
) -> list[str]:
    """Search a built student edition for anything that gives a solution away.

    Reports, as ``location: problem``:

    - a line that is still a solution marker (the build would have replaced it);
    - a notebook cell that still has outputs or an execution count;
    - any of an exercise's ``solution_only`` strings, anywhere except in the files ``exempt``
      (by default the registry, which is where those strings are declared).

    Returns:
        The problems found; an empty list means the edition is clean.
    """
    root = Path(out_dir)
    leaks: list[str] = []
    names = [(name, e) for e in exercises for name in e.solution_only]
    for rel in sorted(_walk_files(root, everything=True)):
        text = _read_text(root / rel)
        if text is None:
            continue
        if rel.endswith(".ipynb"):
            leaks += [
                f"{rel} cell {index}: outputs or an execution count left in the student edition"
                for index in _cells_with_outputs(rel, text)
            ]
        for location, line in _source_lines(rel, text):
            if line.lstrip(" \t").startswith((BEGIN_MARKER, END_MARKER)):
                leaks.append(f"{location}: solution marker left in the student edition")
            if rel.endswith(".py") and _HIDDEN_LINE.match(line):
                leaks.append(f"{location}: a hidden test left in the student edition")
            if rel not in exempt:
                leaks += [
                    f"{location}: {name!r}, which only the solution of {exercise.label} uses"
                    for name, exercise in names
                    if name in line
                ]
    return leaks
