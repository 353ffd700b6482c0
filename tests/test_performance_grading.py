"""The graded performance target: points by accuracy tier, fixed tasks, a time limit."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mamlkit.classroom.performance import DEFAULT_TIERS, grade_checkpoint, points_for

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "assets/omniglot_5w1s.pt"


@pytest.mark.parametrize(
    "accuracy, points", [(0.0, 0), (0.8999, 0), (0.90, 4), (0.9499, 4), (0.95, 7), (0.9699, 7), (0.97, 10), (1.0, 10)]
)
def test_points_by_tier(accuracy, points):
    assert points_for(accuracy, DEFAULT_TIERS) == points


def test_tiers_and_accuracy_are_checked():
    with pytest.raises(ValueError, match="accuracy must be a fraction in"):
        points_for(97.0)
    with pytest.raises(ValueError, match="tiers must rise"):
        points_for(0.9, ((0.95, 7), (0.90, 4)))


def test_a_missing_checkpoint_earns_nothing_and_says_why(tmp_path):
    result = grade_checkpoint(tmp_path / "nothing.pt", time_limit_s=120)
    assert (result.points, result.max_points, result.accuracy) == (0, 10, None)
    assert result.message.startswith("the checkpoint could not be evaluated:")


def test_the_time_limit_is_enforced():
    result = grade_checkpoint(SHIPPED, time_limit_s=0.01)
    assert result.points == 0 and "did not finish within the time limit of 0.01 s" in result.message


@pytest.mark.skipif(not os.environ.get("MAMLKIT_DATA"), reason="needs the Omniglot images (MAMLKIT_DATA)")
def test_the_shipped_checkpoint_reaches_the_top_tier():
    result = grade_checkpoint(SHIPPED, num_tasks=50, time_limit_s=300)
    assert result.accuracy is not None, result.message
    assert result.points == 10, result.message


@pytest.mark.skipif(not os.environ.get("MAMLKIT_DATA"), reason="needs the Omniglot images (MAMLKIT_DATA)")
def test_the_same_weights_without_adaptation_earn_nothing():
    # With no inner step the network guesses: about 20% on 5-way tasks, below every tier.
    result = grade_checkpoint(SHIPPED, num_tasks=20, time_limit_s=300, extra_args=("--inner-steps", "0"))
    assert result.accuracy is not None and result.accuracy < 0.9, result.message
    assert result.points == 0, result.message
