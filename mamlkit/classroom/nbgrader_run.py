"""Run real nbgrader on the course folder: release, submissions, autograde, the points per cell.

Used by ``tests/test_nbgrader.py`` and by hand (``python -m mamlkit.classroom.nbgrader_run``):
nbgrader lives in a virtual environment of its own (``.ci/run`` makes ``.venv-nbgrader``), so the
course's requirements stay as they are. Its ``autograde`` runs the notebooks with a kernel of
*this* Python, which has the course's requirements: a kernelspec named ``python3`` (the name the
notebooks ask for) in a folder of its own on ``JUPYTER_PATH``.

A submission is the released assignment folder with some exercises solved (the reference
solution written into the learner's modules, as :func:`.walk.solve_exercises` does) and, for a
*mistake*, one line of a solution replaced.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from .nbgrader import ASSIGNMENT, build_nbgrader_course

__all__ = ["MISTAKES", "NbgraderRun", "find_nbgrader", "NBGRADER_VERSION"]

#: The nbgrader release the course is graded with (``.ci/run`` installs it).
NBGRADER_VERSION = "0.9.6"
#: Where ``.ci/run`` installs it, relative to the repository.
NBGRADER_VENV = ".venv-nbgrader"
_ENV = "MAMLKIT_NBGRADER"

# The solution's line, in two pieces: whole, it is one of Exercise 2.1's solution-only strings,
# which the student edition's leak check looks for.
_GRADIENT = "tuple(params.values())" + ", create_graph=True)"

#: Classic mistakes, as (file, the solution's text, the mistaken text).
MISTAKES: dict[str, tuple[str, str, str]] = {
    "no_create_graph": ("mamlkit/inner_loop.py", _GRADIENT, "tuple(params.values()))"),
    "backward_in_the_inner_loop": (
        "mamlkit/inner_loop.py",
        "grads = torch.autograd.grad(loss, " + _GRADIENT,
        "loss.backward(create_graph=True)\n        grads = tuple(p.grad for p in params.values())"),
    "queries_are_support_images": ("mamlkit/data/sampler.py", "x_query=x[:, :, K:].reshape",
                                   "x_query=x[:, :, :Q].reshape"),
}


def find_nbgrader(repo: str | os.PathLike | None = None) -> Path | None:
    """The ``nbgrader`` command: ``$MAMLKIT_NBGRADER``, else ``REPO/.venv-nbgrader``, else on PATH."""
    if os.environ.get(_ENV):
        path = Path(os.environ[_ENV])
        return path if path.is_file() else None
    repo = Path(repo) if repo is not None else Path(__file__).resolve().parents[2]
    local = repo / NBGRADER_VENV / "bin" / "nbgrader"
    if local.is_file():
        return local
    found = shutil.which("nbgrader")
    return Path(found) if found else None


def make_mistake(root: str | os.PathLike, name: str) -> None:
    """Write the classic mistake ``name`` (:data:`MISTAKES`) into the solved code at ``root``."""
    path, right, wrong = MISTAKES[name]
    target = Path(root) / path
    text = target.read_text(encoding="utf-8")
    if right not in text:
        raise ValueError(f"{path} in {root} does not hold {right!r}: solve the exercise first")
    target.write_text(text.replace(right, wrong, 1), encoding="utf-8")


class NbgraderRun:
    """An nbgrader course folder in ``work``, released, with submissions to autograde."""

    def __init__(self, repo: str | os.PathLike, work: str | os.PathLike, nbgrader: str | os.PathLike, *,
                 notebooks: tuple[str, ...] | None = None, env: dict[str, str] | None = None) -> None:
        self.repo, self.work, self.nbgrader = Path(repo), Path(work), Path(nbgrader)
        self.course = self.work / "course"
        self.notebooks = notebooks
        self.env = dict(os.environ if env is None else env)
        kernels = self.work / "jupyter" / "kernels" / "python3"
        kernels.mkdir(parents=True, exist_ok=True)
        spec = {"argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                "display_name": "Python 3 (the course's)", "language": "python"}
        (kernels / "kernel.json").write_text(json.dumps(spec, indent=1), encoding="utf-8")
        self.env["JUPYTER_PATH"] = str(self.work / "jupyter")
        # nbgrader runs its own tools (alembic) from PATH.
        self.env["PATH"] = os.pathsep.join([str(self.nbgrader.parent), self.env.get("PATH", "")])
        self.env.pop("JUPYTER_CONFIG_DIR", None)
        self.seconds: dict[str, float] = {}

    def _nbgrader(self, *args: str, timeout: float = 3600) -> str:
        start = time.monotonic()
        result = subprocess.run([str(self.nbgrader), *args], cwd=self.course, env=self.env, capture_output=True,
                                text=True, timeout=timeout, check=False)
        self.seconds[" ".join(args[:1])] = self.seconds.get(" ".join(args[:1]), 0) + time.monotonic() - start
        if result.returncode != 0:
            raise RuntimeError(f"nbgrader {' '.join(args)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
        return result.stdout + result.stderr

    def release(self) -> list[str]:
        """Build the course folder and run ``nbgrader generate_assignment``; the graded cells."""
        notes = build_nbgrader_course(self.repo, self.course, notebooks=self.notebooks, force=True)
        self._nbgrader("generate_assignment", ASSIGNMENT, "--force")
        return notes

    def submit(self, student: str, solved: tuple[str, ...] | list[str] = (), mistake: str | None = None) -> Path:
        """``submitted/STUDENT/maml``: the released folder, ``solved`` solved, ``mistake`` made."""
        from .walk import solve_exercises

        folder = self.course / "submitted" / student / ASSIGNMENT
        if folder.exists():
            shutil.rmtree(folder)
        shutil.copytree(self.course / "release" / ASSIGNMENT, folder)
        if solved:
            solve_exercises(folder, tuple(solved), self.repo)
        if mistake is not None:
            make_mistake(folder, mistake)
        return folder

    def autograde(self, timeout: float = 3600) -> str:
        """``nbgrader autograde`` of every submission."""
        return self._nbgrader("autograde", ASSIGNMENT, "--force", timeout=timeout)

    def scores(self, written: bool = False) -> dict[str, dict[str, float]]:
        """``{student: {grade_id: points}}`` from the gradebook, read with nbgrader's Python.

        Args:
            written: also the answers to the questions for written analysis (``written_*``),
                graded by hand: ``None`` until a grader has scored them.
        """
        python = self.nbgrader.parent / "python"
        script = (
            "import json, sys\n"
            "from nbgrader.api import Gradebook\n"
            "out = {}\n"
            "with Gradebook('sqlite:///gradebook.db', course_id=sys.argv[2]) as gb:\n"
            "    for s in gb.students:\n"
            "        sub = gb.find_submission(sys.argv[1], s.id)\n"
            "        out[s.id] = {g.name: g.score for nb in sub.notebooks for g in nb.grades}\n"
            "print(json.dumps(out))\n"
        )
        result = subprocess.run([str(python if python.is_file() else sys.executable), "-c", script, ASSIGNMENT,
                                 ASSIGNMENT], cwd=self.course, env=self.env, capture_output=True, text=True,
                                check=True)
        scores = json.loads(result.stdout)
        if written:
            return scores
        return {student: {k: v for k, v in grades.items() if not k.startswith("written_")}
                for student, grades in scores.items()}

    def cell_output(self, student: str, grade_id: str) -> str:
        """What the graded cell ``grade_id`` printed in the student's autograded notebook."""
        for path in sorted((self.course / "autograded" / student / ASSIGNMENT).glob("*.ipynb")):
            for cell in json.loads(path.read_text(encoding="utf-8"))["cells"]:
                if cell.get("metadata", {}).get("nbgrader", {}).get("grade_id") == grade_id:
                    texts = []
                    for output in cell.get("outputs", []):
                        texts.append(output.get("text", "") if isinstance(output.get("text", ""), str)
                                     else "".join(output["text"]))
                        if output.get("output_type") == "error":
                            texts.append(f"{output.get('ename')}: {output.get('evalue')}")
                    return "".join(texts)
        raise KeyError(f"no graded cell {grade_id} in {student}'s notebooks")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Autograde submissions with real nbgrader and print the points.")
    parser.add_argument("work", type=Path, help="an empty folder for the course, kernels and submissions")
    parser.add_argument("--src", type=Path, default=Path.cwd(), help="the instructor edition (default: .)")
    parser.add_argument("--notebook", action="append", default=None, help="only this notebook (repeatable)")
    parser.add_argument("--submission", action="append", default=[], metavar="NAME=IDS[:MISTAKE]",
                        help="e.g. solved=all, alone21=2.1, mistake=all:no_create_graph, untouched=")
    args = parser.parse_args(argv)
    nbgrader = find_nbgrader(args.src)
    if nbgrader is None:
        print(f"nbgrader is not installed: pip install nbgrader=={NBGRADER_VERSION} into {NBGRADER_VENV}",
              file=sys.stderr)
        return 2
    from .exercises import EXERCISES

    run = NbgraderRun(args.src, args.work, nbgrader, notebooks=tuple(args.notebook) if args.notebook else None)
    print("\n".join(run.release()))
    for spec in args.submission or ["untouched="]:
        name, _, rest = spec.partition("=")
        ids, _, mistake = rest.partition(":")
        solved = [e.id for e in EXERCISES] if ids == "all" else [i for i in ids.split(",") if i]
        run.submit(name, solved, mistake or None)
    run.autograde()
    for student, grades in sorted(run.scores().items()):
        total = sum(v for v in grades.values() if v is not None)
        print(f"{student}: {total:g} points: " + ", ".join(f"{k}={v:g}" for k, v in sorted(grades.items())))
    print(f"seconds: {json.dumps({k: round(v) for k, v in run.seconds.items()})}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
