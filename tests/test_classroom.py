"""Tests of the classroom edition (mamlkit/classroom): student build, leak check, grading, hints.

Everything runs on small synthetic repositories in ``tmp_path`` with a toy registry, so these
tests do not depend on where the course's own solution markers are.

Solution markers are written as ``{BEGIN}`` / ``{END}`` inside f-strings: a line of this file
that started with a real marker would itself be stubbed when the course is built.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import nbformat
import pytest

from mamlkit.classroom.__main__ import main as classroom_main
from mamlkit.classroom.exercises import (
    EXERCISES,
    Exercise,
    exercise_id_from_marker,
    get_exercise,
    marker_expression,
    marker_name,
)
from mamlkit.classroom.grade import check_student_tests, files_with_marked_tests, grade, verify_exercise_tests
from mamlkit.classroom.hints import _raised_in, check_exercise, exercise_hint, install_exercise_hints
from mamlkit.classroom.student import (
    BEGIN_MARKER as BEGIN,
)
from mamlkit.classroom.student import (
    END_MARKER as END,
)
from mamlkit.classroom.student import (
    BuildError,
    MarkerError,
    build_student_edition,
    find_leaks,
    stub_notebook,
    stub_python,
)

TOY = (
    Exercise(
        id="1.1",
        title="toy warm-up",
        points=10,
        notebook="notebooks/01_toy.ipynb",
        task="square the input",
    ),
    Exercise(
        id="2.1",
        title="the toy inner loop `adapt`",
        points=20,
        notebook="notebooks/02_toy.ipynb",
        module="mamlkit/loop.py",
        task="implement `adapt`",
        solution_only=("_secret_helper",),
    ),
)

STUB_2_1 = 'raise NotImplementedError("Exercise 2.1: the toy inner loop `adapt`; see notebooks/02_toy.ipynb")'


def write(root: Path, rel: str, text: str) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def tree_bytes(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


# --------------------------------------------------------------------------------------------
# The registry and the markers


def test_registry_ids_markers_and_paths_are_consistent():
    ids = [e.id for e in EXERCISES]
    assert len(ids) == len(set(ids)), f"duplicate exercise ids in the registry: {ids}"
    for exercise in EXERCISES:
        assert exercise.marker == "ex" + exercise.id.replace(".", "_")
        assert exercise_id_from_marker(exercise.marker) == exercise.id
        assert exercise.notebook.startswith("notebooks/"), exercise
        assert exercise.module is None or exercise.module.startswith("mamlkit/"), exercise
        assert exercise.task, f"{exercise.label} needs a task for the notebook hint"
    assert get_exercise("3.1").points == 20


@pytest.mark.hidden  # docs/instructors.md is not handed out, and neither is this test
def test_the_instructors_page_lists_every_exercise_with_its_points():
    section = (Path(__file__).resolve().parents[1] / "docs" / "instructors.md").read_text(encoding="utf-8")
    listed: dict[str, int] = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 4 and cells[0][:1].isdigit():
            ids = [i.strip() for i in cells[0].split(",")]
            points = [int(p) for p in cells[2].split("+")]
            assert len(ids) == len(points), f"docs/instructors.md's row {cells[0]} gives {cells[2]} points"
            listed.update(zip(ids, points))
    assert listed == {e.id: e.points for e in EXERCISES}, "docs/instructors.md's table and the registry differ"
    total = sum(e.points for e in EXERCISES)
    assert f"worth {total} points in all" in section, f"docs/instructors.md should give the exercises' total, {total}"


def test_marker_helpers():
    assert marker_name("2.1") == "ex2_1"
    assert marker_name("12.3") == "ex12_3"
    assert exercise_id_from_marker("slow") is None
    assert marker_expression(TOY) == "ex1_1 or ex2_1"
    with pytest.raises(ValueError, match="chapter.number"):
        marker_name("2_1")


@pytest.mark.parametrize("key", ["2.1", "Exercise 2.1", "ex2_1", " exercise 2.1 "])
def test_get_exercise_accepts_every_spelling_of_an_id(key):
    assert get_exercise(key, TOY).id == "2.1"


def test_get_exercise_names_the_known_ids():
    with pytest.raises(ValueError, match="the course has exercises 1.1, 2.1"):
        get_exercise("9.9", TOY)


def test_conftest_registers_one_marker_per_exercise(pytestconfig):
    registered = pytestconfig.getini("markers")
    for exercise in EXERCISES:
        assert any(line.startswith(f"{exercise.marker}: {exercise.label}") for line in registered), (
            f"tests/conftest.py should register the marker {exercise.marker}"
        )


# --------------------------------------------------------------------------------------------
# Stubbing Python files


def test_stub_replaces_regions_at_the_indentation_of_the_begin_marker():
    source = textwrap.dedent(f'''\
        import torch


        class Learner:
            def adapt(self, params):
                """Docstring: kept."""
                if not params:
                    raise ValueError("no params")
                {BEGIN} (Exercise 2.1)
                grads = _secret_helper(params)
                return params - grads
                {END}


        def outer():
            def inner(x):
                {BEGIN} (Exercise 1.1)
                return x * x
                {END}
            return inner
        ''')
    stubbed, regions = stub_python(source, "mamlkit/loop.py", TOY)
    assert stubbed == textwrap.dedent(f'''\
        import torch


        class Learner:
            def adapt(self, params):
                """Docstring: kept."""
                if not params:
                    raise ValueError("no params")
                {STUB_2_1}


        def outer():
            def inner(x):
                raise NotImplementedError("Exercise 1.1: toy warm-up; see notebooks/01_toy.ipynb")
            return inner
        ''')
    assert [(r.exercise_id, r.line) for r in regions] == [("2.1", 9), ("1.1", 17)]


def test_stubbed_code_raises_the_exercise_message(tmp_path):
    source = f"def adapt(x):\n    {BEGIN} (Exercise 2.1)\n    return x + 1\n    {END}\n"
    stubbed, _ = stub_python(source, "mamlkit/loop.py", TOY)
    namespace: dict = {}
    exec(compile(stubbed, "loop.py", "exec"), namespace)
    with pytest.raises(NotImplementedError, match=r"^Exercise 2\.1: the toy inner loop"):
        namespace["adapt"](1)


def test_windows_line_endings_are_kept():
    source = f"def f():\r\n    {BEGIN} (Exercise 1.1)\r\n    return 1\r\n    {END}\r\nx = 1\r\n"
    stubbed, _ = stub_python(source, "f.py", TOY)
    assert stubbed.splitlines(keepends=True)[1].endswith('notebooks/01_toy.ipynb")\r\n')
    assert stubbed.endswith("x = 1\r\n")


def test_lines_that_only_mention_the_markers_are_left_alone():
    source = textwrap.dedent(f'''\
        MARKER = "{BEGIN}"
        """A solution starts at a line ``{BEGIN} (Exercise 2.1)``."""
        x = 1  # {END}
        ''')
    assert stub_python(source, "doc.py", TOY) == (source, [])


@pytest.mark.parametrize(
    "body, line, message",
    [
        (f"    {BEGIN}\n    return 1\n    {END}\n", 2, "does not say which exercise"),
        (f"    {BEGIN} (Exercise 9.9)\n    return 1\n    {END}\n", 2, "unknown Exercise 9.9; the registry"),
        (f"    return 1\n    {END}\n", 3, "END SOLUTION without a BEGIN SOLUTION"),
        (f"    {BEGIN} (Exercise 2.1)\n    {BEGIN} (Exercise 1.1)\n", 3, "regions cannot nest"),
        (f"    {BEGIN} (Exercise 2.1)\n    return 1\n", 2, "has no matching END SOLUTION"),
        (f"    {BEGIN} (exercise 2.1)\n    return 1\n    {END}\n", 2, "malformed solution marker"),
        (
            f"    {BEGIN} (Exercise 2.1)\n    return 1\n    {END} (Exercise 1.1)\n",
            4,
            "closes the region of Exercise 2.1",
        ),
    ],
    ids=["no-id", "unknown-id", "end-without-begin", "nested", "unclosed", "malformed", "mismatched-end"],
)
def test_marker_errors_name_file_and_line(body, line, message):
    with pytest.raises(MarkerError, match=message) as info:
        stub_python("def f():\n" + body, "mamlkit/loop.py", TOY)
    assert str(info.value).startswith(f"mamlkit/loop.py:{line}: "), (
        f"the error should point at mamlkit/loop.py:{line}, got: {info.value}"
    )


def test_a_region_that_splits_a_statement_is_an_error():
    source = f"def f(x):\n    {BEGIN} (Exercise 2.1)\n    if x:\n    {END}\n        return 1\n"
    with pytest.raises(MarkerError, match="not valid Python"):
        stub_python(source, "mamlkit/loop.py", TOY)


def test_the_classroom_code_itself_has_no_marker_lines():
    # Its docstrings and tests talk about the markers; none of those lines may be a marker,
    # or building the course would stub the builder.
    root = Path(__file__).resolve().parents[1]
    files = sorted((root / "mamlkit/classroom").glob("*.py")) + [Path(__file__), root / "tests/conftest.py"]
    for path in files:
        _, regions = stub_python(path.read_text(encoding="utf-8"), path.name, EXERCISES)
        assert regions == [], f"{path.name} has solution marker lines: {regions}"


# --------------------------------------------------------------------------------------------
# Stubbing notebooks


def toy_notebook() -> dict:
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_markdown_cell("# 01 · Toy\n\n## Exercise 1.1 · Squares"),
        nbformat.v4.new_code_cell(
            f"xs = [1, 2, 3]\nfor x in xs:\n    {BEGIN}\n    print(x * x)\n    {END}\nprint('done')",
            execution_count=3,
            outputs=[nbformat.v4.new_output("stream", text="1\n4\n9\ndone\n")],
            metadata={"execution": {"iopub.execute_input": "2024-01-01T00:00:00Z"}, "tags": ["keep"]},
        ),
        nbformat.v4.new_markdown_cell("## Summary"),
        nbformat.v4.new_code_cell(f"{BEGIN} (Exercise 2.1)\nanswer = 42\n{END}\n", execution_count=4),
        nbformat.v4.new_code_cell("answer", execution_count=5),
    ]
    return json.loads(nbformat.writes(nb))


def test_notebook_cells_get_a_prompt_and_a_stub_and_lose_their_outputs():
    nb, regions, named = stub_notebook(toy_notebook(), "notebooks/01_toy.ipynb", TOY)
    cells = nb["cells"]
    # The marker in cell 2 has no id: it takes the exercise of its heading.
    assert "".join(cells[1]["source"]) == (
        "xs = [1, 2, 3]\nfor x in xs:\n"
        "    # YOUR CODE HERE (Exercise 1.1)\n"
        '    raise NotImplementedError("Exercise 1.1: toy warm-up; replace this line with your code")\n'
        "print('done')"
    )
    assert "".join(cells[3]["source"]).startswith(
        "# YOUR CODE HERE (Exercise 2.1)\nraise NotImplementedError("
    )
    for cell in cells:
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [] and cell["execution_count"] is None
    assert cells[1]["metadata"] == {"tags": ["keep"]}, "run timestamps must go, other metadata stays"
    assert [(r.exercise_id, r.cell, r.line) for r in regions] == [("1.1", 2, 3), ("2.1", 4, 1)]
    assert named == {"1.1"}
    nbformat.validate(nbformat.reads(json.dumps(nb), as_version=4))


def test_a_notebook_marker_without_id_outside_an_exercise_section_is_an_error():
    nb = toy_notebook()
    nb["cells"][3]["source"] = f"{BEGIN}\nanswer = 42\n{END}\n"
    with pytest.raises(MarkerError, match=r"^notebooks/01_toy.ipynb cell 4, line 1: .*under a heading"):
        stub_notebook(nb, "notebooks/01_toy.ipynb", TOY)


def test_markdown_answers_are_replaced_too():
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell(f"Why?\n\n{BEGIN} (Exercise 1.1)\nBecause.\n{END}\n")]
    stubbed, regions, _ = stub_notebook(json.loads(nbformat.writes(nb)), "nb.ipynb", TOY)
    assert "".join(stubbed["cells"][0]["source"]) == "Why?\n\nYOUR ANSWER HERE (Exercise 1.1)\n"
    assert [(r.exercise_id, r.cell) for r in regions] == [("1.1", 1)]


# --------------------------------------------------------------------------------------------
# Building a whole repository


def make_course(root: Path) -> Path:
    """A tiny instructor edition: a package, a notebook, tests, a binary asset and some litter."""
    write(root, "README.md", "# Toy course\n")
    write(root, "mamlkit/__init__.py", '"""The toy package."""\nWHERE = "toy course"\n')
    write(root, "mamlkit/loop.py", f'''\
        def _secret_helper(x):
            return x + 1


        def adapt(x):
            """One step of the toy inner loop."""
            {BEGIN} (Exercise 2.1)
            return _secret_helper(x)
            {END}
        ''')
    write(root, "tests/test_loop.py", '''\
        import pytest

        from mamlkit.loop import adapt


        @pytest.mark.ex2_1
        def test_adapt_adds_one():
            assert adapt(1) == 2, "adapt(1) should take one step from 1 to 2"
        ''')
    nb = toy_notebook()
    (root / "notebooks").mkdir()
    (root / "notebooks/01_toy.ipynb").write_text(json.dumps(nb, indent=2), encoding="utf-8")
    (root / "assets").mkdir()
    (root / "assets/weights.bin").write_bytes(bytes(range(256)) * 4)
    write(root, "mamlkit/__pycache__/loop.cpython-311.pyc", "stale bytecode")
    write(root, ".ipynb_checkpoints/01_toy-checkpoint.ipynb", "{}")
    return root


def test_build_writes_stubs_and_copies_everything_else(tmp_path):
    src = make_course(tmp_path / "src")
    report = build_student_edition(src, tmp_path / "student", exercises=TOY)
    out = tmp_path / "student"
    assert report.files == [
        ".github/workflows/classroom.yml",
        "README.md",
        "assets/weights.bin",
        "mamlkit/__init__.py",
        "mamlkit/loop.py",
        "notebooks/01_toy.ipynb",
        "tests/test_loop.py",
    ], "caches and checkpoints must not be copied"
    assert sorted(tree_bytes(out)) == report.files
    assert "Toy course" not in (out / "README.md").read_text(encoding="utf-8"), "the README is the student's"
    for rel in ("assets/weights.bin", "mamlkit/__init__.py", "tests/test_loop.py"):
        assert (out / rel).read_bytes() == (src / rel).read_bytes(), f"{rel} should be copied byte for byte"
    loop = (out / "mamlkit/loop.py").read_text(encoding="utf-8")
    assert f"    {STUB_2_1}\n" in loop and "return _secret_helper(x)" not in loop
    built_nb = json.loads((out / "notebooks/01_toy.ipynb").read_text(encoding="utf-8"))
    assert all(c.get("outputs", []) == [] for c in built_nb["cells"])
    # The regions are where the registry says, except that 2.1 has a region in the 01 notebook.
    assert any("Exercise 2.1 has a solution region in notebooks/01_toy.ipynb" in w for w in report.warnings)
    assert "notebooks/02_toy.ipynb (Exercise 2.1) is not in the repository" in report.warnings


def test_building_twice_gives_identical_files(tmp_path):
    src = make_course(tmp_path / "src")
    build_student_edition(src, tmp_path / "a", exercises=TOY)
    build_student_edition(src, tmp_path / "b", exercises=TOY)
    first, second = tree_bytes(tmp_path / "a"), tree_bytes(tmp_path / "b")
    assert first == second
    # Rebuilding in place over an earlier build changes nothing either.
    build_student_edition(src, tmp_path / "a", exercises=TOY, force=True)
    assert tree_bytes(tmp_path / "a") == first


def test_a_git_repository_hands_out_only_tracked_files(tmp_path):
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    src = make_course(tmp_path / "src")
    write(src, ".gitignore", "__pycache__/\n.ipynb_checkpoints/\n")
    git = ["git", "-C", str(src), "-c", "user.name=Course", "-c", "user.email=course@example.org"]
    subprocess.run(git + ["init", "-q"], check=True)
    subprocess.run(git + ["add", "."], check=True)
    subprocess.run(git + ["commit", "-q", "-m", "course"], check=True)
    write(src, "notes_for_instructors.md", "the answer is 42\n")  # untracked
    report = build_student_edition(src, tmp_path / "student", exercises=TOY)
    assert ".gitignore" in report.files
    assert "notes_for_instructors.md" not in report.files
    assert not (tmp_path / "student/.git").exists()


def test_a_marker_error_stops_the_build_before_anything_is_written(tmp_path):
    src = make_course(tmp_path / "src")
    write(src, "mamlkit/broken.py", f"def f():\n    {BEGIN} (Exercise 7.7)\n    return 1\n    {END}\n")
    write(src, "mamlkit/open.py", f"def g():\n    {BEGIN} (Exercise 2.1)\n    return 1\n")
    with pytest.raises(BuildError) as info:
        build_student_edition(src, tmp_path / "student", exercises=TOY)
    assert [e.split(": ")[0] for e in info.value.errors] == ["mamlkit/broken.py:2", "mamlkit/open.py:2"]
    assert not (tmp_path / "student").exists()


def test_an_existing_output_is_replaced_only_with_force_and_its_git_folder_kept(tmp_path):
    src = make_course(tmp_path / "src")
    out = tmp_path / "student"
    write(out, "old_file.txt", "from an earlier build")
    write(out, ".git/HEAD", "ref: refs/heads/main\n")
    with pytest.raises(BuildError, match="not empty"):
        build_student_edition(src, out, exercises=TOY)
    build_student_edition(src, out, exercises=TOY, force=True)
    assert not (out / "old_file.txt").exists()
    assert (out / ".git/HEAD").read_text() == "ref: refs/heads/main\n"
    with pytest.raises(BuildError, match="would contain the source"):
        build_student_edition(src, tmp_path, exercises=TOY, force=True)


# --------------------------------------------------------------------------------------------
# Leak check


def test_a_fresh_build_has_no_leaks(tmp_path):
    src = make_course(tmp_path / "src")
    # The helper's definition is outside the region in make_course; move it inside.
    write(src, "mamlkit/loop.py", f'''\
        def adapt(x):
            {BEGIN} (Exercise 2.1)
            def _secret_helper(x):
                return x + 1
            return _secret_helper(x)
            {END}
        ''')
    build_student_edition(src, tmp_path / "student", exercises=TOY)
    assert find_leaks(tmp_path / "student", TOY) == []


def test_leaks_are_found_and_located(tmp_path):
    src = make_course(tmp_path / "src")
    out = tmp_path / "student"
    build_student_edition(src, out, exercises=TOY)
    # make_course defines _secret_helper outside the region: a leak the check must catch.
    write(out, "mamlkit/extra.py", f"x = 1\n    {END}\n")
    nb = json.loads((out / "notebooks/01_toy.ipynb").read_text(encoding="utf-8"))
    nb["cells"][4]["outputs"] = [{"output_type": "stream", "name": "stdout", "text": ["42\n"]}]
    (out / "notebooks/01_toy.ipynb").write_text(json.dumps(nb), encoding="utf-8")
    write(out, "mamlkit/classroom/exercises.py", 'SOLUTION_ONLY = ("_secret_helper",)\n')  # exempt

    leaks = find_leaks(out, TOY)

    assert "mamlkit/extra.py:2: solution marker left in the student edition" in leaks
    assert "notebooks/01_toy.ipynb cell 5: outputs or an execution count left in the student edition" in leaks
    assert "mamlkit/loop.py:1: '_secret_helper', which only the solution of Exercise 2.1 uses" in leaks
    assert not any("classroom/exercises.py" in leak for leak in leaks)
    assert len(leaks) == 3, leaks


# --------------------------------------------------------------------------------------------
# Grading


def make_submission(root: Path) -> Path:
    """A student's repository: Exercise 1.1 solved, Exercise 2.1 half solved."""
    write(root, "mamlkit/__init__.py", 'WHERE = "submission"\n')
    write(root, "mamlkit/loop.py", "def square(x):\n    return x * x\n\n\ndef adapt(x):\n    return x + 1\n")
    write(root, "tests/test_toy.py", '''\
        import pytest

        import mamlkit
        from mamlkit.loop import adapt, square


        @pytest.mark.ex1_1
        def test_square():
            assert square(3) == 9


        @pytest.mark.ex1_1
        def test_imports_the_submission_not_the_installed_package():
            assert mamlkit.WHERE == "submission"


        @pytest.mark.ex2_1
        def test_adapt_one_step():
            assert adapt(1) == 2


        @pytest.mark.ex2_1
        def test_adapt_two_steps():
            assert adapt(adapt(1)) == 4, "two steps from 1 should reach 4"


        def test_not_an_exercise():
            assert False, "unmarked tests are not run by the grader"
        ''')
    return root


