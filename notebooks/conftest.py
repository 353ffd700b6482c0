"""Notebook tests (nbval): a notebook that needs Omniglot is skipped when the data cannot be had.

A notebook needs Omniglot when one of its code cells loads it (``load_omniglot(``,
``omniglot_task_samplers(`` or ``evaluate_checkpoint(``). Before such notebooks run, Omniglot
is looked for as their first cells look for it (``$MAMLKIT_DATA``, then the user cache,
downloading there once if the network allows). If it cannot be had, for example offline with no
copy anywhere, they are skipped with the reason, as the tests on the real images are, instead
of failing at their first cell; a learner running such a notebook by hand sees that reason as
the cell's one-line error.
"""

import json
from pathlib import Path

import pytest

#: Calls that load Omniglot (directly or through the task samplers).
LOADS_OMNIGLOT = ("load_omniglot(", "omniglot_task_samplers(", "evaluate_checkpoint(")


def needs_omniglot(path: Path) -> bool:
    """Whether a code cell of the notebook at ``path`` loads Omniglot."""
    cells = json.loads(path.read_text(encoding="utf-8")).get("cells", [])
    sources = ("".join(c.get("source", "")) for c in cells if c.get("cell_type") == "code")
    return any(call in source for source in sources for call in LOADS_OMNIGLOT)


def pytest_collection_modifyitems(config, items):
    notebooks = {item.path for item in items if item.path.suffix == ".ipynb"}
    needing = {path for path in notebooks if needs_omniglot(path)}
    if not needing:
        return
    from mamlkit.data.omniglot import find_omniglot
    from mamlkit.errors import DataUnavailableError

    try:
        find_omniglot(progress=False)
    except DataUnavailableError as error:
        skip = pytest.mark.skip(reason=f"Omniglot cannot be had: {error}")
        for item in items:
            if item.path in needing:
                item.add_marker(skip)
