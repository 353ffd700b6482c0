"""``python -m mamlkit``: see :mod:`mamlkit.cli`."""

import sys

from mamlkit.cli import main

sys.exit(main())