def test_grade_scores_each_exercise_from_its_markers(tmp_path):
    root = make_submission(tmp_path / "alice")
    report = grade(root, TOY)
    first, second = report.results
    assert (first.num_passed, first.num_tests, first.points_earned) == (2, 2, 10)
    assert (second.num_passed, second.num_tests, second.points_earned) == (1, 2, 0)
    assert (report.points_earned, report.points_possible) == (10, 30)
    failed = [t for t in second.tests if not t.passed]
    assert [t.nodeid for t in failed] == ["tests/test_toy.py::test_adapt_two_steps"]
    assert failed[0].outcome == "failed"
    assert "two steps from 1 should reach 4" in failed[0].message
    assert not (root / "tests/__pycache__").exists(), "grading must not write into the submission"

    table = report.table()
    assert "2.1       the toy inner loop `adapt`" in table
    assert "1/2" in table and "0/20" in table and "10/30" in table
    assert "test_adapt_two_steps: failed - AssertionError: two steps from 1 should reach 4" in table


def test_proportional_policy_gives_partial_credit(tmp_path):
    report = grade(make_submission(tmp_path / "alice"), TOY, policy="proportional")
    assert [r.points_earned for r in report.results] == [10, 10]
    with pytest.raises(ValueError, match="policy must be one of"):
        grade(tmp_path / "alice", TOY, policy="generous")


