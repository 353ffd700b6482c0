"""ruff over the package, the tests and the notebooks, with the rules in pyproject.toml."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _ruff() -> list[str]:
    if shutil.which("ruff"):
        return ["ruff"]
    try:
        import ruff  # noqa: F401  (the wheel also runs as python -m ruff)
    except ImportError:
        raise AssertionError("ruff is not installed: pip install -r requirements.txt") from None
    return [sys.executable, "-m", "ruff"]


def _is_student_edition() -> bool:
    # The maintainers' workflow is left out of the student edition, whose stubs leave names unused.
    return not (REPO / ".github/workflows/ci.yml").exists()


@pytest.mark.skipif(_is_student_edition(), reason="linting is for the course's maintainers")
def test_ruff_finds_nothing():
    result = subprocess.run(
        [*_ruff(), "check", "--no-cache", "--output-format", "concise", "mamlkit", "tests", "notebooks"],
        cwd=REPO, capture_output=True, text=True, timeout=120, check=False,
    )
    assert result.returncode == 0, (
        "ruff check found problems (rules: [tool.ruff] in pyproject.toml; many are fixed by "
        "`ruff check --fix`):\n" + result.stdout + result.stderr
    )
