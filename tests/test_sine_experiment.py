"""The sine-wave experiment: tiny training runs, evaluation summaries, the table and the command."""

import math

import pytest
import torch

from mamlkit.evaluate import mean_confidence_interval
from mamlkit.lessons.sine_experiment import (
    PAPER_MSE,
    SEED_STUDY_METHODS,
    SeedStudy,
    SineEvaluation,
    evaluate_sine,
    evaluation_tasks,
    main,
    markdown_table,
    seed_study,
    train_sine_maml,
    train_sine_pretrained,
    tune_fine_tune_lr,
)


@pytest.fixture(scope="module")
def maml_run():
    return train_sine_maml(30, meta_batch_size=5, progress=False)


@pytest.mark.ex2_1
def test_maml_training_runs_and_is_repeatable(maml_run):
    assert len(maml_run.losses) == 30 and all(math.isfinite(v) for v in maml_run.losses)
    again = train_sine_maml(30, meta_batch_size=5, progress=False)
    assert all(torch.equal(maml_run.params[n], again.params[n]) for n in maml_run.params)
    assert maml_run.settings["iterations"] == 30 and maml_run.inner_lr == 0.01


@pytest.mark.ex2_1
def test_maml_and_the_baseline_start_from_the_same_theta():
    maml = train_sine_maml(1, meta_batch_size=2, meta_lr=1e-12, progress=False)
    pretrained = train_sine_pretrained(1, meta_batch_size=2, lr=1e-12, progress=False)
    for name in maml.params:
        torch.testing.assert_close(maml.params[name], pretrained.params[name])


@pytest.mark.ex2_1
@pytest.mark.ex3_3
def test_learned_inner_rates_move():
    run = train_sine_maml(20, meta_batch_size=5, learn_inner_lrs=True, inner_lr=0.01, meta_lr=1e-2, progress=False)
    assert set(run.inner_lr) == set(run.params)
    assert all(lr.shape == () and lr.requires_grad for lr in run.inner_lr.values())
    assert any(abs(lr.item() - 0.01) > 1e-4 for lr in run.inner_lr.values())


@pytest.mark.ex2_1
@pytest.mark.ex3_2
def test_first_order_and_second_order_runs_differ():
    second = train_sine_maml(5, meta_batch_size=5, progress=False)
    first = train_sine_maml(5, meta_batch_size=5, first_order=True, progress=False)
    assert second.losses[0] == first.losses[0], "the first step's loss is computed before any update"
    assert any(not torch.equal(second.params[n], first.params[n]) for n in second.params)


@pytest.mark.ex2_1
@pytest.mark.ex3_2
@pytest.mark.ex4_2
def test_evaluation_shapes_and_summaries(maml_run):
    result = evaluate_sine(maml_run.params, k_shot=5, steps=3, num_tasks=30, batch_size=7)
    assert result.mse.shape == result.support_mse.shape == (4, 30)
    assert result.steps == 3 and result.num_tasks == 30
    mean, ci = mean_confidence_interval(result.mse[2])
    assert result.mean[2] == pytest.approx(mean) and result.ci95[2] == pytest.approx(ci)
    assert result.median[2] == pytest.approx(result.mse[2].double().median().item(), rel=0.2)
    assert result.worst[1] == pytest.approx(result.mse[1].max().item())
    assert result.num_overshot[0] == 0, "nothing has overshot before the first step"


@pytest.mark.ex2_1
@pytest.mark.ex3_2
def test_evaluation_does_not_depend_on_the_batch_size(maml_run):
    a = evaluate_sine(maml_run.params, steps=2, num_tasks=20, batch_size=20)
    b = evaluate_sine(maml_run.params, steps=2, num_tasks=20, batch_size=6)
    torch.testing.assert_close(a.mse, b.mse)


