"""The command line: ``python -m mamlkit train | evaluate | bench``.

Examples::

    python -m mamlkit train --run-dir runs/omniglot_5w1s            # the paper's 5-way 1-shot run
    python -m mamlkit train --run-dir runs/omniglot_5w1s            # again: resumes where it stopped
    python -m mamlkit evaluate assets/omniglot_5w1s.pt --tasks 600  # mean accuracy ± 95% CI
    python -m mamlkit export --run-dir runs/omniglot_5w1s --out assets/omniglot_5w1s.pt
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Optional, Sequence

from mamlkit.train import TrainConfig


def _chunk(text: str) -> Optional[int]:
    if text.lower() == "all":
        return None
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of tasks or 'all', got {text!r}") from None


def _bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


HELP = {
    "n_way": "classes per task (N)",
    "k_shot": "support examples per class (K)",
    "n_query": "query examples per class (the paper uses K, CS330 uses 15)",
    "meta_batch_size": "tasks per outer step (paper: 32 for 5-way, 16 for 20-way)",
    "inner_lr": "inner-loop step size α (paper: 0.4 for 5-way, 0.1 for 20-way)",
    "inner_steps": "inner steps during meta-training (paper: 1 for 5-way, 5 for 20-way)",
    "eval_inner_steps": "inner steps at validation/test time (paper text: 3; its code: 10)",
    "first_order": "first-order MAML: drop second derivatives",
    "learn_inner_lrs": "learn one inner learning rate per parameter tensor (CS330)",
    "meta_lr": "outer (Adam) learning rate β",
    "meta_lr_schedule": "'constant' or 'cosine' (from meta_lr down to meta_lr_min over the run)",
    "meta_lr_min": "the meta learning rate the cosine schedule ends at",
    "first_order_steps": "make the first this many meta-steps first-order (MAML++'s "
                         "derivative-order annealing)",
    "iterations": "total outer steps (paper: 60000; CS330: 15000)",
    "channels": "filters per conv layer",
    "split": "character split: 'maml' (1100/100/423) or 'vinyals' (1028/172/423)",
    "rotate": "rotate each class by a random multiple of 90° per task, as the MAML code does",
    "seed": "seed of initialisation and task sampling",
    "device": "cpu or cuda",
    "algorithm": "maml, anil (head-only inner loop), metasgd (per-element learned inner rates) "
                 "or protonet (prototypes, no inner loop); --first-order true with maml is FOMAML",
    "implementation": "'fast' (all tasks at once) or 'loop' (one task at a time, the reference)",
    "task_chunk_size": "adapt this many tasks at once and accumulate their gradients, or 'all': "
                       "the same update; smaller chunks use less memory",
    "log_every": "write training metrics every this many steps",
    "val_every": "validate every this many steps",
    "val_tasks": "validation tasks per validation",
    "checkpoint_every": "save the run every this many steps",
    "data_root": "folder with images_background.zip and images_evaluation.zip "
                 "(default: $MAMLKIT_DATA, then the user cache, then download)",
}


def add_config_options(parser: argparse.ArgumentParser) -> None:
    """One ``--option`` per :class:`TrainConfig` field, with its default and meaning."""
    for field in dataclasses.fields(TrainConfig):
        flag = "--" + field.name.replace("_", "-")
        default = field.default
        if field.type in ("bool", bool):
            kind = _bool
        elif field.name == "task_chunk_size":
            kind = _chunk
        elif field.name == "data_root":
            kind = str
        else:
            kind = type(default)
        parser.add_argument(flag, type=kind, default=default, metavar=field.name.upper(),
                            help=f"{HELP.get(field.name, '')} (default: {default})")


def build_parser(preset: Optional[str] = None) -> argparse.ArgumentParser:
    """The parser; with ``preset`` (mamlkit.presets), ``train``'s defaults are that preset's."""
    parser = argparse.ArgumentParser(prog="python -m mamlkit", description="MAML on Omniglot.")
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="meta-train (resumes if the run folder has a checkpoint)")
    train.add_argument("--run-dir", required=True, help="folder for checkpoint, metrics and plots")
    train.add_argument("--export", help="also copy the final weights to this file (e.g. assets/x.pt)")
    train.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_config_options(train)
    from mamlkit.presets import PRESETS, preset as preset_values
    train.add_argument("--preset", choices=sorted(PRESETS), default=None,
                       help="start from named settings (mamlkit.presets; 'fast': 97%% in minutes on "
                            "a CPU); options given here override them")
    if preset is not None:
        train.set_defaults(**preset_values(preset))

    evaluate = commands.add_parser("evaluate", help="mean accuracy ± 95%% CI on new tasks")
    evaluate.add_argument("checkpoint", help="a weights file (model.pt) or a run's checkpoint.pt")
    evaluate.add_argument("--split", default="test", help="train, val or test (default: test)")
    evaluate.add_argument("--tasks", type=int, default=600, help="number of tasks (default: 600)")
    evaluate.add_argument("--inner-steps", type=int, default=None,
                          help="inner steps at test time (default: the run's eval_inner_steps)")
    evaluate.add_argument("--seed", type=int, default=0, help="seed of the test tasks")
    evaluate.add_argument("--n-query", type=int, default=None,
                          help="query images per class (default: the run's); with the transductive "
                               "protocol the accuracy depends on it")
    evaluate.add_argument("--protocol", default="transductive", choices=["transductive", "support-stats"],
                          help="batch norm of the query images: their own statistics (transductive, the "
                               "paper's) or the support set's (support-stats) (default: transductive)")
    evaluate.add_argument("--device", default="cpu")
    evaluate.add_argument("--data-root", default=None)
    evaluate.add_argument("--json", help="also write the result to this JSON file")

    export = commands.add_parser("export", help="publish a run: weights, metrics and a manifest "
                                                "with its measured test accuracy")
    export.add_argument("--run-dir", required=True, help="the run folder (its checkpoint.pt)")
    export.add_argument("--out", required=True, help="weights file to write, e.g. assets/omniglot_5w1s.pt")
    export.add_argument("--tasks", type=int, default=600, help="test tasks (default: 600)")
    export.add_argument("--seed", type=int, default=0, help="seed of the test tasks")
    export.add_argument("--data-root", default=None)
    export.add_argument("--note", default=None, help="how the run was made, e.g. the training conditions")

    # ``bench`` hands all its arguments to mamlkit.bench (see main); listed here for --help.
    commands.add_parser("bench", help="time one meta-step against other implementations "
                                      "(python -m mamlkit bench --help)", add_help=False)
    return parser


def cmd_train(args: argparse.Namespace) -> int:
    from mamlkit import distributed
    from mamlkit.train import Trainer

    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)}
    config = TrainConfig(**values)
    # Started by torchrun: join the other processes (gloo on CPU, NCCL with --device cuda).
    distributed.init_from_env(config.device)
    try:
        trainer = Trainer(config, args.run_dir)
        say = print if distributed.is_main_process() else (lambda *_: None)
        if distributed.world_size() > 1:
            say(f"{distributed.world_size()} processes share each meta-batch of {config.meta_batch_size} tasks")
        if trainer.resume_if_possible():
            say(f"resuming {args.run_dir} at step {trainer.iteration} of {config.iterations}")
        try:
            trainer.train(progress=not args.no_progress)
        except KeyboardInterrupt:
            return 130
        if distributed.is_main_process():
            path = trainer.export(Path(args.run_dir) / "model.pt")
            print(f"weights: {path}")
            if args.export:
                print(f"exported: {trainer.export(args.export)}")
    finally:
        distributed.shutdown()
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from mamlkit.train import evaluate_checkpoint

    result = evaluate_checkpoint(args.checkpoint, split=args.split, num_tasks=args.tasks,
                                 inner_steps=args.inner_steps, seed=args.seed,
                                 device=args.device, data_root=args.data_root,
                                 n_query=args.n_query, protocol=args.protocol)
    steps = len(result["per_step_mean"]) - 1
    print(f"{result['num_tasks']} {args.split} tasks, {steps} inner steps, {args.protocol}: "
          f"accuracy {100 * result['mean']:.2f} ± {100 * result['ci95']:.2f}% (95% CI)")
    print("after 0..{} steps: {}".format(steps, " ".join(f"{100 * m:.1f}" for m in result["per_step_mean"])))
    if args.json:
        summary = {k: v for k, v in result.items() if k != "per_task"}
        Path(args.json).write_text(json.dumps(summary, indent=2) + "\n")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from mamlkit.publish import export_run

    manifest = export_run(args.run_dir, args.out, num_tasks=args.tasks, test_seed=args.seed,
                          data_root=args.data_root, note=args.note)
    print(json.dumps(manifest, indent=2))
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["bench"]:
        from mamlkit.bench import main as bench_main

        return bench_main(argv[1:])
    args = build_parser().parse_args(argv)
    if getattr(args, "preset", None):  # again, with the preset's values as the defaults
        args = build_parser(args.preset).parse_args(argv)
    try:
        if args.command == "train":
            return cmd_train(args)
        if args.command == "export":
            return cmd_export(args)
        return cmd_evaluate(args)
    except (ValueError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