def test_a_test_file_that_fails_to_import_is_reported_and_the_rest_still_graded(tmp_path):
    root = make_submission(tmp_path / "bob")
    write(root, "tests/test_broken.py", "import pytest\nfrom mamlkit.loop import missing\n\n\n"
          "@pytest.mark.ex2_1\ndef test_missing():\n    assert missing\n")
    report = grade(root, TOY)
    assert [e["nodeid"] for e in report.collection_errors] == ["tests/test_broken.py"]
    assert "missing" in report.collection_errors[0]["message"]
    assert report.results[0].points_earned == 10
    assert "Could not collect tests/test_broken.py" in report.table()


def test_grading_with_the_course_copy_of_the_tests_ignores_edited_tests(tmp_path):
    official = make_submission(tmp_path / "official") / "tests"
    root = make_submission(tmp_path / "mallory")
    write(root, "tests/test_toy.py", "import pytest\n\n\n@pytest.mark.ex2_1\ndef test_adapt():\n    pass\n")
    assert grade(root, TOY).results[1].points_earned == 20
    assert grade(root, TOY, tests_dir=str(official)).results[1].points_earned == 0


def test_cli_grade_writes_json(tmp_path, capsys):
    root = make_submission(tmp_path / "alice")
    out = tmp_path / "grades/alice.json"
    # The CLI grades the course's own registry: Exercise 1.1 and 2.1 are in it too.
    assert classroom_main(["grade", "--root", str(root), "--no-reference", "--json", str(out)]) == 0
    data = json.loads(out.read_text(encoding="utf-8"))
    by_id = {e["id"]: e for e in data["exercises"]}
    assert (by_id["1.1"]["tests_passed"], by_id["1.1"]["tests_total"]) == (2, 2)
    assert by_id["2.1"]["points_earned"] == 0 and by_id["2.1"]["tests_total"] == 2
    assert by_id["3.1"]["tests_total"] == 0
    assert data["points_earned"] == by_id["1.1"]["points_possible"]
    assert data["policy"] == "all-or-nothing"
    assert "Total" in capsys.readouterr().out


