"""Committed notebooks carry no outputs, and each opens with a title that matches its file name.

If a test here fails, clean the notebooks with::

    python -m mamlkit.lessons.notebook strip notebooks/*.ipynb
"""

import json
import re
import shutil
from pathlib import Path

import pytest

from mamlkit.lessons.notebook import strip_notebook

NOTEBOOK_DIR = Path(__file__).resolve().parent.parent / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("[0-9][0-9]_*.ipynb"))
STRIP_HINT = "run: python -m mamlkit.lessons.notebook strip notebooks/*.ipynb"


def _load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def test_there_are_notebooks():
    assert NOTEBOOKS, f"no notebooks named NN_*.ipynb in {NOTEBOOK_DIR}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_has_no_outputs_or_execution_counts(path):
    dirty = []
    for index, cell in enumerate(_load(path)["cells"]):
        if cell["cell_type"] != "code":
            continue
        found = []
        if cell.get("outputs"):
            found.append("outputs")
        if cell.get("execution_count") is not None:
            found.append(f"execution_count {cell['execution_count']}")
        if found:
            dirty.append(f"cell {index} ({', '.join(found)})")
    shown = ", ".join(dirty[:5]) + (f" and {len(dirty) - 5} more cells" if len(dirty) > 5 else "")
    assert not dirty, f"{path.name}: {shown} ({STRIP_HINT})"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_already_stripped(path, tmp_path):
    # The same check CI makes: stripping a committed notebook must change nothing.
    copy = tmp_path / path.name
    shutil.copyfile(path, copy)
    assert not strip_notebook(copy), f"{path.name}: stripping would change it ({STRIP_HINT})"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_title_matches_file_name(path):
    cells = _load(path)["cells"]
    assert cells, f"{path.name} has no cells"
    first = cells[0]
    assert first["cell_type"] == "markdown", f"{path.name}: the first cell must be the markdown title"
    source = "".join(first["source"])
    title = source.splitlines()[0] if source else ""
    match = re.fullmatch(r"# (\d\d) · \S.*", title)
    assert match, f"{path.name}: first line should look like '# 01 · Autograd basics', got {title!r}"
    assert match.group(1) == path.name[:2], f"{path.name}: title number {match.group(1)} does not match the file name"
