"""The pretrained checkpoint in assets/: safe to load, as described by its manifest, reproducible."""

import json
from pathlib import Path

import pytest
import torch
from helpers import check_reproduces_first_tasks, data_available

from mamlkit.run.checkpoints import sha256
from mamlkit.run.saved_models import evaluate_checkpoint, load_weights

ASSETS = Path(__file__).resolve().parents[1] / "assets"
MANIFESTS = sorted(ASSETS.glob("omniglot_*.json"))


def test_the_5way_1shot_checkpoint_is_shipped():
    assert ASSETS / "omniglot_5w1s.json" in MANIFESTS


@pytest.mark.parametrize("manifest_path", MANIFESTS, ids=lambda p: p.stem)
def test_checkpoint_matches_its_manifest_and_loads_safely(manifest_path):
    manifest = json.loads(manifest_path.read_text())
    weights = ASSETS / manifest["file"]
    assert weights.stat().st_size <= 2 * 1024 * 1024, "checkpoints in assets/ must stay under 2 MB"
    assert sha256(weights) == manifest["sha256"], f"{weights.name} is not the file its manifest describes"
    state = torch.load(weights, map_location="cpu", weights_only=True)
    assert set(state) >= {"config", "params", "iteration"}
    assert state["iteration"] == manifest["iterations"]
    assert state["config"]["seed"] == manifest["seed"]
    assert "mamlkit train" in manifest["command"]
    model, params, _, config = load_weights(weights)
    assert sum(p.numel() for p in params.values()) == sum(p.numel() for p in model.parameters())


@pytest.mark.ex3_2
@pytest.mark.ex4_1
@pytest.mark.ex4_2
@pytest.mark.skipif(not data_available(), reason="needs MAMLKIT_DATA with the Omniglot zips")
def test_evaluating_the_checkpoint_reproduces_the_manifest():
    manifest = json.loads((ASSETS / "omniglot_5w1s.json").read_text())
    result = evaluate_checkpoint(ASSETS / manifest["file"], split="test",
                                 num_tasks=manifest["test_tasks"], seed=manifest["test_seed"],
                                 inner_steps=manifest["eval_inner_steps"])
    # The same tasks and arithmetic: equal up to a few predictions flipped by rounding elsewhere.
    assert abs(result["mean"] - manifest["test_accuracy"]) <= 0.002, (
        f"measured {result['mean']:.4f}, manifest says {manifest['test_accuracy']:.4f}"
    )


def test_the_paper_table_has_a_checkpoint_for_every_setting():
    from mamlkit.lessons.paper_table import shipped_results

    missing = [setting.name for setting, manifest in shipped_results(ASSETS) if manifest is None]
    assert not missing, f"no shipped checkpoint for {missing}"
    for setting, manifest in shipped_results(ASSETS):
        state = torch.load(ASSETS / manifest["file"], map_location="cpu", weights_only=True)
        assert (state["config"]["n_way"], state["config"]["k_shot"]) == (setting.n_way, setting.k_shot)
        # Honest about how far it was trained and where.
        assert manifest["iterations"] == state["iteration"] and manifest["machine"]
        assert len(manifest["test_accuracy_per_step"]) == manifest["eval_inner_steps"] + 1


TABLE_STEMS = [stem for stem in ("omniglot_5w5s", "omniglot_20w1s", "omniglot_20w5s")
               if (ASSETS / f"{stem}.json").exists()]


def _table_param(stem: str):
    """A checkpoint trained with ``--learn-inner-lrs`` also runs Exercise 3.3's ``init_inner_lrs``."""
    learned = "--learn-inner-lrs" in json.loads((ASSETS / f"{stem}.json").read_text(encoding="utf-8"))["command"]
    return pytest.param(stem, marks=[pytest.mark.ex3_3] if learned else [], id=stem)


@pytest.mark.ex3_2
@pytest.mark.ex4_1
@pytest.mark.ex4_2
@pytest.mark.skipif(not data_available(), reason="needs MAMLKIT_DATA with the Omniglot zips")
@pytest.mark.parametrize("stem", [_table_param(stem) for stem in TABLE_STEMS])
def test_evaluate_reproduces_each_table_checkpoint_on_its_first_50_tasks(stem):
    """The first 50 of the manifest's 600 test tasks: the same seed draws the same tasks."""
    check_reproduces_first_tasks(stem, 50)
