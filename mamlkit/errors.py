"""The errors a learner can fix, each with a message that says what is wrong and what to do.

Every one derives from :class:`MamlkitError`, so the command line (:mod:`mamlkit.run.cli`) and the
notebooks can show its message alone, without a traceback, while any other exception, a bug,
keeps its traceback. Each also derives from the built-in exception that code outside mamlkit
would expect (``ValueError``, ``FileNotFoundError``), so ``except ValueError`` still works.

``exit_status`` follows the shell's convention: 2 for a command that cannot work as typed (a
bad option, a setting out of range, a file that is not what the command needs), 1 for a
failure while doing the work (data that cannot be had, a folder that cannot be written).
"""

from __future__ import annotations

import sys

__all__ = [
    "CheckpointError",
    "ConfigError",
    "DataError",
    "DataUnavailableError",
    "MamlkitError",
    "RunFolderError",
    "show_errors_briefly",
]


class MamlkitError(Exception):
    """A problem with the input or the environment, not with mamlkit: the message says which."""

    exit_status = 1


class ConfigError(MamlkitError, ValueError):
    """A setting (a ``TrainConfig`` field or a command-line option) that cannot work."""

    exit_status = 2


class CheckpointError(MamlkitError, ValueError):
    """A file that is missing, damaged, or not a checkpoint mamlkit can read."""

    exit_status = 2


class DataError(MamlkitError, ValueError):
    """Data that fails its checks: a corrupt or re-arranged zip, a wrong checksum."""


class DataUnavailableError(MamlkitError, FileNotFoundError):
    """The data is neither where it was looked for nor downloadable now."""


class RunFolderError(MamlkitError, OSError):
    """A run folder that cannot be used: a file in its place, or not writable."""


def show_errors_briefly() -> None:
    """In IPython/Jupyter, show a :class:`MamlkitError` as its message alone.

    A cell that raises one is still marked as failed (so "Run All" stops there and a notebook
    test sees the failure), but it shows one line instead of a traceback through the library;
    ``%tb`` still prints the traceback. Other exceptions keep IPython's usual display. An
    existing custom handler (e.g. the exercise hints) keeps handling its own exceptions.
    Outside IPython this does nothing.
    """
    try:
        from IPython import get_ipython
    except ImportError:
        return
    shell = get_ipython()
    if shell is None:
        return
    earlier_types = tuple(getattr(shell, "custom_exceptions", ()) or ())
    earlier_handler = getattr(shell, "CustomTB", None) if earlier_types else None
    if MamlkitError in earlier_types:
        return  # already installed

    def handler(shell, etype, value, tb, tb_offset=None):
        if isinstance(value, MamlkitError):
            sys.last_type, sys.last_value, sys.last_traceback = etype, value, tb
            shell._showtraceback(etype, value, [f"{etype.__name__}: {value}", "(run %tb for the full traceback)"])
            return None
        if earlier_handler is not None and isinstance(value, earlier_types):
            return earlier_handler(etype, value, tb, tb_offset=tb_offset)
        shell.showtraceback((etype, value, tb), tb_offset=tb_offset)
        return None

    shell.set_custom_exc(earlier_types + (MamlkitError,), handler)