@pytest.mark.ex2_1
def test_evaluation_tasks_are_the_columns_of_the_evaluation(maml_run):
    tasks = evaluation_tasks(10, 5, 100)
    result = evaluate_sine(maml_run.params, steps=0, num_tasks=10)
    from mamlkit.functional import forward
    from mamlkit.models import SineMLP
    outputs = torch.stack([forward(SineMLP(), maml_run.params, x) for x in tasks.batch.x_query])
    torch.testing.assert_close(result.mse[0], (outputs - tasks.batch.y_query).pow(2).mean(dim=(1, 2)))


def test_overflowed_and_rising_tasks_are_counted_not_hidden():
    grid = torch.tensor([[1.0, 1.0, 1.0], [0.5, 2.0, 1.0], [0.4, math.inf, math.nan]])
    support = torch.tensor([[1.0, 1.0, 1.0], [0.5, 3.0, 0.9], [0.3, math.inf, math.nan]])
    result = SineEvaluation(grid, support, k_shot=5)
    assert result.num_overshot == [0, 1, 2]
    assert math.isnan(result.mean[2]) or math.isinf(result.mean[2])
    assert result.worst[2] == math.inf and result.median[1] == 1.0
    only_inf = SineEvaluation(torch.tensor([[1.0, 1.0], [math.inf, 0.5]]), torch.ones(2, 2), k_shot=5)
    assert only_inf.worst[1] == math.inf, "an overflow is reported as inf, not as the largest float"
    mean, _, kept = result.mean_without_overshot(1)
    assert kept == 2 and mean == pytest.approx(0.75)
    assert result.row(2)["overshot"] == 2


@pytest.mark.ex2_1
@pytest.mark.ex3_2
def test_the_baseline_step_size_is_chosen_on_validation_waves(maml_run):
    best, scores = tune_fine_tune_lr(maml_run.params, candidates=(0.001, 0.01), steps=2, num_tasks=10)
    assert best in (0.001, 0.01) and set(scores) == {0.001, 0.01}
    assert scores[best] == min(scores.values())


@pytest.mark.ex2_1
@pytest.mark.ex3_2
def test_markdown_table_lists_paper_and_measured_numbers(maml_run):
    result = evaluate_sine(maml_run.params, steps=10, num_tasks=5)
    table = markdown_table([("MAML", result, "MAML"), ("other", result, None)])
    lines = table.splitlines()
    assert len(lines) == 2 + 6
    assert lines[2].startswith(f"| MAML | 1 | {PAPER_MSE['MAML'][1]:.2f} |")
    assert lines[-1].startswith("| other | 10 | – |")


@pytest.mark.ex2_1
def test_iterations_must_be_positive():
    with pytest.raises(ValueError, match="iterations must be a positive integer"):
        train_sine_maml(0)
    with pytest.raises(ValueError, match="num_tasks must be an integer >= 2"):
        evaluate_sine(train_sine_maml(1, meta_batch_size=2, progress=False).params, num_tasks=1)


