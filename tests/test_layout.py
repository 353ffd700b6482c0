"""The package's folders are its layers: imports run downward only, and old paths still work.

Layers, lowest first: the maths at the top of ``mamlkit/`` (functional, tasks, losses, inner and
outer loop, the shared meta-update, the fast path, evaluation), then ``models/``, ``data/``,
``methods/``, ``run/``, ``lessons/`` and ``classroom/``. A module may import from its own layer
and the layers below it.
"""

import ast
import importlib
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from mamlkit._moved import MOVED

PACKAGE = Path(__file__).resolve().parents[1] / "mamlkit"
LAYERS = ["", "models", "data", "methods", "run", "lessons", "classroom"]
ENTRY_POINTS = {"mamlkit.__main__"}  # `python -m mamlkit` sits above every layer
MAX_LINES = 400


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer_of(module: str) -> int:
    """The layer index of ``mamlkit.<folder>.<...>``; a top-level module is layer 0."""
    parts = module.split(".")
    folder = parts[1] if len(parts) > 2 or (len(parts) == 2 and parts[1] in LAYERS) else ""
    return LAYERS.index(folder)


def imported_modules(path: Path) -> set[str]:
    """Every ``mamlkit`` module ``path`` imports, at the top or inside a function."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names if alias.name.startswith("mamlkit")}
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this module's package
                base = module_name(path).split(".")
                base = base[: len(base) - node.level + (path.name == "__init__.py")]
                names.add(".".join(base + ([node.module] if node.module else [])))
            elif node.module == "mamlkit":  # from mamlkit import train: the module mamlkit.train
                names |= {f"mamlkit.{alias.name}" for alias in node.names if alias.name != "__version__"}
            elif node.module and node.module.startswith("mamlkit"):
                names.add(node.module)
    return names


MODULES = sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def test_the_layer_check_sees_an_upward_import(tmp_path):
    assert [layer_of(m) for m in ("mamlkit.inner_loop", "mamlkit.models", "mamlkit.models.conv4",
                                  "mamlkit.run.train", "mamlkit.classroom.grade")] == [0, 1, 1, 4, 6]
    source = tmp_path / "example.py"
    source.write_text("from mamlkit import train\ndef f():\n    from mamlkit.run.cli import main\n")
    assert imported_modules(source) == {"mamlkit.train", "mamlkit.run.cli"}


def test_the_layer_names_are_the_folders():
    folders = sorted(p.name for p in PACKAGE.iterdir() if p.is_dir() and p.name != "__pycache__")
    assert folders == sorted(LAYERS[1:])


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_import_runs_upward_between_layers(path):
    me = module_name(path)
    if me in ENTRY_POINTS:
        return
    upward = [name for name in imported_modules(path)
              if name != "mamlkit" and name not in MOVED and layer_of(name) > layer_of(me)]
    assert not upward, f"{me} (layer {LAYERS[layer_of(me)] or 'the maths'}) imports from a layer above it: {upward}"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_a_long_module_says_why_it_is_one_module(path):
    lines = len(path.read_text().splitlines())
    docstring = ast.get_docstring(ast.parse(path.read_text())) or ""
    assert lines <= MAX_LINES or "is one module because" in docstring, (
        f"{path.relative_to(PACKAGE.parent)} has {lines} lines (over {MAX_LINES}): split it, or say in "
        f"its docstring why it is one module ('... is one module because ...')")


def test_nothing_imports_an_old_path():
    old = {f"mamlkit.{name}" for name in MOVED}
    users = {module_name(p): sorted(imported_modules(p) & old) for p in MODULES}
    assert not {k: v for k, v in users.items() if v}


def test_the_notebooks_and_docs_name_the_new_paths():
    import re

    repo = PACKAGE.parent
    pages = [*sorted((repo / "notebooks").glob("*.ipynb")), repo / "README.md", *sorted((repo / "docs").glob("*.md"))]
    old = re.compile(r"\bmamlkit[./](" + "|".join(MOVED) + r")\b")
    named = {p.name: sorted(set(old.findall(p.read_text(encoding="utf-8")))) for p in pages if p.exists()}
    assert not {k: v for k, v in named.items() if v}


@pytest.mark.parametrize("old", sorted(MOVED))
def test_an_old_import_path_gives_the_moved_module_with_a_deprecation_warning(old):
    sys.modules.pop(f"mamlkit.{old}", None)
    with pytest.warns(DeprecationWarning, match=rf"mamlkit\.{old} moved to mamlkit\.{MOVED[old]}"):
        module = importlib.import_module(f"mamlkit.{old}")
    assert module is importlib.import_module(f"mamlkit.{MOVED[old]}")
    assert module.__spec__.name == f"mamlkit.{MOVED[old]}"  # its own spec, not the alias's


def test_an_old_module_command_still_runs():
    done = subprocess.run([sys.executable, "-W", "ignore", "-m", "mamlkit.sine_experiment", "--help"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "usage" in done.stdout


def test_an_old_name_used_in_an_import_from_statement():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from mamlkit.run.config import TrainConfig as moved
        from mamlkit.train import TrainConfig  # noqa: F401  (the form learners' code uses)
    assert TrainConfig is moved
