"""Time to accuracy of training runs, from their ``metrics.jsonl``, side by side.

For every run folder: the first validation at or above each target accuracy, with its
meta-step and its training seconds (``seconds`` in the log: time spent in meta-steps, not in
validation), and the last validation. With two or more runs, the first run is the baseline
and the others are compared with it as a ratio of seconds.

Example (the paper's settings against the fast preset)::

    python benchmarks/time_to_accuracy.py runs/paper runs/fast --targets 0.95 0.97
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional, Sequence

from mamlkit.run.run_folder import read_metrics


def first_reaching(records: list, target: float) -> Optional[dict]:
    """The first ``val`` record whose ``val_accuracy`` is at least ``target``, or None."""
    for record in records:
        if record.get("kind") == "val" and record["val_accuracy"] >= target:
            return record
    return None


def summary(run: Path, targets: Sequence[float]) -> dict:
    records = read_metrics(run / "metrics.jsonl")
    if not records:
        raise ValueError(f"{run} has no metrics.jsonl (or it is empty)")
    val = [r for r in records if r.get("kind") == "val"]
    return {"run": str(run), "reached": {t: first_reaching(records, t) for t in targets},
            "last": val[-1] if val else None}


def describe(record: Optional[dict]) -> str:
    if record is None:
        return "not reached"
    return (f"step {record['iteration']}, {record['seconds']:.0f} s "
            f"({100 * record['val_accuracy']:.1f} ± {100 * record['val_ci95']:.1f}%)")


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run folders (the first is the baseline)")
    parser.add_argument("--targets", nargs="+", type=float, default=[0.95, 0.97],
                        help="validation accuracies, as fractions (default: 0.95 0.97)")
    args = parser.parse_args(argv)
    if any(not 0 < t <= 1 for t in args.targets):
        parser.error(f"--targets are fractions in (0, 1], got {args.targets}")
    try:
        results = [summary(run, args.targets) for run in args.runs]
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    header = "| run | " + " | ".join(f"first ≥ {100 * t:g}%" for t in args.targets) + " | last validation |"
    print(header)
    print("|---" * (len(args.targets) + 2) + "|")
    for r in results:
        print(f"| {r['run']} | " + " | ".join(describe(r["reached"][t]) for t in args.targets)
              + f" | {describe(r['last'])} |")
    base = results[0]
    for r in results[1:]:
        for t in args.targets:
            a, b = base["reached"][t], r["reached"][t]
            if a and b:
                print(f"to {100 * t:g}%: {r['run']} needs {b['seconds'] / a['seconds']:.2f}× the "
                      f"training seconds of {base['run']} ({a['seconds'] / b['seconds']:.2f}× faster)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
