"""Shared pytest configuration: one marker per course exercise.

Tests marked ``hidden`` are left out of the student edition and run by the grader.
The exercise markers come from the exercise registry (``mamlkit/classroom/exercises.py``), so a test
for Exercise 2.1 is written ``@pytest.mark.ex2_1`` and selected with ``pytest -m ex2_1``.
Fixtures live in the test files that use them.
"""

from mamlkit.classroom.exercises import EXERCISES
from mamlkit.classroom.grade import HIDDEN_MARKER


def pytest_configure(config):
    for exercise in EXERCISES:
        config.addinivalue_line("markers", f"{exercise.marker}: {exercise.label} — {exercise.title}")
    config.addinivalue_line(
        "markers", f"{HIDDEN_MARKER}: left out of the student edition; the grader runs it from the course's copy"
    )