@pytest.mark.ex2_1
@pytest.mark.ex3_2
def test_the_command_prints_the_table(capsys):
    assert main(["--iterations", "3", "--tasks", "4", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "| MAML | 10 | 0.35 |" in out and "| pretrained, tuned α = " in out
    assert "command: OMP_NUM_THREADS=1 python -m mamlkit.lessons.sine_experiment --iterations 3 --tasks 4 --no-progress" in out


def test_a_task_that_overshot_stays_counted_when_it_comes_back_down():
    grid = torch.tensor([[1.0, 1.0], [50.0, 0.8], [0.9, 0.7]])
    support = torch.tensor([[1.0, 1.0], [9.0, 0.5], [0.2, 0.4]])  # task 0 overshot at step 1
    result = SineEvaluation(grid, support, k_shot=5)
    assert result.overshot[:, 0].tolist() == [False, True, True]
    assert result.num_overshot == [0, 1, 1]


@pytest.mark.ex2_1
@pytest.mark.ex3_1
def test_loop_training_runs_the_per_task_meta_loss_and_matches_the_fast_twin(monkeypatch):
    """``method="loop"`` trains with ``outer_loop.meta_loss`` (Exercise 3.1), the same θ as the fast path."""
    import mamlkit.outer_loop as outer_loop

    calls = []
    original = outer_loop.meta_loss

    def counted(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(outer_loop, "meta_loss", counted)
    loop = train_sine_maml(3, meta_batch_size=4, seed=5, progress=False, method="loop")
    assert len(calls) == 3, f"each of the 3 outer steps should call meta_loss once, got {len(calls)} calls"
    assert loop.settings["method"] == "loop"
    calls.clear()
    fast = train_sine_maml(3, meta_batch_size=4, seed=5, progress=False, method="fast")
    assert not calls, "the fast path does not call the per-task meta_loss"
    for name in loop.params:
        torch.testing.assert_close(loop.params[name], fast.params[name], atol=1e-5, rtol=1e-4)


def test_loop_training_stops_at_an_unfinished_meta_loss(monkeypatch):
    import mamlkit.outer_loop as outer_loop

    def stub(*args, **kwargs):
        raise NotImplementedError("Exercise 3.1: the second-order outer step (meta-loss)")

    monkeypatch.setattr(outer_loop, "meta_loss", stub)
    with pytest.raises(NotImplementedError, match="Exercise 3.1"):
        train_sine_maml(2, meta_batch_size=2, progress=False, method="loop")
    with pytest.raises(ValueError, match="method must be 'fast' or 'loop'"):
        train_sine_maml(2, progress=False, method="batched")


@pytest.mark.ex2_1
@pytest.mark.ex3_2
def test_seed_study_trains_each_method_per_seed_and_reuses_given_runs():
    given = train_sine_maml(3, seed=1, progress=False)
    study = seed_study((0, 1), iterations=3, num_tasks=4, runs={("MAML", 1): given})
    assert study.seeds == [0, 1] and study.iterations == 3 and len(study.tuned_lrs) == 2
    assert list(study.mean) == list(study.median) == list(SEED_STUDY_METHODS)
    assert all(t.shape == (2, 11) for t in (*study.mean.values(), *study.median.values()))
    assert study.mean["MAML"][1].tolist() == evaluate_sine(given.params, 0.01, num_tasks=4).mean, "the given run is used"
    assert study.seconds["MAML"][1] == given.seconds
    fresh = train_sine_maml(3, seed=0, first_order=True, progress=False)
    assert study.mean["first-order MAML"][0].tolist() == evaluate_sine(fresh.params, 0.01, num_tasks=4).mean
    with pytest.raises(ValueError, match="trained 3 steps, not 4"):
        seed_study((1,), iterations=4, num_tasks=4, runs={("MAML", 1): given})
    with pytest.raises(ValueError, match="unknown method"):
        seed_study((1,), iterations=3, num_tasks=4, runs={("MAMl", 1): given})


def test_seed_study_summaries_count_wins_and_spread():
    mean = {"A": torch.tensor([[3.0, 1.0], [3.0, 2.0], [3.0, 4.0]]), "B": torch.tensor([[3.0, 2.5]] * 3)}
    study = SeedStudy([0, 1, 2], 10, mean, {k: v / 2 for k, v in mean.items()}, [0.01] * 3, {"A": [1.0] * 3, "B": [1.0] * 3})
    assert study.spread("A", 1) == {"mean": pytest.approx(7 / 3), "std": pytest.approx(torch.tensor([1.0, 2, 4]).std().item()),
                                    "min": 1.0, "max": 4.0}
    assert study.spread("A", 1, "median")["max"] == 2.0
    assert study.wins("A", "B", 1) == 2 and study.wins("B", "A", 1) == 1
    assert study.wins("A", "B", 1, worse_step=0) == 2, "A after 1 step against B before fine-tuning"
    table = study.markdown(report_steps=(1,))
    assert "| A | 1 | 2.33 ± 1.53 | 1.00–4.00 | 1.17 |" in table and "3 seeds" in table
