"""The course's exercises: the one list that stubs, pytest markers, notebooks and grading share.

Every exercise has an id such as ``"2.1"``. The same id appears in four places:

- the solution region in the code, ``### BEGIN SOLUTION (Exercise 2.1)`` ... ``### END SOLUTION``;
- the message of the stub that replaces it in the student edition,
  ``NotImplementedError("Exercise 2.1: ...")``;
- the pytest marker of its tests, ``@pytest.mark.ex2_1`` (see :func:`marker_name`);
- the heading of the notebook section that introduces it, ``## Exercise 2.1 · The inner loop``.

To add an exercise, add an :class:`Exercise` to :data:`EXERCISES`; ``tests/conftest.py``
registers its marker and the grader picks it up.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = [
    "EXERCISES",
    "Exercise",
    "exercise_id_from_marker",
    "get_exercise",
    "marker_expression",
    "marker_name",
]

_ID = re.compile(r"^[1-9][0-9]*\.[1-9][0-9]*$")
_MARKER = re.compile(r"^ex([1-9][0-9]*)_([1-9][0-9]*)$")


def marker_name(exercise_id: str) -> str:
    """The pytest marker of an exercise: ``"2.1"`` -> ``"ex2_1"``."""
    if not _ID.match(exercise_id):
        raise ValueError(f"exercise ids look like '2.1' (chapter.number), got {exercise_id!r}")
    return "ex" + exercise_id.replace(".", "_")


def exercise_id_from_marker(marker: str) -> str | None:
    """The inverse of :func:`marker_name`: ``"ex2_1"`` -> ``"2.1"``; ``None`` for other markers."""
    match = _MARKER.match(marker)
    return f"{match[1]}.{match[2]}" if match else None


@dataclass(frozen=True)
class Exercise:
    """One exercise of the course.

    Attributes:
        id: ``"chapter.number"``, e.g. ``"2.1"``.
        title: a short noun phrase, shown in stub messages and grade tables.
        points: what the exercise is worth when all of its tests pass.
        notebook: the notebook that introduces it, relative to the repository root.
        module: the package file the learner edits, or ``None`` for an exercise solved in
            the notebook itself.
        task: what the learner does, phrased to fit "<task> in <file>", e.g. "implement
            ``adapt``"; the notebook hint shows it when the learner reaches the stub.
        solution_only: strings that occur only inside the solution (a private helper's name,
            say). The leak check fails if one of them is left in the student edition.
    """

    id: str
    title: str
    points: int
    notebook: str
    module: str | None = None
    task: str = ""
    solution_only: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        marker_name(self.id)  # validates the id
        if self.points <= 0:
            raise ValueError(f"Exercise {self.id}: points must be positive, got {self.points}")
        if not self.notebook.endswith(".ipynb"):
            raise ValueError(f"Exercise {self.id}: notebook must be an .ipynb path, got {self.notebook!r}")
        if self.module is not None and not self.module.endswith(".py"):
            raise ValueError(f"Exercise {self.id}: module must be a .py path or None, got {self.module!r}")

    @property
    def marker(self) -> str:
        """The pytest marker of this exercise's tests, e.g. ``"ex2_1"``."""
        return marker_name(self.id)

    @property
    def label(self) -> str:
        """``"Exercise 2.1"``: how the exercise is named in code, notebooks and messages."""
        return f"Exercise {self.id}"

    def stub_message(self, *, in_notebook: bool = False) -> str:
        """The message of the ``NotImplementedError`` that replaces the solution."""
        if in_notebook:
            return f"{self.label}: {self.title}; replace this line with your code"
        return f"{self.label}: {self.title}; see {self.notebook}"


