"""Every grading route on the same submissions: the points each one gives, side by side.

``python -m mamlkit.classroom.routes WORK`` builds the student edition into ``WORK`` and from
it the submissions an instructor meets: *untouched* (the edition as handed out), *solved*
(every reference solution in), *alone X* (only exercise X solved, for every X) and
*mistake 2.1* (everything solved, then ``create_graph`` left out of the inner loop). It then
grades each one through the real commands, in this order (the cheap ones first):

- ``check``: ``python -m mamlkit.classroom check X --root SUB`` for every exercise; the
  verdict of its first line (✓, ✗, or *waiting* for the exercises a test stops at);
- ``grade``: ``python -m mamlkit.classroom grade --root SUB --reference SRC --json ...``;
- ``gradescope``: the autograder zip (``python -m mamlkit.classroom gradescope``) unpacked into
  a stand-in for ``/autograder`` and its ``run_autograder`` run on the submission;
- ``nbgrader``: real ``nbgrader generate_assignment`` and ``autograde`` of the same submissions
  (:mod:`.nbgrader_run`, nbgrader from ``.venv-nbgrader``), in smoke mode;
- ``grade-checkpoint``: the trained-model target on checkpoint files: the shipped 5-way 1-shot
  weights, the same file with its ``config`` tampered, a first-order checkpoint, the untrained
  network, a 5-way 5-shot checkpoint and a 20-way one.

Every result goes to ``WORK/routes.jsonl`` as it arrives (an interrupted run keeps what it had),
and the table of points is printed at the end (``--table-only`` prints it from the file).
The points every route should give: untouched 0, solved full marks, *alone X* exactly X's
points, *mistake 2.1* everything but 2.1 and the exercises whose tests run the inner loop
through it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

from .exercises import EXERCISES

ROUTES = ("check", "grade", "gradescope", "nbgrader", "grade-checkpoint")
GRADED = tuple(e for e in EXERCISES if e.module is not None)


def _submissions() -> dict[str, tuple[tuple[str, ...], str | None]]:
    """``{name: (exercises solved, classic mistake)}``, in the table's order."""
    subs: dict[str, tuple[tuple[str, ...], str | None]] = {"untouched": ((), None)}
    subs["solved"] = (tuple(e.id for e in EXERCISES), None)
    for exercise in EXERCISES:
        subs[f"alone {exercise.id}"] = ((exercise.id,), None)
    subs["mistake 2.1"] = (tuple(e.id for e in EXERCISES), "no_create_graph")
    return subs


def _record(work: Path, **entry) -> None:
    with open(work / "routes.jsonl", "a", encoding="utf-8") as log:
        log.write(json.dumps(entry, ensure_ascii=False) + "\n")


def _run(cmd: list[str], *, cwd: Path, env: dict[str, str], timeout: float = 3600) -> tuple[int, str, float]:
    start = time.monotonic()
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    return done.returncode, done.stdout + done.stderr, time.monotonic() - start


def make_submissions(src: Path, work: Path) -> dict[str, Path]:
    """The student edition of ``src`` and one folder per submission under ``work/submissions``."""
    from .nbgrader_run import make_mistake
    from .student import build_student_edition
    from .walk import solve_exercises

    edition = work / "student"
    if not edition.exists():
        build_student_edition(src, edition)
    folders = {}
    for name, (solved, mistake) in _submissions().items():
        folder = work / "submissions" / name.replace(" ", "_")
        if not folder.exists():
            shutil.copytree(edition, folder)
            if solved:
                solve_exercises(folder, solved, src)
            if mistake:
                make_mistake(folder, mistake)
        folders[name] = folder
    return folders


def route_check(src: Path, work: Path, subs: dict[str, Path], env: dict[str, str]) -> None:
    for name, folder in subs.items():
        for exercise in EXERCISES:
            cmd = [sys.executable, "-m", "mamlkit.classroom", "check", exercise.id, "--root", str(folder)]
            code, out, seconds = _run(cmd, cwd=folder, env=env)
            first = next((line for line in out.splitlines() if line.startswith(("✓", "✗", "…", "⏳", "waiting"))),
                         out.strip().splitlines()[0] if out.strip() else f"exit {code}")
            _record(work, route="check", submission=name, exercise=exercise.id, verdict=first, exit=code,
                    seconds=round(seconds, 1), command=" ".join(cmd[1:]))


