"""Helpers for the course notebooks: the smoke switch, showing library source, stripping outputs.

Used in every notebook under ``notebooks/``:

* ``SMOKE_TEST`` is true under CI (or when ``MAMLKIT_SMOKE`` is set), and notebooks use it to
  shrink their loops: ``num_meta_iters = 20 if SMOKE_TEST else 20_000``.
* ``show_source(fn)`` prints the tested code of a ``mamlkit`` function inside the notebook, so
  the notebook never carries a copy that could drift from the library.
* ``show_mamlkit_origin()`` says which ``mamlkit`` the kernel imported, and warns when it is not
  the one of the notebook's own repository (a student edition next to an installed instructor
  copy, say), where edits to ``mamlkit/*.py`` would have no effect.
* ``strip_notebook(path)`` removes outputs before a notebook is committed::

      python -m mamlkit.lessons.notebook strip notebooks/*.ipynb
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import re
from collections.abc import Mapping
from pathlib import Path

__all__ = ["SMOKE_TEST", "main", "mamlkit_origin", "show_mamlkit_origin", "show_source", "smoke_test_from_env", "strip_notebook"]

# Values of CI / MAMLKIT_SMOKE that mean "off" (compared case-insensitively).
_FALSE_VALUES = {"", "0", "false"}


def smoke_test_from_env(env: Mapping[str, str]) -> bool:
    """Whether notebooks should run in smoke-test mode, given environment variables.

    Smoke-test mode is on when ``CI`` or ``MAMLKIT_SMOKE`` is set to anything other than an
    empty string, ``"0"`` or ``"false"`` (any case). CI services set ``CI=true``.

    Args:
        env: a mapping such as ``os.environ``.

    Returns:
        ``True`` in smoke-test mode.
    """
    return any(env.get(name, "").strip().lower() not in _FALSE_VALUES for name in ("CI", "MAMLKIT_SMOKE"))


#: True when the notebooks run under CI or ``MAMLKIT_SMOKE=1``: loops become tiny.
SMOKE_TEST: bool = smoke_test_from_env(os.environ)


def _in_ipython() -> bool:
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    return get_ipython() is not None


def show_source(obj: object) -> None:
    """Display the source code of a function or class, syntax-highlighted in Jupyter.

    In a notebook the code appears as a highlighted block; in a plain Python session it is
    printed. Nothing is returned, so ``show_source(f)`` as the last line of a cell shows the
    code once.

    Args:
        obj: a function, class or method defined in a Python file (e.g. ``mamlkit.lessons.checks.check_close``).
    """
    source = inspect.getsource(obj)
    module = inspect.getmodule(obj)
    where = f"{module.__name__}.{obj.__qualname__}" if module else obj.__qualname__
    if not _in_ipython():
        print(f"# {where}\n{source}")
        return

    from IPython.display import Markdown, display

    # The fence must be longer than any run of backticks inside the code itself.
    longest = max((len(run) for run in re.findall(r"`+", source)), default=0)
    fence = "`" * max(3, longest + 1)
    display(Markdown(f"`{where}`\n\n{fence}python\n{source}{fence}"))


def mamlkit_origin(cwd: str | os.PathLike | None = None) -> tuple[Path, Path | None]:
    """Where the imported ``mamlkit`` lives, and the repository the working directory is in.

    Args:
        cwd: the notebook's folder (default: the current directory, which is the notebook's
            folder in Jupyter and under nbval).

    Returns:
        ``(imported, expected)``: the repository root holding the imported package, and the
        nearest folder at or above ``cwd`` that holds ``mamlkit/__init__.py`` (``None`` if none).
    """
    import mamlkit

    imported = Path(mamlkit.__file__).resolve().parents[1]
    here = Path(cwd if cwd is not None else os.getcwd()).resolve()
    expected = next((d for d in (here, *here.parents) if (d / "mamlkit" / "__init__.py").is_file()), None)
    return imported, expected


def show_mamlkit_origin(cwd: str | os.PathLike | None = None) -> bool:
    """Print which ``mamlkit`` this kernel imported; warn when it is not this repository's.

    The setup cell of each notebook puts its repository first on ``sys.path`` and then calls
    this, so a learner sees at once whether the code they edit is the code that runs.

    Returns:
        ``True`` when the imported ``mamlkit`` is the one of the notebook's repository (or the
        notebook is not inside a repository).
    """
    imported, expected = mamlkit_origin(cwd)
    if expected is None or expected == imported:
        print(f"mamlkit: {imported / 'mamlkit'} (this repository)")
        return True
    print(
        f"⚠ mamlkit was imported from {imported / 'mamlkit'}, but this notebook belongs to {expected}: "
        f"your edits to {expected / 'mamlkit'} will not run. Restart the kernel and run the first cell "
        f"again, or start Jupyter from {expected} (pip install -e {expected} makes it the installed copy)."
    )
    return False


# Cell metadata that changes on every run and says nothing about the notebook's content.
_VOLATILE_CELL_METADATA = ("execution", "ExecuteTime", "collapsed", "scrolled")
# Notebook metadata worth keeping; the rest (widget state, Python version, ...) is per machine.
_KEPT_NOTEBOOK_METADATA = ("kernelspec",)


def _strip(nb: dict) -> dict:
    for cell in nb.get("cells", []):
        if cell.get("cell_type") == "code":
            cell["outputs"] = []
            cell["execution_count"] = None
        metadata = cell.get("metadata", {})
        for key in _VOLATILE_CELL_METADATA:
            metadata.pop(key, None)
    metadata = nb.get("metadata", {})
    nb["metadata"] = {key: metadata[key] for key in _KEPT_NOTEBOOK_METADATA if key in metadata}
    if "language_info" in metadata:
        # The language name is stable; its version and lexer details are not.
        nb["metadata"]["language_info"] = {"name": metadata["language_info"].get("name", "python")}
    return nb


def strip_notebook(path: str | os.PathLike) -> bool:
    """Remove outputs, execution counts and volatile metadata from an ``.ipynb`` file, in place.

    The file is rewritten in the format Jupyter itself writes (JSON, indent 1, sorted keys), so
    stripping a notebook that was just saved from Jupyter changes only what must change.

    Args:
        path: the notebook file.

    Returns:
        ``True`` if the file was changed, ``False`` if it was already clean.
    """
    path = Path(path)
    original = path.read_text(encoding="utf-8")
    nb = _strip(json.loads(original))
    cleaned = json.dumps(nb, indent=1, sort_keys=True, ensure_ascii=False) + "\n"
    if cleaned == original:
        return False
    path.write_text(cleaned, encoding="utf-8")
    return True


def main(argv: list[str] | None = None) -> int:
    """Command line: ``python -m mamlkit.lessons.notebook strip NOTEBOOK...``.

    Returns:
        The exit status: 0.
    """
    parser = argparse.ArgumentParser(prog="python -m mamlkit.lessons.notebook", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    strip = commands.add_parser("strip", help="remove outputs and execution counts from notebooks")
    strip.add_argument("notebooks", nargs="+", type=Path, help=".ipynb files to clean in place")
    args = parser.parse_args(argv)

    for path in args.notebooks:
        print(f"{'stripped' if strip_notebook(path) else 'clean   '}  {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
