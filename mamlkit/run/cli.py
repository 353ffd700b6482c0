"""The command line: ``python -m mamlkit train | evaluate | export | data | bench``.

It is one module because the commands share their parser, their input checks and the rule
that every failure is one line and an exit status (see :func:`main`).

Examples::

    python -m mamlkit train --run-dir runs/omniglot_5w1s            # the paper's 5-way 1-shot run
    python -m mamlkit train --run-dir runs/omniglot_5w1s            # again: resumes where it stopped
    python -m mamlkit evaluate assets/omniglot_5w1s.pt --tasks 600  # mean accuracy ± 95% CI
    python -m mamlkit export --run-dir runs/omniglot_5w1s --out assets/omniglot_5w1s.pt
    python -m mamlkit data                                           # where is Omniglot?
    python -m mamlkit data --from ~/Downloads                        # offline: copy the zips in

A mistake in the input or a failing environment (a missing or damaged file, no network, a
folder that cannot be written) ends with one ``error:`` line on stderr and exit status 2 (the
command cannot work as typed) or 1 (the work failed); ``--debug`` or ``MAMLKIT_DEBUG=1`` shows
the traceback too. Any other exception is a bug and shows its traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import difflib
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Optional, Sequence

from mamlkit.errors import CheckpointError, ConfigError, MamlkitError, RunFolderError
from mamlkit.run.config import TrainConfig, changed_settings, schedule_after_resume


def _positive_or(word: str, unit: str, meaning: str):
    """An argparse type: a positive number of ``unit``, or ``word`` for None (which means ``meaning``)."""

    def parse(text: str) -> Optional[int]:
        if text.lower() == word:
            return None
        try:
            number = int(text)
        except ValueError:
            number = 0
        if number < 1:
            raise argparse.ArgumentTypeError(f"expected a positive number of {unit} or '{word}' ({meaning}), "
                                             f"got {text!r}")
        return number

    return parse


# --task-chunk-size and --eval-n-query: a number, or a word for the setting's None.
_chunk = _positive_or("all", "tasks", "all tasks at once")
_queries_or_none = _positive_or("none", "query images per class", "as many as --n-query")


def _bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


class _Flag(argparse.BooleanOptionalAction):
    """``--first-order`` / ``--no-first-order``; ``--first-order true|false`` also works."""

    def __init__(self, option_strings, dest, default=None, help=None, **kwargs):
        super().__init__(option_strings, dest, default=default)
        self.nargs, self.help, self.metavar = "?", help, "true|false"

    def __call__(self, parser, namespace, values, option_string=None):
        if option_string.startswith("--no-"):
            if values is not None:
                parser.error(f"{option_string} takes no value, got {values!r}")
            setattr(namespace, self.dest, False)
            return
        try:
            setattr(namespace, self.dest, True if values is None else _bool(values))
        except argparse.ArgumentTypeError as error:
            parser.error(f"argument {option_string}: {error}")



class _Formatter(argparse.HelpFormatter):
    """Lists a flag as ``--first-order, --no-first-order`` in --help."""

    def _format_action_invocation(self, action):
        if isinstance(action, _Flag):
            return ", ".join(action.option_strings)
        return super()._format_action_invocation(action)


HELP = {
    "n_way": "classes per task (N)",
    "k_shot": "support examples per class (K)",
    "n_query": "query examples per class (the paper uses K, CS330 uses 15)",
    "meta_batch_size": "tasks per outer step (paper: 32 for 5-way, 16 for 20-way)",
    "inner_lr": ("inner-loop step size α on the mean support loss (the MAML reference code's 0.4 for 5-way and 0.1 "
                 "for 20-way act on N × the mean, so both are α = 2.0 here; the default 0.4 is 0.08 in its units)"),
    "inner_steps": "inner steps during meta-training (paper: 1 for 5-way, 5 for 20-way)",
    "eval_inner_steps": "inner steps at validation/test time (paper text: 3; its code: 10)",
    "eval_n_query": "query examples per class at validation/test time, or 'none': as n_query",
    "first_order": "first-order MAML: drop second derivatives",
    "learn_inner_lrs": "learn one inner learning rate per parameter tensor (CS330)",
    "meta_lr": "outer (Adam) learning rate β",
    "meta_lr_schedule": "'constant' or 'cosine' (from meta_lr down to meta_lr_min over the run)",
    "meta_lr_min": "the meta learning rate the cosine schedule ends at",
    "extend_schedule": "resuming a cosine run with other --iterations: 'keep' its schedule (past its end the "
                       "meta-lr stays at meta_lr_min) or 'stretch' the cosine over the new total from the "
                       "resumed step",
    "eval_mode": "validate and test with the model in eval mode (dropout off)",
    "first_order_steps": "make the first this many meta-steps first-order (MAML++'s "
                         "derivative-order annealing)",
    "iterations": "total outer steps (paper: 60000; CS330: 15000)",
    "channels": "filters per conv layer",
    "split": "character split: 'maml' (1100/100/423) or 'vinyals' (1028/172/423)",
    "rotate": "rotate each class by a random multiple of 90° per task, as the MAML code does",
    "seed": "seed of initialisation and task sampling",
    "device": "cpu or cuda",
    "algorithm": "maml, anil (head-only inner loop), metasgd (per-element learned inner rates), "
                 "protonet (prototypes, no inner loop), reptile (θ towards SGD-adapted weights) or "
                 "protomaml (MAML with the head started at the prototypes); --first-order true with "
                 "maml is FOMAML",
    "implementation": "'fast' (all tasks at once) or 'loop' (one task at a time, the reference)",
    "task_chunk_size": "adapt this many tasks at once and accumulate their gradients, or 'all': "
                       "the same update; smaller chunks use less memory",
    "log_every": "write training metrics every this many steps",
    "val_every": "validate every this many steps",
    "val_tasks": "validation tasks per validation",
    "checkpoint_every": "save the run every this many steps",
    "skip_nonfinite": "skip a meta-step whose loss or meta-gradient is inf/nan (θ unchanged) and "
                      "count the skips in the log, instead of stopping the run",
    "init_from": "start θ and learned inner rates from this weights file (a warm start: fresh optimiser, "
                 "schedule and step count; recorded in the run's manifest)",
    "data_root": "folder with images_background.zip and images_evaluation.zip "
                 "(default: $MAMLKIT_DATA, then the user cache, then download)",
}


def add_config_options(parser: argparse.ArgumentParser) -> None:
    """One ``--option`` per :class:`TrainConfig` field, with its default and meaning."""
    for field in dataclasses.fields(TrainConfig):
        flag = "--" + field.name.replace("_", "-")
        default = field.default
        if field.type in ("bool", bool):
            parser.add_argument(flag, action=_Flag, default=default,
                                help=f"{HELP.get(field.name, '')} (default: %(default)s)")
            continue
        if field.name == "extend_schedule":
            parser.add_argument(flag, choices=["keep", "stretch"], default=default,
                                help=f"{HELP[field.name]} (default: refuse)")
            continue
        if field.name == "task_chunk_size":
            kind = _chunk
        elif field.name in ("data_root", "init_from"):
            kind = str
        elif field.name == "eval_n_query":
            kind = _queries_or_none
        else:
            kind = type(default)
        parser.add_argument(flag, type=kind, default=default, metavar=field.name.upper(),
                            help=f"{HELP.get(field.name, '')} (default: %(default)s)")


def build_parser(preset: Optional[str] = None) -> argparse.ArgumentParser:
    """The parser; with ``preset`` (mamlkit.run.presets), ``train``'s defaults are that preset's."""
    # No abbreviations: `--iter` is a typo to report, not a guess at --iterations.
    parser = argparse.ArgumentParser(prog="python -m mamlkit", description="MAML on Omniglot.",
                                     allow_abbrev=False)
    parser.add_argument("--debug", action="store_true", help=DEBUG_HELP)
    commands = parser.add_subparsers(dest="command", required=True)
    common = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=DEBUG_HELP)

    train = commands.add_parser("train", parents=[common], formatter_class=_Formatter, allow_abbrev=False,
                                help="meta-train (resumes if the run folder has a checkpoint)")
    train.add_argument("--run-dir", required=True, help="folder for checkpoint, metrics and plots")
    train.add_argument("--export", help="also copy the final weights to this file (e.g. assets/x.pt)")
    train.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_config_options(train)
    from mamlkit.run.presets import PRESETS
    from mamlkit.run.presets import preset as preset_values
    train.add_argument("--preset", choices=sorted(PRESETS), default=None,
                       help="start from named settings (mamlkit.run.presets; 'fast': 97%% in minutes on "
                            "a CPU); options given here override them")
    if preset is not None:
        train.set_defaults(**preset_values(preset))

    evaluate = commands.add_parser("evaluate", parents=[common], allow_abbrev=False,
                                   help="mean accuracy ± 95%% CI on new tasks (Omniglot Conv4 files "
                                        "made by train or export)")
    evaluate.add_argument("checkpoint", help="a weights file (model.pt) or a run's checkpoint.pt")
    evaluate.add_argument("--split", default="test", choices=["train", "val", "test"],
                          help="train, val or test (default: test)")
    evaluate.add_argument("--tasks", type=int, default=600, help="number of tasks (default: 600)")
    evaluate.add_argument("--inner-steps", type=int, default=None,
                          help="inner steps at test time (default: the run's eval_inner_steps)")
    evaluate.add_argument("--seed", type=int, default=0, help="seed of the test tasks (default: 0)")
    evaluate.add_argument("--n-query", type=int, default=None,
                          help="query images per class (default: the run's evaluation setting, "
                               "eval_n_query, else its n_query); with the transductive protocol "
                               "the accuracy depends on it")
    evaluate.add_argument("--protocol", default="transductive", choices=["transductive", "support-stats"],
                          help="batch norm of the query images: their own statistics (transductive, the "
                               "paper's) or the support set's (support-stats) (default: transductive)")
    evaluate.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default: cpu)")
    evaluate.add_argument("--data-root", default=None, help=HELP["data_root"])
    evaluate.add_argument("--json", help="also write the result to this JSON file")

    export = commands.add_parser("export", parents=[common], allow_abbrev=False, help="publish a run: weights, metrics and a manifest "
                                                "with its measured test accuracy")
    export.add_argument("--run-dir", required=True, help="the run folder (its checkpoint.pt)")
    export.add_argument("--out", required=True, help="weights file to write, e.g. assets/omniglot_5w1s.pt")
    export.add_argument("--tasks", type=int, default=600, help="test tasks (default: 600)")
    export.add_argument("--seed", type=int, default=0, help="seed of the test tasks (default: 0)")
    export.add_argument("--data-root", default=None, help=HELP["data_root"])
    export.add_argument("--note", default=None, help="how the run was made, e.g. the training conditions")

    data = commands.add_parser("data", parents=[common], allow_abbrev=False,
                               help="where the course looks for Omniglot and what it finds; "
                                    "--download or --from FOLDER puts the zips in the cache")
    source = data.add_mutually_exclusive_group()
    source.add_argument("--download", action="store_true",
                        help="download the zips the cache lacks (md5-checked) and check them")
    source.add_argument("--from", dest="from_folder", metavar="FOLDER",
                        help="check images_background.zip and images_evaluation.zip in FOLDER "
                             "and copy them into the cache (for machines without network)")
    data.add_argument("--data-root", default=None, help="also show this folder, as train/evaluate would use it")
    data.add_argument("--no-progress", action="store_true", help="no progress bar")

    # ``bench`` hands all its arguments to benchmarks/bench.py (see run_benchmark); listed here for --help.
    commands.add_parser("bench", help="time one meta-step against other implementations "
                                      "(python -m mamlkit bench --help)", add_help=False)
    parser.commands = {"train": train, "evaluate": evaluate, "export": export, "data": data}
    return parser


def parse(parser: argparse.ArgumentParser, argv: Sequence[str]) -> argparse.Namespace:
    """``parser.parse_args(argv)``, with an unknown option reported by its command's own parser.

    argparse reports the options a command does not know with the top-level usage; here the
    command's usage says which options it has, and a close match is suggested.
    """
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        command = parser.commands[args.command]
        known = [s for action in command._actions for s in action.option_strings if s.startswith("--")]
        hints = []
        for word in unknown:
            if word.startswith("-"):
                close = difflib.get_close_matches(word.split("=", 1)[0], known, n=1, cutoff=0.6)
                hints += [f"did you mean {close[0]}?"] if close else []
        command.error(f"unrecognized arguments: {' '.join(unknown)}"
                      + (f" ({'; '.join(hints)})" if hints else ""))
    return args


DEBUG_HELP = "on an error, show the traceback too (or set MAMLKIT_DEBUG=1)"


def usable_run_folder(path: str | os.PathLike) -> Path:
    """Create ``path`` if needed and check that files can be written in it.

    Raises:
        ConfigError: ``path`` (or a folder above it) is a file.
        RunFolderError: the folder cannot be created or written (read-only, no permission).
    """
    path = Path(path)
    above = next((p for p in (path, *path.parents) if p.exists()), None)
    if above is not None and not above.is_dir():
        where = "is a file" if above == path else f"is inside {above}, which is a file"
        raise ConfigError(f"the run folder {path} {where}, not a folder: give --run-dir a folder "
                          "(it is created if needed)")
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as error:
        raise RunFolderError(f"cannot write in the run folder {path} ({error.strerror or error}): "
                             "give --run-dir a folder you can write") from error
    return path


def writable_file(path: str | os.PathLike, option: str, example: str = "result.json") -> Path:
    """Check, before any work, that the output file ``path`` can be created (folders and all).

    The missing folders and a scratch file are created and removed again: permissions alone
    do not tell (``/proc``, a read-only mount, or running as root).

    Raises:
        ConfigError: ``path`` is a folder (the message suggests ``path/example``), or a folder
            above it is a file.
        RunFolderError: its folder cannot be created or written.
    """
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{option} {path} is a folder; give a file name, e.g. {path / example}")
    above = next(p for p in path.absolute().parents if p.exists())
    if not above.is_dir():
        raise ConfigError(f"{option} {path}: {above} is a file, not a folder")
    folder = path.absolute().parent
    created = [p for p in path.absolute().parents if not p.exists()]  # deepest first
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as error:
        raise RunFolderError(f"{option} {path}: cannot write in {folder} ({error.strerror or error}); "
                             f"give {option} a file in a folder you can write") from error
    finally:
        for made in created:
            with contextlib.suppress(OSError):
                made.rmdir()
    return path


def check_resume(config: TrainConfig, run_folder: Path) -> None:
    """Before any data is loaded: a checkpoint in the run folder must be readable and match.

    The trainer checks the same when it resumes; checking here first answers in a second,
    without loading or downloading data.
    """
    from mamlkit.run import checkpoints

    path = run_folder / "checkpoint.pt"
    if not path.exists():
        return
    # The same list of settings free to change (train.RESUMABLE_SETTINGS) as Trainer.load_state.
    state = checkpoints.load(path)
    changed = changed_settings(state["config"], config)
    if not changed:
        schedule_after_resume(state, config)  # a cosine run made longer: keep or stretch, said here
    if changed:
        raise ConfigError(
            f"cannot resume {run_folder}: its checkpoint was made with different settings: "
            + ", ".join(f"{k}={old!r} (now {new!r})" for k, (old, new) in changed.items())
            + ". Give the same settings to continue it, or another --run-dir to start a new run"
        )


def cmd_train(args: argparse.Namespace) -> int:
    from mamlkit.data.omniglot import check_task_settings
    from mamlkit.run import distributed
    from mamlkit.run.train import Trainer

    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)}
    config = TrainConfig(**values)
    # Everything that can be checked without data, before anything is loaded or downloaded.
    config.validate()
    check_task_settings(config.n_way, config.k_shot, config.n_query, config.split)
    if config.eval_n_query is not None:
        try:
            check_task_settings(config.n_way, config.k_shot, config.eval_n_query, config.split)
        except ValueError as error:
            raise ConfigError(f"--eval-n-query {config.eval_n_query} (validation and test tasks): "
                              f"{error}") from error
    run_folder = usable_run_folder(args.run_dir)
    check_resume(config, run_folder)
    if args.export:
        writable_file(args.export, "--export", example="model.pt")
    # Started by torchrun: join the other processes (gloo on CPU, NCCL with --device cuda).
    distributed.init_from_env(config.device)
    try:
        # Fewer tasks than processes is a setting error: say so before any data is loaded.
        distributed.shard(config.meta_batch_size, distributed.rank(), distributed.world_size())
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
            print(f"weights: {trainer.model_path}")  # written by trainer.train()
            if args.export:
                print(f"exported: {trainer.export(args.export)}")
    finally:
        distributed.shutdown()
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from mamlkit.run.saved_models import evaluate_checkpoint

    if args.json:
        writable_file(args.json, "--json")

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
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(summary, indent=2) + "\n")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from mamlkit.run.publish import export_run

    for name in ("checkpoint.pt", "metrics.jsonl"):
        if not (Path(args.run_dir) / name).is_file():
            raise CheckpointError(f"{args.run_dir} is not a finished run folder: it has no {name} "
                                  "(`python -m mamlkit train --run-dir ...` writes both)")
    writable_file(args.out, "--out", example="model.pt")

    manifest = export_run(args.run_dir, args.out, num_tasks=args.tasks, test_seed=args.seed,
                          data_root=args.data_root, note=args.note)
    print(json.dumps(manifest, indent=2))
    return 0


def cmd_data(args: argparse.Namespace) -> int:
    from mamlkit.data import omniglot

    if args.download:
        folder = omniglot.download_omniglot(progress=not args.no_progress)
        print(f"Omniglot is in {folder}: both zips present and checked")
    elif args.from_folder:
        folder = omniglot.copy_omniglot_from(args.from_folder)
        print(f"checked and copied the two zips from {args.from_folder} into {folder}")
    places = omniglot.where_omniglot(args.data_root)
    print("Where the course looks for Omniglot, in order:")
    used = None
    for number, place in enumerate(places, start=1):
        absent = "not set" if place.label.startswith("$") else "not given"
        print(f"  {number}. {place.label}: {place.folder if place.folder else absent}")
        if place.folder is None:
            continue
        if not place.folder.is_dir():
            print("       " + ("is a file, not a folder" if place.folder.exists() else "does not exist"))
        for name, found in place.found.items():
            print(f"       {name}: {found}")
        if used is None:
            used = place  # the first place given is used, complete or not (as find_omniglot does)
    cache = places[-1].folder / omniglot.CACHE_FILE
    print(f"  preprocessed 28x28 images: {cache} "
          + (f"({cache.stat().st_size / 1e6:.0f} MB)" if cache.is_file() else "(not built yet)"))
    if used.complete:
        print(f"Ready: mamlkit uses {used.folder} ({used.label}).")
        return 0
    if used is places[-1] and omniglot.load_cached_omniglot(used.folder) is not None:
        print(f"Ready: mamlkit uses the preprocessed images in {cache}; the zips are needed only "
              "to build them again.")
        return 0
    if used is places[-1]:
        print(f"Not there yet: the first load downloads the zips ({omniglot.DOWNLOAD_SIZE}) into {used.folder} "
              "from\n  " + "\n  ".join(omniglot.OMNIGLOT_URLS.values()) + "\nWithout network: "
              "`python -m mamlkit data --from FOLDER` with a folder holding the two zips, or set "
              "MAMLKIT_DATA to such a folder.")
    else:
        print(f"Not usable: {used.folder} ({used.label}) lacks the zips; put them there, or "
              "unset it to use the cache folder.")
    return 1


COMMANDS = {"train": cmd_train, "evaluate": cmd_evaluate, "export": cmd_export, "data": cmd_data}


def debug_from_env() -> bool:
    return os.environ.get("MAMLKIT_DEBUG", "").strip().lower() not in ("", "0", "false", "no")


def preset_named_in(argv: Sequence[str]) -> Optional[str]:
    """The known preset that ``argv`` asks for (``--preset NAME`` or ``--preset=NAME``), else None.

    An unknown name gives None here, and argparse's error with the choices when parsed.
    """
    from mamlkit.run.presets import PRESETS

    for i, arg in enumerate(argv):
        if arg == "--preset" and i + 1 < len(argv):
            name = argv[i + 1]
        elif arg.startswith("--preset="):
            name = arg.partition("=")[2]
        else:
            continue
        return name if name in PRESETS else None
    return None


def run_benchmark(argv: list[str]) -> int:
    """``python -m mamlkit bench ...``: the repository's ``benchmarks/bench.py`` with these arguments.

    The benchmark is a script of the repository, not part of the package; it needs a checkout.
    """
    import runpy

    script = Path(__file__).resolve().parents[2] / "benchmarks" / "bench.py"
    if not script.is_file():
        print(f"error: the benchmark is the script benchmarks/bench.py of the course repository, and "
              f"{script} does not exist; run it from a checkout: python benchmarks/bench.py", file=sys.stderr)
        return 2
    sys.path.insert(0, str(script.parent))  # its helpers are imported by the other benchmarks too
    try:
        return runpy.run_path(str(script))["main"](argv)
    finally:
        sys.path.remove(str(script.parent))


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run one command; return its exit status (0 ok, 1 the work failed, 2 bad input, 130 Ctrl-C)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["bench"]:
        return run_benchmark(argv[1:])
    # With --preset NAME, the preset's values are train's defaults (in --help too).
    args = parse(build_parser(preset_named_in(argv)), argv)
    debug = getattr(args, "debug", False) or debug_from_env()
    try:
        return COMMANDS[args.command](args)
    except KeyboardInterrupt:
        if debug:
            raise
        print("interrupted: nothing half-written was kept", file=sys.stderr)
        return 130
    except MamlkitError as error:
        if debug:
            raise
        print(f"error: {error}", file=sys.stderr)
        return error.exit_status
    except ValueError as error:  # the library's checks of its arguments: the input is wrong
        if debug:
            raise
        print(f"error: {error}", file=sys.stderr)
        return 2
    except FloatingPointError as error:  # a step refused because its loss or gradient was not finite
        if debug:
            raise
        print(f"error: {error}", file=sys.stderr)
        return 1
    except OSError as error:  # the environment: a file or folder that cannot be read or written
        if debug:
            raise
        where = f" ({error.filename})" if error.filename else ""
        print(f"error: {error.strerror or error}{where}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