#: The exercises of the course, in the order the notebooks introduce them. Each ``task`` and
#: ``solution_only`` matches the solution regions in ``module``; keep them in step when the
#: solution changes (``tests/test_student_edition.py`` builds the student edition and checks).
EXERCISES: tuple[Exercise, ...] = (
    Exercise(
        id="1.1",
        title="`q_gradients`: Q = 3a³ − b² with backward()",
        points=10,
        notebook="notebooks/01_autograd_basics.ipynb",
        module="mamlkit/lessons/autograd_warmups.py",
        task="implement `q_gradients` (compute Q, call backward on it, return a.grad and b.grad)",
        solution_only=("3 * a**3 - b**2", "Q.backward("),
    ),
    Exercise(
        id="1.2",
        title="`product_gradients`: gradients as values with torch.autograd.grad",
        points=10,
        notebook="notebooks/01_autograd_basics.ipynb",
        module="mamlkit/lessons/autograd_warmups.py",
        task="implement `product_gradients` with one call of torch.autograd.grad",
        solution_only=("torch.autograd.grad(x * y",),
    ),
    Exercise(
        id="1.3",
        title="`two_step_factor`: the meta-gradient's factor after two inner steps",
        points=5,
        notebook="notebooks/01_autograd_basics.ipynb",
        module="mamlkit/lessons/autograd_warmups.py",
        task="implement `two_step_factor` (the closed form of the factor, from section 6)",
        solution_only=("(1.0 - inner_lr * curvature) ** 2",),
    ),
    Exercise(
        id="1.4",
        title="`one_step_inner_lr`: the step size that lands on the minimum",
        points=5,
        notebook="notebooks/01_autograd_basics.ipynb",
        module="mamlkit/lessons/autograd_warmups.py",
        task="implement `one_step_inner_lr` (the α at which one step reaches the support minimum)",
        solution_only=("return 1.0 / curvature",),
    ),
    Exercise(
        id="2.1",
        title="the inner loop: `gradient_step` and `adapt`",
        points=10,
        notebook="notebooks/02_inner_loop.ipynb",
        module="mamlkit/inner_loop.py",
        task="write the second-order gradient in `gradient_step` and the loop of `adapt`",
        solution_only=("tuple(params.values()), create_graph=True", "adapted = gradient_step(loss, adapted"),
    ),
    Exercise(
        id="3.1",
        title="the second-order outer step (meta-loss)",
        points=20,
        notebook="notebooks/03_outer_loop.ipynb",
        module="mamlkit/outer_loop.py",
        task="complete the per-task loop of `meta_loss` (adapt to the support set, then the query loss)",
        solution_only=("losses.append(loss_fn(query_outputs, task.y_query))",),
    ),
    Exercise(
        id="3.2",
        title="first-order MAML",
        points=10,
        notebook="notebooks/03_outer_loop.ipynb",
        module="mamlkit/inner_loop.py",
        task="implement `first_order_gradients` (the inner gradient as a constant)",
        solution_only=("return torch.autograd.grad(loss, tuple(params.values()))",),
    ),
    Exercise(
        id="3.3",
        title="learned inner learning rates",
        points=10,
        notebook="notebooks/03_outer_loop.ipynb",
        module="mamlkit/inner_loop.py",
        task="implement `init_inner_lrs`",
        solution_only=("torch.tensor(float(inner_lr), dtype=p.dtype",),
    ),
    Exercise(
        id="3.4",
        title="MAML end to end: the meta-training loop on sine waves",
        points=15,
        notebook="notebooks/03_outer_loop.ipynb",
        module="mamlkit/lessons/maml_from_scratch.py",
        task="write the loop body of `train_maml_from_scratch` (sample the tasks, adapt each with one "
             "second-order SGD step, the meta-loss, one Adam step, log the loss)",
        solution_only=("query_losses.append(mse(forward(model, adapted, x_query), y_query))", "meta_loss.backward()"),
    ),
    Exercise(
        id="4.1",
        title="the Omniglot task sampler",
        points=10,
        notebook="notebooks/04_omniglot_maml.ipynb",
        module="mamlkit/data/sampler.py",
        task="implement `OmniglotTaskSampler.sample_with_info`",
        solution_only=("keys.topk(",),
    ),
    Exercise(
        id="4.2",
        title="the 95% confidence interval of evaluation",
        points=10,
        notebook="notebooks/04_omniglot_maml.ipynb",
        module="mamlkit/evaluate.py",
        task="implement `mean_confidence_interval`",
        solution_only=("1.96 * values.std(unbiased=True).item() / math.sqrt(n)",),
    ),
    Exercise(
        id="5.1",
        title="Prototypical Networks: prototypes and their logits",
        points=10,
        notebook="notebooks/05_maml_neighbours.ipynb",
        module="mamlkit/methods/protonet.py",
        task="implement `prototypes` (class means of the support embeddings) and "
             "`prototype_logits` (negative squared distances)",
        solution_only=("one_hot.transpose(-1, -2) @ features", "return -(differences ** 2).sum(dim=-1)"),
    ),
    Exercise(
        id="5.2",
        title="ANIL: the head-only inner loop",
        points=10,
        notebook="notebooks/05_maml_neighbours.ipynb",
        module="mamlkit/methods/anil.py",
        task="implement `adapt_head` (gradient steps on the head's weight and bias only)",
        solution_only=("loss_fn(head_logits(adapted, features_support), y_support).sum()",),
    ),
)


def _check_unique(exercises: tuple[Exercise, ...]) -> None:
    seen: set[str] = set()
    for exercise in exercises:
        if exercise.id in seen:
            raise ValueError(f"Exercise {exercise.id} is listed twice in the registry")
        seen.add(exercise.id)


_check_unique(EXERCISES)


def get_exercise(key: str, exercises: tuple[Exercise, ...] = EXERCISES) -> Exercise:
    """Look an exercise up by ``"2.1"``, ``"Exercise 2.1"`` or its marker ``"ex2_1"``."""
    text = key.strip()
    if text.lower().startswith("exercise"):
        text = text[len("exercise"):].strip()
    text = exercise_id_from_marker(text) or text
    for exercise in exercises:
        if exercise.id == text:
            return exercise
    known = ", ".join(e.id for e in exercises)
    raise ValueError(f"no exercise {key!r}; the course has exercises {known}")


def marker_expression(exercises: tuple[Exercise, ...] = EXERCISES) -> str:
    """A pytest ``-m`` expression selecting the tests of all ``exercises``: ``"ex1_1 or ex1_2"``."""
    return " or ".join(exercise.marker for exercise in exercises)
