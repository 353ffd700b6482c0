"""Publishing a finished run: weights, metrics log and a manifest that says how it was made.

``python -m mamlkit export --run-dir runs/omniglot_5w1s --out assets/omniglot_5w1s.pt`` writes
the files of ``assets/``: the weights alone (loadable with ``weights_only=True``), the run's
metrics log, and a JSON manifest with the training command, seed, iterations, code commit,
sha256, training time, machine, and the test accuracy measured on 600 new tasks.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import platform
import shutil
from pathlib import Path
from typing import Optional

import torch

from mamlkit.run import checkpoints
from mamlkit.run.config import TrainConfig
from mamlkit.run.run_folder import git_commit
from mamlkit.run.saved_models import evaluate_checkpoint


def machine_description() -> str:
    """A short description of where a run happened, for manifests."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return (f"{platform.system()} {platform.machine()}, {os.cpu_count()} cores ({cpu}), "
            f"torch {torch.__version__}, {torch.get_num_threads()} threads")


def training_command(config: TrainConfig, run_dir: str) -> str:
    """The ``python -m mamlkit train`` command line that makes a run with ``config``."""
    default = TrainConfig()
    options = []
    for f in dataclasses.fields(TrainConfig):
        value, flag = getattr(config, f.name), f.name.replace("_", "-")
        if f.name in ("device", "data_root") or value == getattr(default, f.name):
            continue
        if isinstance(value, bool):  # yes/no settings are flags: --first-order, --no-rotate
            options.append(f"--{flag}" if value else f"--no-{flag}")
        else:
            options.append(f"--{flag} {'all' if value is None else value}")
    return " ".join(["python -m mamlkit train --run-dir", str(run_dir), *options])


@contextlib.contextmanager
def one_thread():
    """Run the body with ``torch.set_num_threads(1)``, restoring the count afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def export_run(run_dir: str | Path, out: str | Path, num_tasks: int = 600, test_seed: int = 0,
               data_root: Optional[str] = None, note: Optional[str] = None) -> dict:
    """Publish a finished run: its weights, its metrics log, and a manifest beside them.

    Writes ``out`` (weights only, from the run's ``checkpoint.pt``), ``<stem>_metrics.jsonl``
    and ``<stem>.json``: the command that made the run, seed, iterations, the code commit, the
    weights' sha256, training time and machine, and the test accuracy ± 95% CI measured here on
    ``num_tasks`` test tasks seeded ``test_seed`` (what ``python -m mamlkit evaluate`` measures).
    """
    run_dir, out = Path(run_dir), Path(out)
    state = checkpoints.load(run_dir / "checkpoint.pt")
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    config = TrainConfig(**{k: v for k, v in state["config"].items() if k in fields})
    checkpoints.atomic_save({"format": checkpoints.FORMAT_VERSION, "config": state["config"],
                             "iteration": state["iteration"],
                             "params": state["params"], "inner_lrs": state["inner_lrs"]}, out)
    shutil.copyfile(run_dir / "metrics.jsonl", out.with_name(out.stem + "_metrics.jsonl"))
    result = evaluate_checkpoint(out, split="test", num_tasks=num_tasks, seed=test_seed,
                                 data_root=data_root)
    # The same tasks again, each query image normalised with the support set's batch-norm
    # statistics instead of its own batch's: the non-transductive protocol (mamlkit.protocols).
    support_stats = evaluate_checkpoint(out, split="test", num_tasks=num_tasks, seed=test_seed,
                                        data_root=data_root, protocol="support-stats")
    # The quick reproduction figures are measured again with one thread: a network's near-tied
    # predictions can flip with the order of floating-point sums, which the thread count sets,
    # so a test that reproduces them pins the same count (tests/helpers.py).
    with one_thread():
        first_100 = evaluate_checkpoint(out, split="test", num_tasks=min(100, num_tasks), seed=test_seed,
                                        data_root=data_root)["per_task"]
    warm_start = state.get("warm_start")
    manifest = {
        "file": out.name,
        "command": training_command(config, str(run_dir)),
        "seed": config.seed,
        "algorithm": config.algorithm,  # mamlkit.methods; with first_order, maml is first-order MAML
        "first_order": config.first_order,
        "iterations": state["iteration"],
        "code_commit": state.get("code_commit"),  # the code that trained the run
        "export_commit": git_commit(),
        "sha256": checkpoints.sha256(out),
        "split": config.split,
        "test_accuracy": round(result["mean"], 6),
        "test_ci95": round(result["ci95"], 6),
        "test_accuracy_per_step": [round(m, 6) for m in result["per_step_mean"]],
        # Tasks come in batches of 50 from one generator, so the first 100 of them are the
        # same tasks whatever num_tasks is (and so are the first 50): quick reproduction checks.
        "test_accuracy_first_50_tasks": round(sum(first_100[:50]) / len(first_100[:50]), 6),
        "test_accuracy_first_100_tasks": round(sum(first_100) / len(first_100), 6),
        "reproduction_threads": 1,
        "test_accuracy_support_stats": round(support_stats["mean"], 6),
        "test_ci95_support_stats": round(support_stats["ci95"], 6),
        "test_tasks": num_tasks,
        "test_seed": test_seed,
        "eval_inner_steps": config.eval_inner_steps,
        "training_seconds": round(state.get("train_seconds", 0.0), 1),
        # A run started from published weights (--init-from): the file it started from and the
        # steps and seconds before it, so the totals below count the whole training.
        "warm_start": warm_start,
        "iterations_in_all": state["iteration"] + ((warm_start or {}).get("iterations") or 0),
        "training_seconds_in_all": round(state.get("train_seconds", 0.0)
                                         + ((warm_start or {}).get("training_seconds") or 0.0), 1),
        "machine": machine_description(),
        "note": note,
        "evaluate_command": f"python -m mamlkit evaluate {out} --tasks {num_tasks} --seed {test_seed}",
    }
    out.with_suffix(".json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest
