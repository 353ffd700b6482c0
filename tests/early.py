"""Slow subprocess work of a few tests, started as soon as the session has collected them.

A handful of tests spend a minute each waiting on single-threaded subprocesses (real nbgrader,
a real grade of a student edition). Started in a background thread when collection finishes
(``tests/conftest.py``), that work runs on the core the unit tests leave idle, and the test that
needs it waits for its result; run alone, a test starts its job itself and waits. A test module
lists its jobs as ``EARLY_JOBS = {name: (function, test names)}``: ``function(folder)`` gets an
empty folder of its own and returns what the tests assert on; an exception it raises is raised
again in every test that asks for the result.
"""

from __future__ import annotations

import concurrent.futures
import shutil
import tempfile
import threading
from pathlib import Path

_pool = concurrent.futures.ThreadPoolExecutor(max_workers=2, thread_name_prefix="early-job")
_jobs: dict[str, concurrent.futures.Future] = {}
_folders: list[Path] = []
_lock = threading.Lock()


def start(name: str, function) -> concurrent.futures.Future:
    """The job ``name``, started now unless it already was."""
    with _lock:
        if name not in _jobs:
            folder = Path(tempfile.mkdtemp(prefix=f"mamlkit-{name}-"))
            _folders.append(folder)
            _jobs[name] = _pool.submit(function, folder)
        return _jobs[name]


def result(name: str, function):
    """What the job ``name`` returned (started now if nothing started it yet)."""
    return start(name, function).result()


def clean_up() -> None:
    """Wait for every job and remove their folders (at the end of the session)."""
    _pool.shutdown(wait=True)
    for folder in _folders:
        shutil.rmtree(folder, ignore_errors=True)
