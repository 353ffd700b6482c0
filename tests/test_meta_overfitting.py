"""Meta-overfitting runs: the honest mode is plain MAML; the broken modes break what they claim."""

import pytest
import torch

from mamlkit.data.sinusoid import sample_sinusoid_tasks
from mamlkit.fast import meta_loss_batched
from mamlkit.functional import get_params
from mamlkit.lessons.meta_overfitting import train_meta_overfitting
from mamlkit.lessons.sine_experiment import train_sine_maml
from mamlkit.losses import mse
from mamlkit.models import SineMLP
from mamlkit.tasks import TaskBatch


@pytest.mark.ex2_1
def test_disjoint_mode_is_plain_maml_on_the_same_tasks():
    run = train_meta_overfitting("disjoint", 6, eval_every=3, num_val_tasks=4)
    reference = train_sine_maml(6, seed=0, progress=False)
    for name, p in reference.params.items():
        torch.testing.assert_close(run.params[name], p.detach(), rtol=0, atol=0)
    assert run.steps == [3, 6] and len(run.train_meta_loss) == len(run.val_meta_loss) == 2


@pytest.mark.ex2_1
def test_a_pool_of_one_task_is_memorised_while_new_tasks_stay_unsolved():
    run = train_meta_overfitting("fixed_pool", 300, eval_every=100, pool_size=1, meta_batch_size=4,
                                 meta_lr=1e-2, num_val_tasks=50)
    assert run.train_meta_loss[-1] < 0.1 * run.train_meta_loss[0], run.train_meta_loss
    assert run.val_meta_loss[-1] > 10 * run.train_meta_loss[-1], (run.train_meta_loss, run.val_meta_loss)


@pytest.mark.ex2_1
def test_query_is_support_scores_the_points_adapted_on():
    # The first outer step's objective, recomputed from the same θ and tasks: the query MSE for
    # the honest run, the MSE on the support points themselves for the other.
    model = SineMLP(generator=torch.Generator().manual_seed(0))
    tasks = sample_sinusoid_tasks(25, 10, 10, torch.Generator().manual_seed(1)).batch
    on_support = TaskBatch(tasks.x_support, tasks.y_support, tasks.x_support, tasks.y_support)
    for mode, expected_tasks in (("disjoint", tasks), ("query_is_support", on_support)):
        run = train_meta_overfitting(mode, 1, eval_every=1, num_val_tasks=2)
        expected = meta_loss_batched(model, get_params(model), expected_tasks, mse, 0.01, 1)[0]
        assert run.train_meta_loss[0] == pytest.approx(expected.item(), rel=1e-6), mode


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="mode must be one of"):
        train_meta_overfitting("overfit", 10)
    with pytest.raises(ValueError, match="multiple of eval_every"):
        train_meta_overfitting("disjoint", 10, eval_every=3)
    with pytest.raises(ValueError, match="pool_size"):
        train_meta_overfitting("fixed_pool", 10, eval_every=5, pool_size=0)
