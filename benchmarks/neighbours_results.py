"""Collect the results table of notebook 05 and docs/results.md: every method, both protocols, cost.

Inputs are the shipped checkpoints' manifests (``assets/omniglot_5w1s*.json``) and the JSON
files written by the evaluation commands below; the cost of one meta-step is measured here,
every method side by side in this one process. Output: ``assets/neighbours_5w1s_results.json``,
read by ``mamlkit.lessons.neighbours.results_table``.

The evaluations, for each checkpoint STEM (omniglot_5w1s, omniglot_5w1s_maml, _fomaml, _anil,
_metasgd, _protonet), Q in 1 15 and P in transductive support-stats (Q=1 transductive is the
manifest's own measurement and may be left out)::

    python -m mamlkit evaluate assets/STEM.pt --tasks 600 --seed 0 --n-query Q --protocol P \\
        --json evals/eval_STEM_qQ_P.json

then::

    OMP_NUM_THREADS=1 python benchmarks/neighbours_results.py --evals evals

A row added later is measured alone and merged into the existing file, the other rows kept as
they are (their costs were measured side by side in one process; the new row's cost is then
measured in another, and says so in ``conditions``)::

    OMP_NUM_THREADS=1 python benchmarks/neighbours_results.py --evals evals --only reptile
"""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

import torch

from mamlkit.functional import get_params
from mamlkit.lessons.neighbours import ROWS, VARIANTS, meta_step_cost
from mamlkit.methods import build_method
from mamlkit.run.config import TrainConfig, build_model, omniglot_task_samplers

ROOT = Path(__file__).resolve().parents[1]
ASSETS = ROOT / "assets"


def accuracies(evals: Path, stem: str) -> dict:
    """``{"q1_transductive": [mean, ci95], ...}`` from the evaluate --json files of ``stem``.

    The manifest's own test accuracy is the 1-query transductive measurement (600 tasks, seed
    0), so that cell needs no file of its own.
    """
    manifest = json.loads((ASSETS / f"{stem}.json").read_text())
    result = {"q1_transductive": [manifest["test_accuracy"], manifest["test_ci95"]]}
    for q in (1, 15):
        for protocol in ("transductive", "support-stats"):
            path = evals / f"eval_{stem}_q{q}_{protocol}.json"
            if path.exists():
                r = json.loads(path.read_text())
                if f"q{q}_{protocol}" in result:  # the manifest's number, measured again
                    assert abs(r["mean"] - result[f"q{q}_{protocol}"][0]) < 1e-6, (stem, r["mean"])
                result[f"q{q}_{protocol}"] = [round(r["mean"], 6), round(r["ci95"], 6)]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--evals", required=True, help="folder with the evaluate --json files")
    parser.add_argument("--out", default=str(ASSETS / "neighbours_5w1s_results.json"))
    parser.add_argument("--tasks", type=int, default=32, help="tasks per timed meta-step")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--only", nargs="+", choices=[key for key, _, _ in ROWS],
                        help="measure these rows alone and merge them into the existing --out file")
    args = parser.parse_args()
    evals = Path(args.evals)

    config = TrainConfig()
    tasks = omniglot_task_samplers(config)["train"].sample(args.tasks, torch.Generator().manual_seed(2))
    model = build_model(config, torch.Generator().manual_seed(0))
    costs = {}
    measure = args.only or list(VARIANTS)
    if args.only and "maml" not in measure:
        measure = ["maml", *measure]  # the reference the merged row is timed beside
    for key in measure:
        name, first_order, steps = VARIANTS[key]
        params = get_params(model)
        method = build_method(name, params, config.inner_lr, steps, first_order)
        costs[key] = meta_step_cost(method, model, params, tasks, repeats=args.repeats)
        print(key, costs[key], flush=True)
    threads = torch.get_num_threads()
    if args.only:
        results = json.loads(Path(args.out).read_text())
        for key, label, stem in ROWS:
            if key in args.only:
                manifest = json.loads((ASSETS / f"{stem}.json").read_text())
                results["methods"][key] = {
                    "label": label, "steps": manifest["iterations"], "checkpoint": f"assets/{stem}.pt",
                    "accuracy": accuracies(evals, stem), "seconds_per_step": costs[key]["seconds"],
                    "peak_mib": costs[key]["peak_bytes"] / 2**20,
                    "cost_note": (f"measured later, in its own process beside MAML (MAML there: "
                                  f"{costs['maml']['seconds']:.2f} s, {costs['maml']['peak_bytes'] / 2**20:.0f} MiB); "
                                  f"eval_inner_steps {manifest['eval_inner_steps']}")}
        Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
        print(f"updated {args.out}: {args.only}")
        return

    methods = {}
    shipped = json.loads((ASSETS / "omniglot_5w1s.json").read_text())
    methods["maml_20k"] = {"label": "MAML, shipped checkpoint", "steps": shipped["iterations"],
                           "checkpoint": "assets/omniglot_5w1s.pt", "published_key": "maml",
                           "accuracy": accuracies(evals, "omniglot_5w1s"),
                           "seconds_per_step": costs["maml"]["seconds"],
                           "peak_mib": costs["maml"]["peak_bytes"] / 2**20}
    for key, label, stem in ROWS:
        manifest = json.loads((ASSETS / f"{stem}.json").read_text())
        acc = accuracies(evals, stem)
        methods[key] = {"label": label, "steps": manifest["iterations"], "checkpoint": f"assets/{stem}.pt",
                        "accuracy": acc, "seconds_per_step": costs[key]["seconds"],
                        "peak_mib": costs[key]["peak_bytes"] / 2**20}
    results = {
        "conditions": (f"accuracy: 600 test tasks (seed 0), 5-way 1-shot, eval_inner_steps 3, ± 95% CI; "
                       f"cost: one meta-step of {args.tasks} tasks (8 at a time), median of {args.repeats}, "
                       f"{threads} thread(s), {platform.machine()}, torch {torch.__version__}, on a shared "
                       f"2-core machine (timings contended; peak memory is not affected)"),
        "methods": methods,
    }
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
