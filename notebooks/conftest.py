"""Notebook tests (nbval): a notebook that needs Omniglot is skipped when the data cannot be had.

Before the notebooks run, Omniglot is looked for as notebook 04's first cell looks for it
(``$MAMLKIT_DATA``, then the user cache, downloading there once if the network allows). If it
cannot be had, for example offline with no copy anywhere, the notebooks that need it are
skipped with the reason, as the tests on the real images are, instead of failing at their first
cell; a learner running such a notebook by hand sees that reason as the cell's one-line error.
"""

import pytest

#: Notebooks whose first cell loads Omniglot.
NEEDS_OMNIGLOT = ("04_omniglot_maml.ipynb",)


def pytest_collection_modifyitems(config, items):
    needing = [item for item in items if item.path.name in NEEDS_OMNIGLOT]
    if not needing:
        return
    from mamlkit.data.omniglot import find_omniglot
    from mamlkit.errors import DataUnavailableError

    try:
        find_omniglot(progress=False)
    except DataUnavailableError as error:
        skip = pytest.mark.skip(reason=f"Omniglot cannot be had: {error}")
        for item in needing:
            item.add_marker(skip)