def test_verify_flags_tests_that_pass_without_the_solution(tmp_path):
    src = make_course(tmp_path / "src")
    write(src, "tests/test_loosely.py", '''\
        import pytest

        from mamlkit.loop import adapt


        @pytest.mark.ex2_1
        def test_adapt_exists():
            assert callable(adapt)
        ''')
    problems = verify_exercise_tests(src, TOY)
    assert problems == [
        "Exercise 1.1 has no tests (none carries @pytest.mark.ex1_1)",
        "Exercise 2.1: tests/test_loosely.py::test_adapt_exists passes in the student edition, "
        "without the solution",
        "Exercise 2.1: tests/test_loosely.py::test_adapt_exists passes when every other exercise is "
        "solved and Exercise 2.1 is not: it does not test Exercise 2.1, so unmark it",
    ]


def test_verify_is_green_when_tests_skip_for_want_of_the_data(two_course, monkeypatch, capsys):
    """Without the data a test of 2.1 skips, with the solution and with the stub alike: that
    proves nothing either way, and it is no problem (it runs where the data is)."""
    from mamlkit.classroom.__main__ import main

    src, _, _ = two_course
    monkeypatch.delenv("TOY_DATA", raising=False)
    assert verify_exercise_tests(src, TWO) == []
    monkeypatch.setattr("mamlkit.classroom.__main__.verify_exercise_tests",
                        lambda src, timeout=None: verify_exercise_tests(src, TWO, timeout=timeout))
    assert main(["verify", "--src", str(src)]) == 0
    assert "tests pass with the solutions" in capsys.readouterr().out


def test_check_student_tests_names_the_marker_each_failing_test_needs(tmp_path):
    exercises = TOY + (
        Exercise(id="3.1", title="the toy outer loop", points=5, notebook="notebooks/01_toy.ipynb",
                 module="mamlkit/outer.py", task="implement `outer`"),
    )
    src = make_course(tmp_path / "src")
    write(src, "mamlkit/outer.py", f'''\
        from mamlkit.loop import adapt


        def outer(x):
            y = adapt(x)
            {BEGIN} (Exercise 3.1)
            return 2 * y
            {END}
        ''')
    write(src, "tests/test_more.py", '''\
        import pytest

        from mamlkit.loop import adapt
        from mamlkit.outer import outer


        def test_unmarked_but_needs_adapt():
            assert adapt(0) == 1


        @pytest.mark.ex3_1
        def test_outer_is_not_marked_with_the_exercise_it_also_needs():
            assert outer(1) == 4


        @pytest.mark.ex2_1
        def test_fails_for_another_reason():
            assert adapt is None, "wrong on purpose"


        def test_plain():
            pass
        ''')
    build_student_edition(src, tmp_path / "student", exercises=exercises)
    problems, record = check_student_tests(tmp_path / "student", exercises)
    assert problems == [
        "Exercise 1.1 has no tests (none carries @pytest.mark.ex1_1)",
        "tests/test_more.py::test_unmarked_but_needs_adapt is failed in the student edition: it reaches "
        "the stub of Exercise 2.1, so mark it @pytest.mark.ex2_1",
        "Exercise 3.1: tests/test_more.py::test_outer_is_not_marked_with_the_exercise_it_also_needs "
        "reaches the stub of Exercise 2.1; mark it @pytest.mark.ex2_1 too",
        "Exercise 2.1: tests/test_more.py::test_fails_for_another_reason is failed in the student edition, "
        "but not with an exercise stub: AssertionError: wrong on purpose",
    ]
    outcomes = {t["nodeid"].split("::")[-1]: t["outcome"] for t in record["tests"]}
    assert outcomes["test_adapt_adds_one"] == "failed" and outcomes["test_plain"] == "passed"


# --------------------------------------------------------------------------------------------
# Hints for learners


def test_exercise_hint_tells_the_learner_what_to_do_next():
    hint = exercise_hint(NotImplementedError("Exercise 2.1: the toy inner loop `adapt`; see ..."), TOY)
    assert hint == (
        "Exercise 2.1 is not done yet: implement `adapt` in mamlkit/loop.py, then run check_exercise('2.1')."
    )
    hint = exercise_hint(NotImplementedError("Exercise 1.1: toy warm-up; replace this line"), TOY)
    assert "in the cell marked '# YOUR CODE HERE (Exercise 1.1)' in notebooks/01_toy.ipynb" in hint
    assert exercise_hint(NotImplementedError("subclasses implement forward"), TOY) is None
    assert exercise_hint(ValueError("Exercise 2.1: not a stub"), TOY) is None


def test_install_exercise_hints_is_a_no_op_outside_ipython():
    install_exercise_hints()  # must not fail


def test_the_hint_says_where_a_library_stub_was_raised(tmp_path):
    source = f"def adapt(x):\n    {BEGIN} (Exercise 2.1)\n    return x\n    {END}\n"
    stubbed, _ = stub_python(source, "loop.py", TOY)
    namespace: dict = {}
    exec(compile(stubbed, str(tmp_path / "mamlkit" / "loop.py"), "exec"), namespace)
    with pytest.raises(NotImplementedError) as info:
        namespace["adapt"](1)
    assert _raised_in(info.tb, tmp_path.resolve()) == "adapt (mamlkit/loop.py:2)"
    assert _raised_in(info.tb, tmp_path.resolve() / "elsewhere") is None


