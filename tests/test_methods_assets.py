"""The shipped checkpoint of every method: described by its manifest, reproduced by evaluate."""

import json
from pathlib import Path

import pytest
from helpers import check_reproduces_first_tasks, data_available

from mamlkit.lessons.neighbours import ROWS
from mamlkit.run.checkpoints import sha256
from mamlkit.run.saved_models import load_method

ASSETS = Path(__file__).resolve().parents[1] / "assets"
STEMS = [stem for _, _, stem in ROWS]


@pytest.mark.parametrize("stem", STEMS)
def test_each_method_ships_a_small_checkpoint_with_its_algorithm(stem):
    manifest = json.loads((ASSETS / f"{stem}.json").read_text())
    weights = ASSETS / manifest["file"]
    assert weights.stat().st_size <= 2 * 1024 * 1024
    assert sha256(weights) == manifest["sha256"]
    _, _, method, config = load_method(weights)
    assert manifest["algorithm"] == config["algorithm"] == method.name
    # The recorded command rebuilds the checkpoint's settings.
    from mamlkit.run.cli import build_parser

    args = build_parser().parse_args(manifest["command"].split()[3:])
    for name in ("algorithm", "first_order", "iterations", "seed", "inner_lr", "meta_batch_size"):
        assert getattr(args, name) == config[name], f"{stem}: the command gives {name}={getattr(args, name)!r}"


# Evaluation on Omniglot: the sampler (4.1), first-order adaptation (3.2), the interval (4.2),
# and ANIL's or ProtoNet's own exercise; ProtoNet adapts nothing, so it has no first-order step.
EVAL_EX = {"anil": ("ex3_2", "ex5_2"), "protonet": ("ex5_1",)}


@pytest.mark.skipif(not data_available(), reason="needs MAMLKIT_DATA with the Omniglot zips")
@pytest.mark.parametrize("stem", [
    pytest.param(stem, marks=[getattr(pytest.mark, m) for m in ("ex4_1", "ex4_2") + EVAL_EX.get(key, ("ex3_2",))])
    for key, _, stem in ROWS])
def test_evaluate_reproduces_each_method_checkpoint(stem):
    """The first 100 of the manifest's 600 test tasks (same seed, same batches of 50)."""
    check_reproduces_first_tasks(stem, 100)
