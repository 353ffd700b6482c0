"""Notebook 05's helpers: the cost of a meta-step and the results table."""

import json
from pathlib import Path

import pytest
from helpers import image_tasks, tiny_conv

from mamlkit.functional import get_params
from mamlkit.lessons.neighbours import ROWS, meta_step_cost, results_table
from mamlkit.methods import build_method

ASSETS = Path(__file__).resolve().parents[1] / "assets"


@pytest.mark.ex2_1
@pytest.mark.ex3_2
def test_first_order_maml_needs_less_memory_than_second_order():
    model, tasks = tiny_conv(channels=4), image_tasks(num_tasks=4)
    costs = {}
    for key, first_order in (("maml", False), ("fomaml", True)):
        params = get_params(model)
        costs[key] = meta_step_cost(build_method("maml", params, 0.4, 1, first_order), model, params, tasks,
                                    repeats=1, task_chunk_size=2)
    assert costs["fomaml"]["peak_bytes"] < costs["maml"]["peak_bytes"]
    assert all(c["seconds"] > 0 for c in costs.values())


def test_results_table_has_a_row_per_method_and_every_protocol_column():
    results = {"methods": {"protonet": {"label": "Prototypical Networks", "steps": 500,
                                        "accuracy": {"q1_transductive": [0.95, 0.01], "q15_support-stats": [0.9, 0.005]},
                                        "seconds_per_step": 0.4, "peak_mib": 50.0}}}
    table = results_table(results).splitlines()
    assert len(table) == 3 and "support-stats, 15" in table[0]
    assert "| Prototypical Networks | 500 | 95.0 ± 1.0 | – | – | 90.0 ± 0.5 | 0.40 | 50 | 98.8 |" == table[2]


@pytest.mark.skipif(not (ASSETS / "neighbours_5w1s_results.json").exists(), reason="no results file")
def test_the_shipped_results_agree_with_the_manifests():
    results = json.loads((ASSETS / "neighbours_5w1s_results.json").read_text())
    for key, _, stem in ROWS:
        manifest = json.loads((ASSETS / f"{stem}.json").read_text())
        row = results["methods"][key]
        assert row["steps"] == manifest["iterations"]
        assert row["accuracy"]["q1_transductive"][0] == pytest.approx(manifest["test_accuracy"], abs=1e-6)
    results_table(results)