def test_ipython_shows_the_hint_instead_of_a_traceback():
    # A fresh interpreter, so the IPython shell does not outlive this test.
    script = textwrap.dedent('''\
        from IPython.core.interactiveshell import InteractiveShell
        from mamlkit.classroom.hints import install_exercise_hints

        shell = InteractiveShell.instance()
        install_exercise_hints()
        assert shell.custom_exceptions == (NotImplementedError,)
        other = shell.run_cell('raise NotImplementedError("not an exercise")')
        print("OTHER FAILED:", other.error_in_exec is not None)
        stub = shell.run_cell('raise NotImplementedError("Exercise 2.1: the inner loop `adapt`; see notes")')
        print("STUB FAILED:", stub.error_in_exec is not None)
        ''')
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    task = get_exercise("2.1").task  # the course registry's, since the script uses the default
    assert f"Exercise 2.1 is not done yet: {task} in mamlkit/inner_loop.py" in output
    assert "STUB FAILED: True" in output, "the cell must still fail, so that Run All stops there"
    assert "Traceback" in output and "not an exercise" in output, "other errors keep their traceback"
    assert output.count("Traceback") == 1
    assert "OTHER FAILED: True" in output


def test_check_exercise_prints_what_passes(tmp_path, capsys):
    root = make_submission(tmp_path / "alice")
    assert check_exercise("1.1", root=root, exercises=TOY) is True
    assert capsys.readouterr().out.startswith("✓ Exercise 1.1 (toy warm-up): your tests: 2 of 2 pass.\n")
    assert check_exercise("ex2_1", root=root, exercises=TOY) is False
    out = capsys.readouterr().out
    assert out.startswith("✗ Exercise 2.1 (the toy inner loop `adapt`): your tests: 1 of 2 pass.\n")
    assert "✗ 1. test_adapt_two_steps (failed)\n      AssertionError: two steps from 1 should reach 4\n" in out
    # The whole message: pytest's account of the values compared comes with it.
    assert "assert 3 == 4" in out


# --------------------------------------------------------------------------------------------
# Command line


def test_cli_build_student_runs_the_leak_check(tmp_path, capsys):
    src = make_course(tmp_path / "src")
    out = tmp_path / "student"
    # The course registry has no Exercise 2.1 helper named _secret_helper, so this is clean.
    assert classroom_main(["build-student", str(out), "--src", str(src)]) == 0
    printed = capsys.readouterr().out
    assert "Student edition written to" in printed and "Leak check: clean." in printed
    assert classroom_main(["build-student", str(out), "--src", str(src)]) == 1
    assert "not empty" in capsys.readouterr().err



# --------------------------------------------------------------------------------------------
# Grading each exercise on its own, hidden tests, Gradescope

TWO = (
    Exercise(id="1.1", title="squares", points=10, notebook="notebooks/01_toy.ipynb",
             module="mamlkit/warm.py", task="implement `square`"),
    Exercise(id="2.1", title="the toy inner loop `adapt`", points=20, notebook="notebooks/01_toy.ipynb",
             module="mamlkit/loop.py", task="implement `adapt`"),
)


def make_two_exercise_course(root: Path) -> Path:
    """Exercise 2.1's code calls Exercise 1.1's, and one of its tests is hidden."""
    write(root, "README.md", "# Toy course (instructor edition)\n\n    python -m mamlkit.classroom verify\n")
    write(root, "mamlkit/__init__.py", "")
    write(root, "mamlkit/warm.py", f'''\
        def square(x):
            """x squared."""
            {BEGIN} (Exercise 1.1)
            return x * x
            {END}
        ''')
    write(root, "mamlkit/loop.py", f'''\
        from mamlkit.warm import square


        class Learner:
            def adapt(self, x):
                """One toy step: x² + 1."""
                {BEGIN} (Exercise 2.1)
                return square(x) + 1
                {END}
        ''')
    write(root, "tests/test_toy.py", '''\
        import os

        import pytest

        from mamlkit.loop import Learner
        from mamlkit.warm import square


        @pytest.mark.ex1_1
        def test_square():
            assert square(3) == 9, f"square(3) should be 9, got {square(3)}"


        @pytest.mark.ex2_1
        def test_adapt():
            assert Learner().adapt(2) == 5, "adapt(2) should be 2² + 1 = 5"


        @pytest.mark.ex2_1
        @pytest.mark.skipif(not os.environ.get("TOY_DATA"), reason="TOY_DATA is not set")
        def test_adapt_on_data():
            assert Learner().adapt(1) == 2


        @HIDDEN
        @pytest.mark.ex2_1
        def test_adapt_negative():
            assert Learner().adapt(-3) == 10


        def test_plain():
            pass
        '''.replace("@HIDDEN", "@pytest.mark." + "hidden"))  # spelled apart: this file is in the edition
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# Toy\n\n## Exercise 1.1 · squares\n\n## Exercise 2.1 · adapt")]
    (root / "notebooks").mkdir(exist_ok=True)
    (root / "notebooks/01_toy.ipynb").write_text(nbformat.writes(nb), encoding="utf-8")
    return root


def solve(student: Path, reference: Path, exercise: Exercise, exercises=TWO) -> None:
    """Put the reference solution of ``exercise`` into a student edition, as a learner would write it."""
    from mamlkit.classroom.reference import _splice, reference_functions

    refs = reference_functions(reference, exercises)[exercise.id]
    path = student / refs[0].path
    path.write_text(_splice(path.read_text(encoding="utf-8"), refs[0].path, refs), encoding="utf-8")


@pytest.fixture(scope="module")
def two_course(tmp_path_factory):
    base = tmp_path_factory.mktemp("two")
    src = make_two_exercise_course(base / "src")
    report = build_student_edition(src, base / "student", exercises=TWO)
    return src, base / "student", report


def points(report) -> dict[str, float]:
    return {r.exercise.id: r.points_earned for r in report.results}


