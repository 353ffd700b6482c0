"""``python -m mamlkit``: see :mod:`mamlkit.run.cli`."""

import sys

from mamlkit.run.cli import main

sys.exit(main())