def route_grade(src: Path, work: Path, subs: dict[str, Path], env: dict[str, str]) -> None:
    for name, folder in subs.items():
        out_json = work / "grade" / f"{folder.name}.json"
        cmd = [sys.executable, "-m", "mamlkit.classroom", "grade", "--root", str(folder), "--reference", str(src),
               "--json", str(out_json)]
        code, out, seconds = _run(cmd, cwd=src, env=env)
        points = {}
        if out_json.is_file():
            report = json.loads(out_json.read_text(encoding="utf-8"))
            points = {e["id"]: e["points_earned"] for e in report["exercises"]}
        _record(work, route="grade", submission=name, points=points, exit=code, seconds=round(seconds, 1),
                command=" ".join(cmd[1:]), tail=out[-400:] if not points else "")


def route_gradescope(src: Path, work: Path, subs: dict[str, Path], env: dict[str, str]) -> None:
    zip_path = work / "autograder.zip"
    code, out, _ = _run([sys.executable, "-m", "mamlkit.classroom", "gradescope", str(zip_path)], cwd=src, env=env)
    if code != 0:
        _record(work, route="gradescope", submission="*", points={}, exit=code, tail=out[-400:])
        return
    for name, folder in subs.items():
        root = work / "autograder" / folder.name
        if root.exists():
            shutil.rmtree(root)
        with zipfile.ZipFile(zip_path) as zf:
            zf.extractall(root / "source")
        (root / "source" / "run_autograder").chmod(0o755)
        shutil.copytree(folder, root / "submission", ignore=shutil.ignore_patterns(".git"))
        run_env = {**env, "AUTOGRADER_ROOT": str(root), "PYTHONPATH": str(root / "source")}
        code, out, seconds = _run(["bash", str(root / "source" / "run_autograder")], cwd=root, env=run_env)
        results_path = root / "results" / "results.json"
        points, first_output = {}, ""
        if results_path.is_file():
            results = json.loads(results_path.read_text(encoding="utf-8"))
            for test in results.get("tests", []):
                exercise_id = test["name"].split(":")[0].removeprefix("Exercise ")
                points[exercise_id] = test["score"]
                if exercise_id == "2.1":
                    first_output = test.get("output", "").splitlines()[0] if test.get("output") else ""
        _record(work, route="gradescope", submission=name, points=points, exit=code, seconds=round(seconds, 1),
                first_line_2_1=first_output, command="run_autograder (AUTOGRADER_ROOT=...)",
                tail=out[-400:] if not points else "")


def route_nbgrader(src: Path, work: Path, subs: dict[str, Path], env: dict[str, str]) -> None:
    from .nbgrader import grade_id
    from .nbgrader_run import NbgraderRun, find_nbgrader

    nbgrader = find_nbgrader(src)
    if nbgrader is None:
        _record(work, route="nbgrader", submission="*", points={}, exit=None, tail="nbgrader is not installed")
        return
    folder = work / "nbgrader"
    if folder.exists():
        shutil.rmtree(folder)
    run = NbgraderRun(src, folder, nbgrader, env={**env, "CI": "true", "MAMLKIT_SMOKE": "1"})
    start = time.monotonic()
    run.release()
    for name, (solved, mistake) in _submissions().items():
        run.submit(name.replace(" ", "_"), solved, mistake)
    run.autograde()
    scores = run.scores()
    by_grade_id = {grade_id(e): e.id for e in EXERCISES}
    for name in _submissions():
        grades = scores.get(name.replace(" ", "_"), {})
        _record(work, route="nbgrader", submission=name,
                points={by_grade_id.get(k, k): v for k, v in grades.items()}, exit=0,
                seconds=round((time.monotonic() - start) / len(scores), 1),
                command="python -m mamlkit.classroom.nbgrader_run WORK --submission NAME=IDS[:MISTAKE]")


def route_grade_checkpoint(src: Path, work: Path, env: dict[str, str], tasks: int) -> None:
    import torch

    from ..functional import get_params
    from ..models import Conv4

    files = work / "checkpoints"
    files.mkdir(parents=True, exist_ok=True)
    shipped = src / "assets" / "omniglot_5w1s.pt"
    state = torch.load(shipped, weights_only=True)
    tampered = {**state, "config": {**state["config"], "k_shot": 5, "n_query": 5, "eval_inner_steps": 10}}
    torch.save(tampered, files / "tampered_config.pt")
    torch.manual_seed(0)
    fresh = {name: p.detach().clone() for name, p in get_params(Conv4(n_way=5)).items()}
    assert fresh.keys() == state["params"].keys(), "the shipped file's parameter names are not Conv4's"
    untrained = {**state, "params": fresh, "iteration": 0}
    torch.save(untrained, files / "untrained.pt")
    cases = {
        "solved (shipped 5-way 1-shot)": shipped,
        "same file, config tampered (k_shot 5, 10 steps)": files / "tampered_config.pt",
        "first-order MAML weights": src / "assets" / "omniglot_5w1s_fomaml.pt",
        "untouched (untrained network)": files / "untrained.pt",
        "5-way 5-shot weights": src / "assets" / "omniglot_5w5s.pt",
        "20-way 1-shot weights": src / "assets" / "omniglot_20w1s.pt",
    }
    for name, path in cases.items():
        out_json = files / (path.stem + ".json")
        cmd = [sys.executable, "-m", "mamlkit.classroom", "grade-checkpoint", str(path), "--tasks", str(tasks),
               "--json", str(out_json)]
        code, out, seconds = _run(cmd, cwd=src, env=env)
        result = json.loads(out_json.read_text(encoding="utf-8")) if out_json.is_file() else {}
        _record(work, route="grade-checkpoint", submission=name, points=result.get("points"),
                accuracy=result.get("accuracy"), message=result.get("message", out.strip()[-300:]), exit=code,
                seconds=round(seconds, 1), command=" ".join(cmd[1:]))