def test_hidden_tests_are_left_out_of_the_edition_and_named_by_the_grader(two_course, monkeypatch):
    src, student, build = two_course
    text = (student / "tests/test_toy.py").read_text(encoding="utf-8")
    assert "test_adapt_negative" not in text and "test_adapt_on_data" in text
    assert build.hidden_tests == ["tests/test_toy.py::test_adapt_negative"]
    assert find_leaks(student, TWO) == []
    monkeypatch.delenv("TOY_DATA", raising=False)
    report = grade(src, TWO, reference=src)
    assert report.hidden_tests == ["tests/test_toy.py::test_adapt_negative"]
    assert "Hidden tests (not in the student edition): 1" in report.table()
    assert points(report) == {"1.1": 10, "2.1": 20}


def test_a_leftover_hidden_test_is_a_leak(tmp_path):
    write(tmp_path, "tests/test_x.py", "import pytest\n\n\n@pytest.mark.hidden\ndef test_x():\n    pass\n")
    assert find_leaks(tmp_path, TWO) == ["tests/test_x.py:4: a hidden test left in the student edition"]


def test_each_exercise_is_graded_on_its_own(two_course, tmp_path):
    src, student, _ = two_course
    # Untouched: nothing. With the reference for the others, each test stops at its own stub.
    untouched = grade(student, TWO, reference=src)
    assert points(untouched) == {"1.1": 0, "2.1": 0}
    assert {t.message.splitlines()[0].split(":")[1].strip() for r in untouched.results for t in r.tests
            if t.outcome == "failed"} == {"Exercise 1.1", "Exercise 2.1"}
    # 2.1 solved alone: 2.1's points, although adapt calls the unsolved square.
    only_2_1 = tmp_path / "only_2_1"
    shutil.copytree(student, only_2_1)
    solve(only_2_1, src, TWO[1])
    assert points(grade(only_2_1, TWO, reference=src)) == {"1.1": 0, "2.1": 20}
    # Without the reference, the same test waits for 1.1 and does not pass.
    plain = grade(only_2_1, TWO)
    assert [t.outcome for t in plain.results[1].tests if t.nodeid.endswith("::test_adapt")] == ["waiting"]
    assert points(plain) == {"1.1": 0, "2.1": 0}
    # 1.1 solved alone, and 1.1 solved with a mistake in 2.1.
    only_1_1 = tmp_path / "only_1_1"
    shutil.copytree(student, only_1_1)
    solve(only_1_1, src, TWO[0])
    assert points(grade(only_1_1, TWO, reference=src)) == {"1.1": 10, "2.1": 0}
    write(only_1_1, "mamlkit/loop.py", '''\
        from mamlkit.warm import square


        class Learner:
            def adapt(self, x):
                return square(x)
        ''')
    report = grade(only_1_1, TWO, reference=src)
    assert points(report) == {"1.1": 10, "2.1": 0}
    assert "adapt(2) should be 2² + 1 = 5" in report.results[1].tests[0].message


def test_a_skipped_test_neither_earns_nor_costs(two_course, monkeypatch):
    src, _, _ = two_course
    monkeypatch.delenv("TOY_DATA", raising=False)
    skipped = grade(src, TWO, reference=src)
    result = skipped.results[1]
    assert (result.num_passed, result.num_tests, result.num_skipped, result.points_earned) == (2, 2, 1, 20)
    monkeypatch.setenv("TOY_DATA", "1")
    ran = grade(src, TWO, reference=src).results[1]
    assert (ran.num_passed, ran.num_tests, ran.num_skipped, ran.points_earned) == (3, 3, 0, 20)


def test_check_puts_the_verdict_first_and_tells_waiting_from_failing(two_course, tmp_path, capsys, monkeypatch):
    src, student, _ = two_course
    monkeypatch.delenv("MAMLKIT_DATA", raising=False)
    monkeypatch.delenv("TOY_DATA", raising=False)
    only_2_1 = tmp_path / "s"
    shutil.copytree(student, only_2_1)
    solve(only_2_1, src, TWO[1])
    assert check_exercise("2.1", root=only_2_1, exercises=TWO) is False
    out = capsys.readouterr().out
    # Its only runnable test waits for 1.1: nothing passes yet, nothing fails either.
    assert out.startswith("… Exercise 2.1 (the toy inner loop `adapt`): waiting for Exercise 1.1: all 1 of its "
                          "tests run through it, so they cannot say anything about Exercise 2.1 yet."), out
    assert "✗" not in out
    assert "MAMLKIT_DATA is not set" in out and "✗ 1." not in out
    solve(only_2_1, src, TWO[0])
    assert check_exercise("2.1", root=only_2_1, exercises=TWO) is True
    assert capsys.readouterr().out.startswith("✓ Exercise 2.1 (the toy inner loop `adapt`): your tests: 1 of 1 pass; 1 skipped.")
    with pytest.raises(FileNotFoundError, match="--root path/to/course"):
        check_exercise("2.1", root=tmp_path / "nowhere", exercises=TWO)


def test_the_student_readme_and_classroom_workflow(two_course):
    _, student, _ = two_course
    readme = (student / "README.md").read_text(encoding="utf-8")
    assert "instructor" not in readme.lower() and "Toy course" not in readme
    for command in ("build-student", "verify", "gradescope", "classroom grade", "--reference"):
        assert command not in readme, f"the student README mentions the instructor command {command!r}"
    assert "| 2.1 | the toy inner loop `adapt` | 20 | `mamlkit/loop.py` | `notebooks/01_toy.ipynb` |" in readme
    assert "python -m mamlkit.classroom check 1.1" in readme and "MAMLKIT_DATA" in readme
    workflow = (student / ".github/workflows/classroom.yml").read_text(encoding="utf-8")
    assert workflow.count("classroom-resources/autograding-command-grader@v1") == 2
    assert "max-score: 20" in workflow and "runners: ex1_1,ex2_1" in workflow
    assert 'EX2_1_RESULTS: "${{ steps.ex2_1.outputs.result }}"' in workflow


