"""The graded performance target: points by accuracy tier, fixed tasks, a time limit.

An instructor's tool: ``grade-checkpoint`` evaluates with the grader's own ``mamlkit``, which in
the student edition is the learner's, exercises unfinished. So the file is hidden: the student
edition does not carry it.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from mamlkit.classroom.__main__ import main as classroom_main
from mamlkit.classroom.performance import DEFAULT_TIERS, TARGET_PROTOCOL, grade_checkpoint, points_for

pytestmark = pytest.mark.hidden

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
    assert result.message.startswith("not graded: no file") and not result.graded


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
    result = grade_checkpoint(SHIPPED, num_tasks=20, time_limit_s=300,
                              protocol=TARGET_PROTOCOL | {"eval_inner_steps": 0})
    assert result.accuracy is not None and result.accuracy < 0.9, result.message
    assert result.points == 0, result.message


def _tampered(tmp_path, source, **config):
    state = torch.load(source, weights_only=True)
    state["config"] = state["config"] | config
    out = tmp_path / "tampered.pt"
    torch.save(state, out)
    return out


@pytest.mark.skipif(not os.environ.get("MAMLKIT_DATA"), reason="needs the Omniglot images (MAMLKIT_DATA)")
def test_the_files_own_settings_change_nothing_in_its_grade(tmp_path):
    # Five support images per class, five query images and ten inner steps, written into the file:
    # the target's protocol (1-shot, 1 query, 3 steps) is evaluated all the same.
    tampered = _tampered(tmp_path, SHIPPED, k_shot=5, n_query=5, eval_n_query=5, eval_inner_steps=10)
    honest = grade_checkpoint(SHIPPED, num_tasks=20, time_limit_s=300)
    edited = grade_checkpoint(tampered, num_tasks=20, time_limit_s=300)
    assert honest.graded and edited.graded, (honest.message, edited.message)
    assert edited.accuracy == honest.accuracy and edited.points == honest.points
    assert "5-way 1-shot, 1 query per class, 3 inner steps, 20 val tasks" in edited.message


def test_a_network_that_does_not_fit_the_target_is_refused_and_the_command_fails(tmp_path, capsys):
    twenty_way = REPO / "assets/omniglot_20w1s.pt"
    result = grade_checkpoint(twenty_way, num_tasks=20, time_limit_s=300)
    assert not result.graded and result.points == 0
    assert "head has 20 outputs, but the target is 5-way" in result.message
    assert classroom_main(["grade-checkpoint", str(twenty_way), "--tasks", "20"]) == 1
    assert "0/10 points: not graded" in capsys.readouterr().out
