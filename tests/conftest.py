"""Shared pytest configuration: one marker per course exercise.

Tests marked ``hidden`` are left out of the student edition and run by the grader.
The exercise markers come from the exercise registry (``mamlkit/classroom/exercises.py``), so a test
for Exercise 2.1 is written ``@pytest.mark.ex2_1`` and selected with ``pytest -m ex2_1``.
Fixtures live in the test files that use them. A few tests' slow subprocess work starts as soon
as collection finishes, in the background (``tests/early.py``).
"""

import early

from mamlkit.classroom.exercises import EXERCISES
from mamlkit.classroom.grade import HIDDEN_MARKER


def pytest_configure(config):
    for exercise in EXERCISES:
        config.addinivalue_line("markers", f"{exercise.marker}: {exercise.label} — {exercise.title}")
    config.addinivalue_line(
        "markers", f"{HIDDEN_MARKER}: left out of the student edition; the grader runs it from the course's copy"
    )


def pytest_collection_finish(session):
    """Start the background jobs (``EARLY_JOBS`` of a test module) of the tests about to run."""
    for item in session.items:
        if any(mark.args and mark.args[0] for mark in item.iter_markers("skipif")):
            continue  # skipped for a condition known now: its job is not needed
        for name, (function, tests) in getattr(item.module, "EARLY_JOBS", {}).items():
            if item.originalname in tests:
                early.start(name, function)


def pytest_sessionfinish(session, exitstatus):
    early.clean_up()
