"""The classroom edition: one repository for instructors and for learners.

Solutions in ``mamlkit/*.py`` and in notebook cells sit between ``### BEGIN SOLUTION (Exercise 2.1)``
and ``### END SOLUTION`` lines. From that one source this package

- builds the student edition, with each solution replaced by a stub (:mod:`.student`);
- grades a repository, exercise by exercise, from the tests' pytest markers, and checks that
  in the student edition exactly the exercises' tests fail, each at its own stub (:mod:`.grade`);
- helps learners in notebooks: short hints at unfinished exercises and ``check_exercise``
  (:mod:`.hints`).

The exercises themselves are listed once, in :mod:`.exercises`. Command line::

    python -m mamlkit.classroom build-student OUT [--force]
    python -m mamlkit.classroom verify
    python -m mamlkit.classroom grade [--root DIR] [--tests DIR] [--json PATH] [--policy proportional]
    python -m mamlkit.classroom check 2.1
    python -m mamlkit.classroom gradescope autograder.zip
    python -m mamlkit.classroom nbgrader-source ../maml-nbgrader
"""

from .exercises import EXERCISES, Exercise, get_exercise, marker_name
from .grade import GradeReport, check_student_tests, grade, verify_exercise_tests
from .hints import check_exercise, install_exercise_hints
from .student import BuildError, MarkerError, build_student_edition, find_leaks

__all__ = [
    "EXERCISES",
    "BuildError",
    "Exercise",
    "GradeReport",
    "MarkerError",
    "build_student_edition",
    "check_exercise",
    "check_student_tests",
    "find_leaks",
    "get_exercise",
    "grade",
    "install_exercise_hints",
    "marker_name",
    "verify_exercise_tests",
]