def _expected(submission: str) -> dict[str, float]:
    solved, mistake = _submissions()[submission]
    points = {e.id: (e.points if e.id in solved else 0) for e in GRADED}
    if mistake:
        points["2.1"] = 0
    return points


def table(work: Path) -> str:
    """Markdown: per submission, each route's total (and the exercises that differ from the expected)."""
    entries = [json.loads(line) for line in (work / "routes.jsonl").read_text(encoding="utf-8").splitlines()
               if line.strip()]
    maximum = sum(e.points for e in GRADED)
    lines = [f"| submission | expected | {' | '.join(r for r in ROUTES if r != 'grade-checkpoint')} |",
             "|---" * 5 + "|---|"]
    for name in _submissions():
        expected = _expected(name)
        cells = []
        for route in ("check", "grade", "gradescope", "nbgrader"):
            found = [e for e in entries if e["route"] == route and e["submission"] == name]
            if not found:
                cells.append("not run")
            elif route == "check":
                ticks = [e["exercise"] for e in found if e["verdict"].startswith("✓")]
                waits = [e["exercise"] for e in found if e["verdict"].startswith("…")]
                cells.append("✓ " + (", ".join(ticks) if ticks else "none")
                             + (f"; waiting: {', '.join(waits)}" if waits else ""))
            else:
                points = found[-1]["points"]
                total = sum(v for v in points.values() if v is not None)
                off = [f"{k}: {points.get(k)} ≠ {v}" for k, v in expected.items() if points.get(k) != v]
                cells.append(f"{total:g}/{maximum}" + (f" ({'; '.join(off)})" if off else ""))
        lines.append(f"| {name} | {sum(expected.values()):g}/{maximum} | " + " | ".join(cells) + " |")
    checkpoints = [e for e in entries if e["route"] == "grade-checkpoint"]
    if checkpoints:
        lines += ["", "| checkpoint file | points | accuracy | exit |", "|---|---|---|---|"]
        for e in checkpoints:
            accuracy = "—" if e["accuracy"] is None else f"{100 * e['accuracy']:.1f}%"
            lines.append(f"| {e['submission']} | {e['points']}/10 | {accuracy} | {e['exit']} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("work", type=Path, help="a folder for the edition, the submissions and the results")
    parser.add_argument("--src", type=Path, default=Path.cwd(), help="the instructor edition (default: .)")
    parser.add_argument("--route", action="append", choices=ROUTES, default=None,
                        help="only this route (repeatable; default: all, cheapest first)")
    parser.add_argument("--checkpoint-tasks", type=int, default=200,
                        help="validation tasks for grade-checkpoint (default: its own 200)")
    parser.add_argument("--table-only", action="store_true", help="print the table of WORK/routes.jsonl and stop")
    args = parser.parse_args(argv)
    work, src = args.work.resolve(), args.src.resolve()
    if args.table_only:
        print(table(work))
        return 0
    work.mkdir(parents=True, exist_ok=True)
    # PYTHONPATH is left out: a kernel or grader that inherits it may import another checkout's
    # mamlkit instead of the submission's, which the edition's guard refuses (every route would
    # then read 0 for reasons that have nothing to do with the submission).
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["OMP_NUM_THREADS"] = os.environ.get("OMP_NUM_THREADS", "1")
    subs = make_submissions(src, work)
    for route in args.route or ROUTES:
        print(f"route {route} ...", flush=True)
        if route == "check":
            route_check(src, work, subs, env)
        elif route == "grade":
            route_grade(src, work, subs, env)
        elif route == "gradescope":
            route_gradescope(src, work, subs, env)
        elif route == "nbgrader":
            route_nbgrader(src, work, subs, env)
        else:
            route_grade_checkpoint(src, work, env, args.checkpoint_tasks)
    print(table(work))
    return 0


if __name__ == "__main__":
    sys.exit(main())
