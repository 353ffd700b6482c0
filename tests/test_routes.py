"""The grading-routes table: what each route gave against what it should give."""

from __future__ import annotations

import json

from mamlkit.classroom.exercises import EXERCISES, get_exercise
from mamlkit.classroom.routes import _expected, table

FULL = sum(e.points for e in EXERCISES if e.module is not None)


def test_the_expected_points_of_each_submission():
    assert sum(_expected("untouched").values()) == 0
    assert sum(_expected("solved").values()) == FULL
    for exercise in EXERCISES:
        alone = _expected(f"alone {exercise.id}")
        assert alone[exercise.id] == exercise.points and sum(alone.values()) == exercise.points
    mistaken = _expected("mistake 2.1")
    assert mistaken["2.1"] == 0 and sum(mistaken.values()) == FULL - get_exercise("2.1").points


def test_the_table_flags_a_route_that_gives_other_points(tmp_path):
    solved = {e.id: e.points for e in EXERCISES if e.module is not None}
    wrong = dict(solved, **{"3.1": 0})
    entries = [
        {"route": "grade", "submission": "solved", "points": solved},
        {"route": "nbgrader", "submission": "solved", "points": wrong},
        {"route": "check", "submission": "solved", "exercise": "2.1", "verdict": "✓ Exercise 2.1 ..."},
        {"route": "grade-checkpoint", "submission": "shipped", "points": 10, "accuracy": 0.992, "exit": 0},
    ]
    (tmp_path / "routes.jsonl").write_text("".join(json.dumps(e) + "\n" for e in entries), encoding="utf-8")
    rows = {line.split(" | ")[0].strip("| "): line for line in table(tmp_path).splitlines()}
    assert f"| {FULL}/{FULL} | ✓ 2.1 | {FULL}/{FULL} | not run | {FULL - 20}/{FULL} (3.1: 0 ≠ 20) |" in rows["solved"]
    assert "| shipped | 10/10 | 99.2% | 0 |" in table(tmp_path)
