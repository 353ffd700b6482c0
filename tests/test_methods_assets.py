"""The shipped checkpoint of every method: described by its manifest, reproduced by evaluate."""

import json
import os
from pathlib import Path

import pytest

from mamlkit.checkpoints import sha256
from mamlkit.neighbours import ROWS
from mamlkit.train import evaluate_checkpoint, load_method

ASSETS = Path(__file__).resolve().parents[1] / "assets"
STEMS = [stem for _, _, stem in ROWS]


def data_available() -> bool:
    folder = os.environ.get("MAMLKIT_DATA")
    return bool(folder) and (Path(folder) / "images_background.zip").exists()


@pytest.mark.parametrize("stem", STEMS)
def test_each_method_ships_a_small_checkpoint_with_its_algorithm(stem):
    manifest = json.loads((ASSETS / f"{stem}.json").read_text())
    weights = ASSETS / manifest["file"]
    assert weights.stat().st_size <= 2 * 1024 * 1024
    assert sha256(weights) == manifest["sha256"]
    _, _, method, config = load_method(weights)
    assert manifest["algorithm"] == config["algorithm"] == method.name
    # The recorded command rebuilds the checkpoint's settings.
    from mamlkit.cli import build_parser

    args = build_parser().parse_args(manifest["command"].split()[3:])
    for name in ("algorithm", "first_order", "iterations", "seed", "inner_lr", "meta_batch_size"):
        assert getattr(args, name) == config[name], f"{stem}: the command gives {name}={getattr(args, name)!r}"


# Evaluation on Omniglot: the sampler (4.1), first-order adaptation (3.2), the interval (4.2),
# and ANIL's or ProtoNet's own exercise.
EVAL_EX = {"anil": ("ex5_2",), "protonet": ("ex5_1",)}


@pytest.mark.skipif(not data_available(), reason="needs MAMLKIT_DATA with the Omniglot zips")
@pytest.mark.parametrize("stem", [
    pytest.param(stem, marks=[getattr(pytest.mark, m) for m in ("ex4_1", "ex3_2", "ex4_2") + EVAL_EX.get(key, ())])
    for key, _, stem in ROWS])
def test_evaluate_reproduces_each_method_checkpoint(stem):
    """The first 100 of the manifest's 600 test tasks (same seed, same batches of 50)."""
    manifest = json.loads((ASSETS / f"{stem}.json").read_text())
    result = evaluate_checkpoint(ASSETS / manifest["file"], split="test", num_tasks=100,
                                 seed=manifest["test_seed"], inner_steps=manifest["eval_inner_steps"])
    assert abs(result["mean"] - manifest["test_accuracy_first_100_tasks"]) <= 0.002, (
        f"{stem}: measured {result['mean']:.4f} on the first 100 test tasks, "
        f"manifest says {manifest['test_accuracy_first_100_tasks']:.4f}"
    )
