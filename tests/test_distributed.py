"""Meta-training over several processes gives the single-process update.

Each test starts 2 CPU processes joined by gloo on 127.0.0.1 (``torch.multiprocessing``), so
no GPU and no ``torchrun`` are needed; the tasks are synthetic (Gaussian blobs, random
12×12 images), so no Omniglot either. Computations run in float64 so that "the same" can mean
1e-10: the ranks only change the order of floating-point sums.
"""

import dataclasses
import os
import signal
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from mamlkit.data.toy_classification import BlobClassifier, sample_blob_tasks
from mamlkit.fast import meta_loss_batched
from mamlkit.functional import get_params
from mamlkit.inner_loop import init_inner_lrs
from mamlkit.losses import cross_entropy
from mamlkit.methods import MAML
from mamlkit.outer_loop import NonFiniteError, meta_loss
from mamlkit.run import distributed
from mamlkit.run.config import TrainConfig
from mamlkit.run.run_folder import read_metrics
from mamlkit.run.train import Trainer
from mamlkit.tasks import TaskBatch


# -- helpers, at module level so that spawned processes can import them -----------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _join(rank: int, world_size: int, port: int, fn, args) -> None:
    """Body of one spawned rank: what torchrun's environment gives, then ``fn(*args)``."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    torch.set_default_dtype(torch.float64)
    assert distributed.init_from_env("cpu", timeout_s=60)  # a hung collective fails the test, soon
    try:
        fn(*args)
    finally:
        distributed.shutdown()


def run_ranks(world_size: int, fn, *args) -> None:
    """Run ``fn(*args)`` on ``world_size`` processes that form a gloo group."""
    # An optimiser's first construction imports torch._dynamo (seconds); do it once, here.
    torch.optim.Adam([torch.zeros(1, requires_grad=True)])
    # fork: the children start in a fraction of a second, without importing torch again.
    # _join sets one thread per process before any work, so no OpenMP pool crosses the fork.
    mp.start_processes(_join, args=(world_size, free_port(), fn, args), nprocs=world_size,
                       start_method="fork")


class RandomImageTasks:
    """Stand-in for ``OmniglotTaskSampler``: ``sample(T, generator)`` draws from ``generator`` only.

    ``kill_at``: when asked for that sample (0-based), the process sends itself ``kill_signal``
    (SIGKILL: dies without clean-up; SIGINT: Ctrl-C).
    """

    def __init__(self, n_way: int, k_shot: int, n_query: int, kill_at: int | None = None,
                 kill_signal: int = signal.SIGKILL):
        self.n_way, self.k_shot, self.n_query, self.calls = n_way, k_shot, n_query, 0
        self.kill_at, self.kill_signal = kill_at, kill_signal

    def sample(self, meta_batch_size: int, generator: torch.Generator) -> TaskBatch:
        if self.calls == self.kill_at:
            os.kill(os.getpid(), self.kill_signal)
        self.calls += 1
        T, N, K, Q = meta_batch_size, self.n_way, self.k_shot, self.n_query
        labels = torch.arange(N)
        return TaskBatch(torch.rand(T, N * K, 1, 12, 12, generator=generator),
                         labels.repeat_interleave(K).expand(T, N * K).clone(),
                         torch.rand(T, N * Q, 1, 12, 12, generator=generator),
                         labels.repeat_interleave(Q).expand(T, N * Q).clone())


def tiny_config(**changes) -> TrainConfig:
    # 3 tasks on 2 processes: shards of 2 and 1, the uneven case.
    config = TrainConfig(n_way=3, k_shot=1, n_query=2, meta_batch_size=3, inner_lr=0.4, inner_steps=1,
                         eval_inner_steps=1, meta_lr=1e-2, iterations=4, channels=4, log_every=1,
                         val_every=2, val_tasks=4, checkpoint_every=2, seed=3, learn_inner_lrs=True)
    return dataclasses.replace(config, **changes)


def make_trainer(config: TrainConfig, run_dir, kill_at: int | None = None,
                 kill_signal: int = signal.SIGKILL) -> Trainer:
    def tasks(kill=None):
        return RandomImageTasks(config.n_way, config.k_shot, config.n_query, kill, kill_signal)

    trainer = Trainer(config, run_dir, {"train": tasks(kill_at), "val": tasks()})
    trainer.plot = lambda: None  # the figure is tested with plotting; here it would cost time
    return trainer


def blob_problem(learn_inner_lrs: bool):
    """A float64 blob classifier, its θ, inner rate(s) and 5 tasks, the same in every process."""
    model = BlobClassifier(n_way=3, hidden=8, generator=torch.Generator().manual_seed(0)).double()
    params = {n: p.detach().double().requires_grad_(True) for n, p in get_params(model).items()}
    inner_lr = ({n: t.double().requires_grad_(True) for n, t in init_inner_lrs(params, 0.3).items()}
                if learn_inner_lrs else 0.3)
    tasks = sample_blob_tasks(5, 3, 2, 4, torch.Generator().manual_seed(1))
    tasks = TaskBatch(tasks.x_support.double(), tasks.y_support, tasks.x_query.double(), tasks.y_query)
    return model, params, inner_lr, tasks


def _gradients_on_ranks(out, cases):
    for i, (method, chunk, learn_inner_lrs) in enumerate(cases):
        model, params, inner_lr, tasks = blob_problem(learn_inner_lrs)
        trainable = list(params.values()) + (list(inner_lr.values()) if learn_inner_lrs else [])
        compute = meta_loss if method == "loop" else meta_loss_batched

        def loss_of(part, compute=compute, model=model, params=params, inner_lr=inner_lr):
            return compute(model, params, part, cross_entropy, inner_lr, 2)

        distributed.meta_gradient(loss_of, tasks, trainable, task_chunk_size=chunk)
        torch.save([t.grad for t in trainable], f"{out}/case{i}-rank{distributed.rank()}.pt")


def _train_on_ranks(config, run_dir, kill_at=None):
    make_trainer(config, run_dir, kill_at).train(progress=False)


def without_timing(records):
    return [{k: v for k, v in r.items() if k != "seconds"} for r in records]


def assert_close_records(a, b, tol=1e-6):
    # Accuracies are float32 means, so shard-weighted sums of them agree to float32 rounding.
    assert len(a) == len(b)
    for x, y in zip(without_timing(a), without_timing(b)):
        assert x.keys() == y.keys()
        for k in x:
            assert x[k] == (y[k] if isinstance(y[k], str) else pytest.approx(y[k], abs=tol, rel=tol)), k


@pytest.fixture
def float64():
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


# -- tests ---------------------------------------------------------------------------------
@pytest.mark.parametrize("num_tasks, world_size, expected", [
    (6, 2, [(0, 3), (3, 6)]), (5, 2, [(0, 3), (3, 5)]), (5, 4, [(0, 2), (2, 3), (3, 4), (4, 5)]),
    (3, 1, [(0, 3)]),
])
def test_shards_cover_every_task_once_and_differ_by_at_most_one(num_tasks, world_size, expected):
    assert [(s.start, s.stop) for s in (distributed.shard(num_tasks, r, world_size)
                                        for r in range(world_size))] == expected


def test_more_processes_than_tasks_is_a_clear_error():
    with pytest.raises(ValueError, match=r"meta_batch_size \(2\) must be at least the number of processes \(4\)"):
        distributed.shard(2, 0, 4)


def test_running_alone_needs_no_process_group():
    assert not dist.is_initialized()
    assert distributed.world_size() == 1 and distributed.rank() == 0 and distributed.is_main_process()
    assert distributed.any_rank(True) and not distributed.any_rank(False)
    assert distributed.all_reduce_metrics({"a": 2.0}, weight=1.0) == {"a": 2.0}


def test_device_settings_that_cannot_work_are_clear_errors(monkeypatch):
    with pytest.raises(ValueError, match="device must be 'cpu' or 'cuda'"):
        distributed.init_from_env("mps")
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ValueError, match="without a number under torchrun"):
        distributed.init_from_env("cuda:1")
    assert not dist.is_initialized()


@pytest.mark.ex2_1
def test_alone_the_distributed_step_is_the_plain_step(float64):
    from mamlkit.methods import outer_step as plain_step

    results = []
    for step in (plain_step, distributed.outer_step):
        model, params, _, tasks = blob_problem(False)
        optimizer = torch.optim.Adam(params.values(), lr=0.1)
        metrics = [step(MAML(0.3, 2), model, params, tasks, optimizer, "fast", 2, True) for _ in range(2)]
        results.append((params, metrics))
    (plain, plain_metrics), (alone, alone_metrics) = results
    assert all(torch.equal(plain[n], alone[n]) for n in plain)
    assert plain_metrics == alone_metrics


@pytest.mark.ex3_3
@pytest.mark.ex2_1
def test_two_processes_give_the_single_process_meta_gradient(tmp_path, float64):
    # Uneven shards (3 + 2 tasks), learned inner rates, two inner steps, both methods and
    # chunking: the sum of the ranks' gradients is the gradient of the mean over all 5 tasks.
    cases = [("loop", None, True), ("fast", 2, True), ("fast", None, False)]
    run_ranks(2, _gradients_on_ranks, str(tmp_path), cases)

    for i, (_, _, learn) in enumerate(cases):
        model, params, inner_lr, tasks = blob_problem(learn)
        trainable = list(params.values()) + (list(inner_lr.values()) if learn else [])
        loss, _ = meta_loss(model, params, tasks, cross_entropy, inner_lr, 2)  # one process, per task
        expected = torch.autograd.grad(loss, trainable)
        for r in range(2):
            got = torch.load(tmp_path / f"case{i}-rank{r}.pt")
            assert len(got) == len(expected)
            for g, e in zip(got, expected):
                assert e.abs().max() > 0
                torch.testing.assert_close(g, e, rtol=0, atol=1e-10)


@pytest.mark.parametrize("algorithm", [pytest.param("maml", marks=[pytest.mark.ex2_1, pytest.mark.ex3_3]),
                                       pytest.param("protonet", marks=pytest.mark.ex5_1)])
def test_two_processes_train_like_one(tmp_path, float64, algorithm):
    config = tiny_config(algorithm=algorithm, learn_inner_lrs=algorithm == "maml")
    run_ranks(2, _train_on_ranks, config, tmp_path / "two")
    one = make_trainer(config, tmp_path / "one")
    one.train(progress=False)

    from mamlkit.run import checkpoints
    state = checkpoints.load(tmp_path / "two/checkpoint.pt")
    assert state["iteration"] == 4
    for name, p in one.params.items():
        torch.testing.assert_close(state["params"][name], p.detach(), rtol=0, atol=1e-10)
    for name, lr in (one.inner_lrs or {}).items():
        torch.testing.assert_close(state["inner_lrs"][name], lr.detach(), rtol=0, atol=1e-10)
    # Rank 0 alone writes the log (one line per step, not two), with the metrics of all tasks.
    assert_close_records(read_metrics(tmp_path / "two/metrics.jsonl"), read_metrics(tmp_path / "one/metrics.jsonl"))


@pytest.mark.ex2_1
@pytest.mark.ex3_3
def test_a_killed_two_process_run_resumes_exactly_on_one(tmp_path, float64):
    config = tiny_config()
    straight = make_trainer(config, tmp_path / "straight")
    straight.train(progress=False)

    # Both ranks die without clean-up while sampling step 4; step 2's checkpoint survives.
    with pytest.raises(mp.ProcessExitedException):
        run_ranks(2, _train_on_ranks, config, tmp_path / "run", 3)
    resumed = make_trainer(config, tmp_path / "run")
    assert resumed.resume_if_possible() and resumed.iteration == 2
    resumed.train(progress=False)

    for name, p in straight.params.items():
        torch.testing.assert_close(resumed.params[name], p, rtol=0, atol=1e-10)
    assert_close_records(read_metrics(tmp_path / "run/metrics.jsonl"), read_metrics(tmp_path / "straight/metrics.jsonl"))


def _raise_on_nan(out):
    model, params, inner_lr, tasks = blob_problem(False)
    if distributed.rank() == 1:  # this rank's share of the meta-gradient is NaN, the other's is not
        params["layers.0.weight"].register_hook(lambda grad: torch.full_like(grad, float("nan")))
    before = {n: p.detach().clone() for n, p in params.items()}
    optimizer = torch.optim.Adam(params.values(), lr=0.1)
    try:
        distributed.outer_step(MAML(inner_lr, 1), model, params, tasks, optimizer)
    except NonFiniteError:
        assert all(torch.equal(before[n], p) for n, p in params.items())
        open(f"{out}/rank{distributed.rank()}-raised", "w").close()


@pytest.mark.ex2_1
def test_a_non_finite_gradient_on_one_rank_stops_every_rank(tmp_path):
    run_ranks(2, _raise_on_nan, str(tmp_path))  # would hang if one rank went on alone
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rank0-raised", "rank1-raised"]


def _ctrl_c_on_rank_1(config, run_dir):
    # Only rank 1 gets Ctrl-C, while sampling step 3; rank 0 must stop after the same step.
    trainer = make_trainer(config, run_dir, kill_at=2 if distributed.rank() == 1 else None,
                           kill_signal=signal.SIGINT)
    try:
        trainer.train(progress=False)
    except KeyboardInterrupt:
        open(f"{run_dir}/rank{distributed.rank()}-stopped-at-{trainer.iteration}", "w").close()


@pytest.mark.ex3_3
def test_ctrl_c_on_one_process_stops_all_after_the_same_step(tmp_path, float64):
    config = tiny_config(checkpoint_every=10, val_every=10)
    run_ranks(2, _ctrl_c_on_rank_1, config, tmp_path)
    assert sorted(p.name for p in tmp_path.glob("rank*")) == ["rank0-stopped-at-3", "rank1-stopped-at-3"]
    from mamlkit.run import checkpoints
    assert checkpoints.load(tmp_path / "checkpoint.pt")["iteration"] == 3


def _command_on_ranks(rank, world_size, port, argv, out):
    # What torchrun gives each process, then the training command itself, with stand-in tasks.
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    import contextlib

    import mamlkit.run.train
    from mamlkit.run.cli import main

    mamlkit.run.train.omniglot_task_samplers = lambda c: {
        "train": RandomImageTasks(c.n_way, c.k_shot, c.n_query),
        "val": RandomImageTasks(c.n_way, c.k_shot, c.n_query)}
    with open(f"{out}/stdout{rank}", "w") as f, contextlib.redirect_stdout(f):
        status = main(argv)
    open(f"{out}/status{rank}-{status}", "w").close()


@pytest.mark.ex2_1
def test_the_train_command_under_torchrun_variables(tmp_path):
    run_dir = tmp_path / "run"
    argv = ["train", "--run-dir", str(run_dir), "--n-way", "3", "--n-query", "2", "--meta-batch-size", "3",
            "--channels", "4", "--iterations", "2", "--log-every", "1", "--val-every", "2",
            "--val-tasks", "4", "--no-progress"]
    torch.optim.Adam([torch.zeros(1, requires_grad=True)])  # see run_ranks
    mp.start_processes(_command_on_ranks, args=(2, free_port(), argv, str(tmp_path)), nprocs=2,
                       start_method="fork")
    assert sorted(p.name for p in tmp_path.glob("status*")) == ["status0-0", "status1-0"]
    assert (tmp_path / "stdout0").read_text().startswith("2 processes share each meta-batch of 3 tasks")
    assert (tmp_path / "stdout1").read_text() == "", "only rank 0 speaks"
    assert [r["iteration"] for r in read_metrics(run_dir / "metrics.jsonl")] == [1, 2, 2]  # train, train, val
    assert (run_dir / "model.pt").exists() and not dist.is_initialized()


def test_more_processes_than_tasks_stops_the_command_with_one_line(tmp_path):
    argv = ["train", "--run-dir", str(tmp_path / "run"), "--n-way", "3", "--meta-batch-size", "1",
            "--channels", "4", "--iterations", "1", "--no-progress"]
    mp.start_processes(_command_on_ranks, args=(2, free_port(), argv, str(tmp_path)), nprocs=2,
                       start_method="fork")
    assert sorted(p.name for p in tmp_path.glob("status*")) == ["status0-2", "status1-2"]
