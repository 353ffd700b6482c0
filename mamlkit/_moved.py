"""The import paths of modules that moved into layer folders, kept working for one release.

``import mamlkit.train`` gives the module ``mamlkit.run.train`` itself (the same object, so
monkeypatching and pickles agree) with a :class:`DeprecationWarning` naming the new path.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import warnings

#: old name → new name, under ``mamlkit.``
MOVED = {
    "batchnorm_relu": "models.batchnorm_relu", "grouped_conv": "models.grouped_conv",
    "sinusoid": "data.sinusoid", "toy_classification": "data.toy_classification",
    **{name: "run." + name for name in ("train", "checkpoints", "cli", "presets", "distributed", "publish",
                                         "plotting")},
    **{name: "lessons." + name for name in (
        "autograd_warmups", "maml_from_scratch", "curvature", "quadratic_toy", "memory_cost",
        "meta_overfitting", "transfer_baseline", "baseline", "sine_experiment", "feature_reuse",
        "neighbours", "paper_table", "checks", "notebook", "omniglot_plots", "sine_plots",
        "theory_plots", "intervals")},
}


class MovedModuleFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds ``mamlkit.<old name>`` and hands out the module at its new place."""

    def find_spec(self, fullname, path=None, target=None):
        prefix, _, name = fullname.partition(".")
        if prefix == "mamlkit" and name in MOVED:
            origin = importlib.util.find_spec("mamlkit." + MOVED[name]).origin
            return importlib.util.spec_from_loader(fullname, self, origin=origin)
        return None

    def __init__(self):
        self._specs = {}

    def create_module(self, spec):
        new = "mamlkit." + MOVED[spec.name.partition(".")[2]]
        warnings.warn(f"{spec.name} moved to {new}; the old name works until the next release",
                      DeprecationWarning, stacklevel=2)
        module = importlib.import_module(new)
        self._specs[spec.name] = module.__spec__  # the import machinery overwrites it next
        return module

    def get_code(self, fullname):
        """The new module's code, so that ``python -m mamlkit.<old name>`` still runs it."""
        new = "mamlkit." + MOVED[fullname.partition(".")[2]]
        return importlib.util.find_spec(new).loader.get_code(new)

    def is_package(self, fullname):
        return False

    def exec_module(self, module):
        # Already executed at its new place: only give it back its own spec.
        module.__spec__ = self._specs.pop(module.__spec__.name, module.__spec__)


def install() -> None:
    if not any(isinstance(finder, MovedModuleFinder) for finder in sys.meta_path):
        sys.meta_path.append(MovedModuleFinder())