def test_gradescope_autograder_grades_reference_edition_and_one_exercise(two_course, tmp_path, monkeypatch):
    import os
    import zipfile

    from mamlkit.classroom.gradescope import build_autograder_zip

    src, student, _ = two_course
    monkeypatch.delenv("TOY_DATA", raising=False)
    zip_path = build_autograder_zip(src, tmp_path / "zips/autograder.zip", TWO)
    assert build_autograder_zip(src, tmp_path / "zips2/autograder.zip", TWO).read_bytes() == zip_path.read_bytes()
    only_2_1 = tmp_path / "only_2_1"
    shutil.copytree(student, only_2_1)
    solve(only_2_1, src, TWO[1])

    def run_autograder(submission: Path) -> dict:
        root = tmp_path / f"autograder_{submission.name}"
        with zipfile.ZipFile(zip_path) as zf:
            zf.extractall(root / "source")
        assert not (root / "source/source").exists()
        shutil.move(root / "source/run_autograder", root / "run_autograder")
        shutil.copytree(submission, root / "submission")
        env = {**os.environ, "AUTOGRADER_ROOT": str(root),
               "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
        done = subprocess.run(["bash", str(root / "run_autograder")], env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stdout + done.stderr
        return json.loads((root / "results/results.json").read_text(encoding="utf-8"))

    full = run_autograder(src)
    assert full["score"] == 30 and [t["score"] for t in full["tests"]] == [10, 20]
    assert [(t["name"], t["max_score"], t["visibility"]) for t in full["tests"]] == [
        ("Exercise 1.1: squares", 10, "visible"), ("Exercise 2.1: the toy inner loop `adapt`", 20, "visible")]
    assert "Hidden tests: 1 of 1 pass." in full["tests"][1]["output"]
    assert "test_adapt_negative" not in json.dumps(full), "hidden tests are counted, not named"
    assert run_autograder(student)["score"] == 0
    one = run_autograder(only_2_1)
    assert one["score"] == 20 and [t["score"] for t in one["tests"]] == [0, 20]


def test_after_a_hint_later_cells_are_skipped_until_the_stopped_cell_runs_again():
    script = textwrap.dedent('''\
        from IPython.core.interactiveshell import InteractiveShell
        from mamlkit.classroom.hints import install_exercise_hints

        shell = InteractiveShell.instance()
        install_exercise_hints()
        install_exercise_hints()  # a second setup run must not stack the hooks
        shell.user_ns["DONE"] = False
        shell.run_cell("def adapt():\\n    if not DONE:\\n        raise NotImplementedError('Exercise 2.1: the inner loop; see notes')\\n    return 1")
        stopped = "phi = adapt()"
        print("STOPPED:", shell.run_cell(stopped).error_in_exec is not None)
        later = shell.run_cell("print(phi + 1)")
        print("LATER ERROR:", later.error_in_exec)
        shell.run_cell("check_exercise = lambda i: print('CHECKED', i)")  # skipped too
        shell.user_ns["check_exercise"] = lambda i: print("CHECKED", i)
        shell.run_cell("check_exercise('2.1')")
        shell.user_ns["DONE"] = True  # the learner finishes the exercise
        print("AGAIN:", shell.run_cell(stopped).error_in_exec)
        shell.run_cell("print('PHI', phi + 1)")
        ''')
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "STOPPED: True" in output
    assert "Skipped: this cell comes after Exercise 2.1, which is not done yet." in output
    assert "NameError" not in output and "LATER ERROR: None" in output
    assert "CHECKED 2.1" in output, "a check cell runs even after a hint"
    assert "AGAIN: None" in output and "PHI 2" in output, "running the stopped cell again lifts the stop"


def test_a_submission_without_the_package_is_refused_rather_than_graded_as_an_installed_copy(tmp_path):
    from mamlkit.classroom.grade import GradingError

    # A drag-and-drop of single files: without mamlkit/ in the submission the tests would import
    # whichever mamlkit is installed (the instructor's, on a grading server) and pass.
    (tmp_path / "autograd_warmups.py").write_text("# my answers\n")
    with pytest.raises(GradingError, match="no mamlkit/ package"):
        grade(tmp_path, reference=Path(__file__).resolve().parents[1])


def test_an_exercise_whose_file_is_missing_from_the_submission_earns_nothing(tmp_path):
    (tmp_path / "mamlkit").mkdir()
    (tmp_path / "mamlkit" / "__init__.py").write_text("")
    report = grade(tmp_path, reference=Path(__file__).resolve().parents[1], only=("1.1",))
    [result] = report.results
    assert result.exercise.id == "1.1"
    assert result.points_earned == 0 and result.points_possible == result.exercise.points
    assert "mamlkit/lessons/autograd_warmups.py is not in the submission" in " ".join(result.notes)


def test_exercise_tests_are_found_by_pytests_own_marker_selection(tmp_path):
    # Marks that no text search for "mark.ex2_1" sees: built with getattr, and a module's pytestmark.
    tests = tmp_path / "tests"
    tests.mkdir()
    (tests / "test_built.py").write_text(
        "import pytest\n\n"
        "@pytest.mark.parametrize('x', [pytest.param(1, marks=getattr(pytest.mark, 'ex' + '2_1'))])\n"
        "def test_a(x):\n    assert x == 1\n", encoding="utf-8")
    (tests / "test_module_mark.py").write_text(
        "import pytest\n\npytestmark = getattr(pytest.mark, 'ex2_' + '1')\n\n"
        "def test_b():\n    pass\n", encoding="utf-8")
    (tests / "test_other.py").write_text("def test_c():\n    pass\n", encoding="utf-8")
    (tmp_path / "pytest.ini").write_text("[pytest]\nmarkers =\n    ex2_1: Exercise 2.1\n", encoding="utf-8")
    found = files_with_marked_tests(tests, ["ex2_1"], root=tmp_path)
    assert [p.name for p in found] == ["test_built.py", "test_module_mark.py"]
