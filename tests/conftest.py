"""Shared pytest configuration: one marker per course exercise.

The markers come from the exercise registry (``mamlkit/classroom/exercises.py``), so a test
for Exercise 2.1 is written ``@pytest.mark.ex2_1`` and selected with ``pytest -m ex2_1``.
Fixtures live in the test files that use them.
"""

from mamlkit.classroom.exercises import EXERCISES


def pytest_configure(config):
    for exercise in EXERCISES:
        config.addinivalue_line("markers", f"{exercise.marker}: {exercise.label} — {exercise.title}")
