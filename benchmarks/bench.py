"""``python -m mamlkit bench``: how long one second-order meta-step takes, side by side.

Every contender computes the same thing from the same θ and the same tasks: the gradient
with respect to θ of the mean query loss after ``inner_steps`` differentiable SGD steps on
each task's support set (second-order MAML). The optimiser step is left out for all.

Contenders:

- ``mamlkit-fast``: the course's training step, :func:`mamlkit.outer_loop.outer_step` with
  ``method="fast"`` (:func:`mamlkit.fast.meta_loss_batched`) and the training default
  ``task_chunk_size``: that many tasks adapted at once, their gradients accumulated, and on a
  CPU as many groups of tasks at a time as torch has threads (``task_threads``). The memory
  table also shows the fast path with all tasks at once.
- ``loop-reference``: a plain per-task loop written out below with
  :func:`torch.func.functional_call` and ``torch.autograd.grad(create_graph=True)``, independent
  of the rest of the package. The same loop in float64, on the same θ and tasks, is the
  reference.

Correctness is checked in float64: every contender's step, run once on a float64 copy of the
problem, must give the float64 loop's meta-gradient (relative error ≤ ``TOLERANCE``; in practice
about 1e-15). A float32 gradient is no reference: its rounding depends on the kernels torch picks
and grows with the inner steps (measured with torch 2.13 and one thread: every float32 contender
about 5e-2 from the float64 gradient in the 20-way 5-step setting, and the float32 loop 3e-4 in the
CS330 setting, where the fast path is 4e-5). The timed float32 runs' distance from the float64
gradient is reported beside it, for information.
- ``higher``: the ``higher`` library's ``innerloop_ctx`` with a differentiable SGD.
- ``torchopt``: TorchOpt's ``MetaSGD`` written as its MAML Omniglot example writes it: the
  module's parameters updated differentiably in place of θ, then restored with
  ``extract_state_dict`` / ``recover_state_dict`` before the next task.

``higher`` and ``torchopt`` are skipped, with a note, when they are not installed
(``pip install -r benchmarks/requirements.txt``).

The loop reference and ``higher`` call ``backward`` once per task, as the ``higher`` examples
do, so they keep one task's graph alive at a time; ``torchopt`` stacks the query losses and calls
``backward`` once, as its example does; ``mamlkit-fast`` keeps every task's graph of a chunk until
that chunk's ``backward`` (``outer_step``'s ``task_chunk_size``; see the memory table).

Examples (``python benchmarks/bench.py`` takes the same options)::

    python -m mamlkit bench --threads 1 --repeats 5 --settings paper-5way
    python -m mamlkit bench --quick --skip-memory          # a few seconds, for tests
    python -m mamlkit bench --device cuda --json bench.json
"""

from __future__ import annotations

import argparse
import ctypes
import dataclasses
import datetime
import gc
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

import torch
import torch.nn.functional as F
from torch.func import functional_call

from mamlkit.fast import meta_loss_batched
from mamlkit.functional import get_params
from mamlkit.lessons.memory_cost import profiled_peak
from mamlkit.losses import cross_entropy
from mamlkit.models import Conv4
from mamlkit.outer_loop import outer_step
from mamlkit.run.config import TrainConfig
from mamlkit.tasks import TaskBatch

FAST = "mamlkit-fast"
LOOP = "loop-reference"
HIGHER = "higher"
TORCHOPT = "torchopt"
CONTENDERS = (FAST, LOOP, HIGHER, TORCHOPT)
# Contenders that need a package the course itself does not (benchmarks/requirements.txt).
OPTIONAL = {HIGHER: "higher", TORCHOPT: "torchopt"}
# The course's default meta-step (``TrainConfig.task_chunk_size``): the fast path adapts this
# many tasks at once and accumulates their gradients, which keeps the working set small.
TRAINING_CHUNK = TrainConfig().task_chunk_size
# float32 gradients of the same mathematics agree far better than this; a larger error
# means a contender computes something else (e.g. silently first-order).
TOLERANCE = 1e-4
PROBE_TAG = "BENCH_PROBE_RESULT "


@dataclass(frozen=True)
class Setting:
    """One benchmark configuration: task shape, meta-batch, inner loop, network width."""

    name: str
    n_way: int
    k_shot: int
    n_query: int
    meta_batch_size: int
    inner_steps: int
    inner_lr: float
    channels: int = 64
    image_size: int = 28

    def describe(self, with_steps: bool = True) -> str:
        steps = f"{self.inner_steps} inner step{'s' if self.inner_steps != 1 else ''}, "
        return (f"{self.n_way}-way {self.k_shot}-shot, {self.n_query} query per class, "
                f"meta-batch {self.meta_batch_size}, {steps if with_steps else ''}"
                f"inner lr {self.inner_lr}, conv4 with {self.channels} filters, "
                f"{self.image_size}×{self.image_size}×1 images")


SETTINGS = {
    s.name: s for s in (
        Setting("paper-5way", n_way=5, k_shot=1, n_query=1, meta_batch_size=32, inner_steps=1, inner_lr=0.4),
        Setting("cs330", n_way=5, k_shot=1, n_query=15, meta_batch_size=16, inner_steps=1, inner_lr=0.4),
        Setting("paper-20way", n_way=20, k_shot=1, n_query=1, meta_batch_size=16, inner_steps=5, inner_lr=0.1),
    )
}
MEMORY_SETTING = "paper-5way"


def quick(setting: Setting) -> Setting:
    """The same setting shrunk for tests: 2 tasks, 8 filters."""
    return dataclasses.replace(setting, meta_batch_size=2, channels=8)


# ---------------------------------------------------------------------------------------------
# The problem every contender solves


@dataclass
class Problem:
    setting: Setting
    model: Conv4        # the architecture, batch norm on batch statistics
    params: dict        # θ: {name: leaf tensor}
    tasks: TaskBatch


def make_problem(setting: Setting, device: torch.device | str = "cpu", seed: int = 0,
                 dtype: torch.dtype = torch.float32) -> Problem:
    """Seeded θ and Omniglot-shaped random tasks with balanced labels."""
    model = Conv4(setting.n_way, channels=setting.channels, generator=torch.Generator().manual_seed(seed))
    model = model.to(device=device, dtype=dtype)
    g = torch.Generator().manual_seed(seed + 1)
    t, n, size = setting.meta_batch_size, setting.n_way, setting.image_size

    def images(per_class):
        return torch.rand(t, n * per_class, 1, size, size, generator=g, dtype=dtype)

    def labels(per_class):
        return torch.arange(n).repeat_interleave(per_class).expand(t, -1).clone()

    tasks = TaskBatch(images(setting.k_shot), labels(setting.k_shot),
                      images(setting.n_query), labels(setting.n_query)).to(device)
    return Problem(setting, model, get_params(model), tasks)


def package_available(package: str) -> bool:
    """Whether ``package`` imports here (TorchOpt also fails to import on an unsupported torch)."""
    try:
        __import__(package)
    except Exception:
        return False
    return True


def package_version(package: str) -> Optional[str]:
    try:
        from importlib.metadata import version
        return version(package)
    except Exception:
        return None


def higher_available() -> bool:
    return package_available("higher")


def torchopt_available() -> bool:
    return package_available("torchopt")


def contender_available(contender: str) -> bool:
    """False for an optional contender whose package is missing; True otherwise."""
    if contender == HIGHER:
        return higher_available()
    if contender == TORCHOPT:
        return torchopt_available()
    return True


@dataclass
class MetaStep:
    """One contender's meta-step, set up and ready: calling it returns the meta-gradient.

    ``leaves`` are the tensors whose ``.grad`` the step fills: θ itself, or the parameters of
    the module that holds a copy of θ (higher).
    """

    run: Callable[[], None]
    leaves: list

    def clear(self) -> None:
        for p in self.leaves:
            p.grad = None

    def __call__(self) -> list:
        self.clear()
        self.run()
        return [p.grad for p in self.leaves]


def build_step(problem: Problem, contender: str, task_chunk_size: Optional[int] = None,
               task_threads: Optional[int] = None) -> MetaStep:
    """The contender's meta-step on ``problem`` (set-up done here, outside any timing).

    ``task_chunk_size`` and ``task_threads`` are :func:`outer_step`'s, for ``mamlkit-fast``.
    """
    if contender == FAST:
        return _fast_step(problem, task_chunk_size, task_threads)
    if task_chunk_size is not None:
        raise ValueError(f"task_chunk_size applies to {FAST} only, not {contender}")
    if contender == LOOP:
        return _loop_step(problem)
    if contender == HIGHER:
        return _higher_step(problem)
    if contender == TORCHOPT:
        return _torchopt_step(problem)
    raise ValueError(f"unknown contender {contender!r}; choose from {', '.join(CONTENDERS)}")


def _fast_step(problem: Problem, task_chunk_size: Optional[int], task_threads: Optional[int]) -> MetaStep:
    s, theta = problem.setting, list(problem.params.values())
    if task_chunk_size is not None:
        # outer_step's own chunking; lr 0 keeps θ unchanged, so every run sees the same θ.
        optimizer = torch.optim.SGD(theta, lr=0.0)

        def chunked() -> None:
            outer_step(problem.model, problem.params, problem.tasks, optimizer, cross_entropy,
                       s.inner_lr, s.inner_steps, method="fast", task_chunk_size=task_chunk_size,
                       task_threads=task_threads)
        return MetaStep(chunked, theta)

    def run() -> None:
        loss, _ = meta_loss_batched(problem.model, problem.params, problem.tasks, cross_entropy,
                                    s.inner_lr, s.inner_steps)
        loss.backward()
    return MetaStep(run, theta)


def _loop_step(problem: Problem) -> MetaStep:
    """The plain per-task loop, written out so that it depends on nothing else in mamlkit."""
    s, model, tasks = problem.setting, problem.model, problem.tasks
    names, theta = list(problem.params), list(problem.params.values())
    num_tasks = tasks.num_tasks

    def logits(params: list, x: torch.Tensor) -> torch.Tensor:
        return functional_call(model, dict(zip(names, params)), (x,))

    def run() -> None:
        for i in range(num_tasks):
            adapted = theta
            for _ in range(s.inner_steps):
                support_loss = F.cross_entropy(logits(adapted, tasks.x_support[i]), tasks.y_support[i])
                # create_graph=True keeps the inner gradient differentiable: second order.
                grads = torch.autograd.grad(support_loss, adapted, create_graph=True)
                adapted = [p - s.inner_lr * g for p, g in zip(adapted, grads)]
            query_loss = F.cross_entropy(logits(adapted, tasks.x_query[i]), tasks.y_query[i])
            # One backward per task frees that task's graph before the next task starts.
            (query_loss / num_tasks).backward()
    return MetaStep(run, theta)


def _higher_step(problem: Problem) -> MetaStep:
    import higher

    s, tasks = problem.setting, problem.tasks
    module = _module_copy(problem)
    weights = list(module.parameters())
    inner_opt = torch.optim.SGD(weights, lr=s.inner_lr)
    num_tasks = tasks.num_tasks

    def run() -> None:
        for i in range(num_tasks):
            with higher.innerloop_ctx(module, inner_opt, copy_initial_weights=False,
                                      track_higher_grads=True) as (fmodel, diffopt):
                for _ in range(s.inner_steps):
                    diffopt.step(F.cross_entropy(fmodel(tasks.x_support[i]), tasks.y_support[i]))
                query_loss = F.cross_entropy(fmodel(tasks.x_query[i]), tasks.y_query[i])
                (query_loss / num_tasks).backward()
    return MetaStep(run, weights)


def _module_copy(problem: Problem) -> Conv4:
    """An ordinary Conv4 module holding a copy of θ (batch norm on batch statistics)."""
    s, tasks = problem.setting, problem.tasks
    module = Conv4(s.n_way, channels=s.channels).to(tasks.x_support.device, tasks.x_support.dtype)
    with torch.no_grad():
        for (name, p), (theta_name, theta) in zip(module.named_parameters(), problem.params.items()):
            assert name == theta_name, (name, theta_name)
            p.copy_(theta)
    return module


def _torchopt_step(problem: Problem) -> MetaStep:
    """TorchOpt 0.7.3's MetaSGD, as in its ``examples/few-shot/maml_omniglot.py``."""
    import torchopt

    s, tasks = problem.setting, problem.tasks
    module = _module_copy(problem)
    # MetaSGD's step replaces the module's parameters by differentiable updates of them.
    inner_opt = torchopt.MetaSGD(module, lr=s.inner_lr)
    num_tasks = tasks.num_tasks

    def run() -> None:
        net_state = torchopt.extract_state_dict(module, by="reference", detach_buffers=True)
        opt_state = torchopt.extract_state_dict(inner_opt, by="reference")
        query_losses = []
        for i in range(num_tasks):
            for _ in range(s.inner_steps):
                inner_opt.step(F.cross_entropy(module(tasks.x_support[i]), tasks.y_support[i]))
            query_losses.append(F.cross_entropy(module(tasks.x_query[i]), tasks.y_query[i]))
            # Put θ back into the module (and reset the optimiser) for the next task.
            torchopt.recover_state_dict(module, net_state)
            torchopt.recover_state_dict(inner_opt, opt_state)
        torch.stack(query_losses).mean().backward()
    return MetaStep(run, list(module.parameters()))


# ---------------------------------------------------------------------------------------------
# Measurements


def as_float64(problem: Problem) -> Problem:
    """The same θ and tasks in float64 (not re-drawn: ``make_problem`` in float64 draws others)."""
    model = Conv4(problem.setting.n_way, channels=problem.setting.channels)
    model = model.to(device=problem.tasks.x_support.device, dtype=torch.float64)
    params = {n: t.detach().double().requires_grad_(True) for n, t in problem.params.items()}
    tasks = TaskBatch(*(t.double() if t.is_floating_point() else t for t in problem.tasks))
    return Problem(problem.setting, model, params, tasks)


def float64_reference(problem: Problem) -> list:
    """The loop's meta-gradient in float64 from the same θ and tasks: the reference gradient."""
    return [g.detach() for g in build_step(as_float64(problem), LOOP)()]


def relative_error(actual: Sequence[torch.Tensor], expected: Sequence[torch.Tensor]) -> float:
    """Relative L2 distance ‖a − e‖ / ‖e‖ over all tensors at once (in float64)."""
    a = torch.cat([t.detach().reshape(-1).double().cpu() for t in actual])
    e = torch.cat([t.detach().reshape(-1).double().cpu() for t in expected])
    return ((a - e).norm() / e.norm()).item()


def speedups(medians: dict) -> dict:
    """How many times faster each contender is than the fastest contender other than mamlkit-fast.

    Returns ``{name: best_other / median}`` (> 1 is faster), or ``{}`` with no other contender.
    """
    others = [t for name, t in medians.items() if name != FAST]
    if not others:
        return {}
    best_other = min(others)
    return {name: best_other / t for name, t in medians.items()}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_interleaved(steps: dict, reference: list, repeats: int, warmup: int,
                     device: torch.device) -> tuple[dict, dict]:
    """Warm up every contender, then time them in turn (A, B, C, A, B, C, ...).

    Returns:
        ``(times, errors)``: seconds of every timed run per contender, and the largest relative
        gradient error against ``reference`` seen in any of those runs.
    """
    for _ in range(warmup):
        for step in steps.values():
            step()
    times = {name: [] for name in steps}
    errors = {name: 0.0 for name in steps}
    for _ in range(repeats):
        for name, step in steps.items():
            gc.collect()
            _sync(device)
            start = time.perf_counter()
            grads = step()
            _sync(device)
            times[name].append(time.perf_counter() - start)
            errors[name] = max(errors[name], relative_error(grads, reference))
    return times, errors


def _status_bytes(field: str) -> Optional[int]:
    """A ``kB`` field of ``/proc/self/status`` (Linux) in bytes, or None where there is none."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return None


def _current_rss() -> Optional[int]:
    return _status_bytes("VmRSS")


def _peak_rss() -> int:
    """The process's peak resident set in bytes.

    Linux: ``VmHWM``, which ``/proc/self/clear_refs`` can restart. Not ``ru_maxrss``: a process
    started by fork + exec inherits its parent's peak there, so in a fresh probe process it
    reports the benchmark's own footprint.
    """
    peak = _status_bytes("VmHWM")
    if peak is not None:
        return peak
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # bytes on macOS, KiB elsewhere


def _reset_peak_rss() -> bool:
    """Return memory freed by malloc to the system and restart the peak-RSS counter (Linux)."""
    if _current_rss() is None:
        return False
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except (OSError, AttributeError):
        return False
    return True


def run_probe(spec: dict) -> tuple[dict, list]:
    """Build a fresh problem, run one contender's meta-step, and measure its peak memory.

    One warm-up step first (lazy initialisation stays out of the figures), then one timed step,
    then the measured step:

    - CUDA: growth of ``torch.cuda.max_memory_allocated``;
    - CPU, ``method="profiler"``: :func:`profiled_peak`;
    - CPU, ``method="rss"``: growth of the peak resident set, after returning freed memory to
      the system and restarting the kernel's peak counter (or, where that is impossible,
      growth of the peak over the first, cold step). Run it in a fresh process.

    Returns:
        ``({"peak_bytes", "seconds", "method"}, meta_gradient)``.
    """
    if spec.get("threads"):
        torch.set_num_threads(spec["threads"])
    device = torch.device(spec["device"])
    setting = Setting(**spec["setting"])
    rss = device.type == "cpu" and spec["method"] == "rss"
    # torch.profiler records the allocations of the calling thread only: profiled, the chunked
    # fast step runs its groups of tasks one at a time (the peak resident set sees all threads).
    profiled_threads = 1 if device.type == "cpu" and not rss else None
    step = build_step(make_problem(setting, device, spec["seed"]), spec["contender"],
                      spec.get("task_chunk_size"), profiled_threads)
    if rss and not _reset_peak_rss():
        base = _peak_rss()
        grads = step()
        return {"peak_bytes": max(0, _peak_rss() - base), "seconds": None,
                "method": "peak RSS growth, cold step"}, grads
    step()
    step.clear()
    _sync(device)
    start = time.perf_counter()
    step()
    _sync(device)
    seconds = time.perf_counter() - start
    step.clear()
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        grads = step()
        peak, method = torch.cuda.max_memory_allocated(device) - base, "cuda max_memory_allocated"
    elif rss:
        _reset_peak_rss()
        base = _current_rss()
        grads = step()
        peak, method = _peak_rss() - base, "peak RSS growth, warm step"
    else:
        peak, grads = profiled_peak(step)
        method = "torch.profiler, peak live tensor bytes"
    return {"peak_bytes": max(0, peak), "seconds": seconds, "method": method}, grads


def measure_memory(setting: Setting, contender: str, device: torch.device, seed: int,
                   method: str = "profiler", task_chunk_size: Optional[int] = None
                   ) -> tuple[dict, Optional[list]]:
    """Peak memory of one meta-step (see :func:`run_probe`); ``method="rss"`` uses a fresh process.

    Returns:
        ``(result, meta_gradient)``; on failure (e.g. out of memory) ``({"error": message}, None)``.
    """
    spec = {"setting": dataclasses.asdict(setting), "contender": contender, "seed": seed,
            "device": str(device), "threads": torch.get_num_threads(), "method": method,
            "task_chunk_size": task_chunk_size}
    if device.type == "cuda" or method != "rss":
        try:
            return run_probe(spec)
        except (RuntimeError, MemoryError) as error:  # torch's out-of-memory errors included
            if device.type == "cuda":
                torch.cuda.empty_cache()
            return {"error": f"failed: {str(error).splitlines()[0][:80]}"}, None
    with tempfile.TemporaryDirectory(prefix="mamlkit-bench-") as folder:
        spec["grads_path"] = os.path.join(folder, "grads.pt")
        done = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--probe", json.dumps(spec)],
                              capture_output=True, text=True)
        for line in reversed(done.stdout.splitlines()):
            if line.startswith(PROBE_TAG):
                return json.loads(line[len(PROBE_TAG):]), torch.load(spec["grads_path"], weights_only=True)
    tail = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
    return {"error": f"probe failed ({tail[:80]})"}, None


# ---------------------------------------------------------------------------------------------
# Reporting


def describe_machine(device: torch.device, threads_set: bool) -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    info = {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "threads_from": "--threads" if threads_set else "torch default",
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "device": str(device),
        "higher": package_version("higher") if higher_available() else None,
        "torchopt": package_version("torchopt") if torchopt_available() else None,
        "load_average_1min": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "time": datetime.datetime.now().isoformat(timespec="seconds"),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def machine_lines(info: dict) -> list:
    lines = [
        f"machine: {info['cpu']}, {info['cores']} cores; torch {info['torch']} "
        f"(Python {info['python']}), {info['torch_threads']} threads ({info['threads_from']}, "
        f"OMP_NUM_THREADS={info['OMP_NUM_THREADS'] or 'unset'}); device {info['device']}"
        + (f" ({info['gpu']})" if "gpu" in info else ""),
        f"load average (1 min) at start: {info['load_average_1min']}; {info['time']}",
    ]
    for package in OPTIONAL.values():
        lines.append(f"{package}: " + (info.get(package) or
                                       "not installed (pip install -r benchmarks/requirements.txt)"))
    return lines


def _mib(result: Optional[dict]) -> str:
    if not result:
        return "–"
    if "error" in result:
        return result["error"]
    mib = result["peak_bytes"] / 2 ** 20
    return f"{mib:.1f} MiB" if mib < 10 else f"{mib:.0f} MiB"


def _fmt_error(error: Optional[float], name: str) -> str:
    if name == LOOP and error is None:
        return "0 (reference)"
    if error is None:
        return "–"
    flag = "" if error <= TOLERANCE else " ✗ FAIL"
    return f"{error:.1e}{flag}"


def setting_table(result: dict) -> list:
    lines = ["| contender | median s | × faster than best other | rel. grad error (float64) "
             "| float32 runs vs float64 | peak memory |",
             "|---|---|---|---|---|---|"]
    for name, r in result["contenders"].items():
        ratio = f"{r['speedup_vs_best_other']:.2f}×" if r.get("speedup_vs_best_other") else "–"
        lines.append(f"| {name} | {r['median_s']:.3f} | {ratio} | "
                     f"{_fmt_error(r['max_rel_grad_error'], 'float64 check')} | "
                     f"{r['float32_rel_error']:.1e} | {_mib(r.get('memory'))} |")
    return lines


def memory_table(rows: list) -> list:
    lines = ["| inner steps | contender | peak memory | s (one warm run) | rel. grad error |",
             "|---|---|---|---|---|"]
    for row in rows:
        m = row["memory"]
        seconds = f"{m['seconds']:.3f}" if m.get("seconds") is not None else "–"
        lines.append(f"| {row['inner_steps']} | {row['contender']} | {_mib(m)} | {seconds} | "
                     f"{_fmt_error(row.get('rel_grad_error'), row['contender'])} |")
    return lines


# ---------------------------------------------------------------------------------------------
# Command line


def require_positive(parser: argparse.ArgumentParser, args: argparse.Namespace, *options: str) -> None:
    """``parser.error`` (exit 2, one line) for any of ``options`` given below 1; None passes."""
    for option in options:
        value = getattr(args, option)
        if value is not None and value < 1:
            parser.error(f"--{option.replace('_', '-')} must be at least 1, got {value}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m mamlkit bench",
        description="Time one second-order MAML meta-step: mamlkit's fast path, a plain "
                    "per-task loop, higher and TorchOpt, on Omniglot-shaped random tasks.")
    parser.add_argument("--settings", nargs="+", choices=sorted(SETTINGS), default=list(SETTINGS),
                        help="which settings to run (default: all)")
    parser.add_argument("--contenders", nargs="+", choices=CONTENDERS, default=list(CONTENDERS),
                        help="which contenders to time (default: all; the loop reference always "
                             "computes the reference gradient)")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per contender (default: 5)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed runs first (default: 2)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch.set_num_threads (default: leave torch's choice, printed)")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--quick", action="store_true",
                        help="tiny sizes (2 tasks, 8 filters, inner steps 1 and 2 in the memory table)")
    parser.add_argument("--json", metavar="PATH", help="also write every result to this JSON file")
    parser.add_argument("--skip-memory", action="store_true", help="no memory measurements")
    parser.add_argument("--memory-method", choices=("profiler", "rss"), default="profiler",
                        help="CPU peak memory from torch.profiler's record of tensor allocations "
                             "(default, in this process) or from the peak resident set of a fresh "
                             "process per measurement (includes allocator and library pages)")
    parser.add_argument("--memory-steps", type=int, nargs="+", default=None,
                        help="inner steps of the memory table (default: 1 5 10; --quick: 1 2)")
    parser.add_argument("--chunk-size", type=int, default=None,
                        help="task_chunk_size of the chunked mamlkit-fast row (default: 8; --quick: 1)")
    parser.add_argument("--seed", type=int, default=0, help="seed of θ and of the random tasks")
    parser.add_argument("--probe", help=argparse.SUPPRESS)  # internal: one memory measurement
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--"]:  # `python -m mamlkit bench -- --quick` passes the separator on
        argv = argv[1:]
    args = parser.parse_args(argv)
    if args.probe:
        spec = json.loads(args.probe)
        result, grads = run_probe(spec)
        torch.save([g.detach().cpu() for g in grads], spec["grads_path"])
        print(PROBE_TAG + json.dumps(result), flush=True)
        return 0
    require_positive(parser, args, "repeats", "threads", "chunk_size")
    if args.warmup < 0:
        parser.error(f"--warmup must be 0 or more, got {args.warmup}")
    if args.memory_steps and min(args.memory_steps) < 1:
        parser.error(f"--memory-steps must all be at least 1, got {args.memory_steps}")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda, but torch.cuda.is_available() is False on this machine")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    memory_steps = args.memory_steps or ([1, 2] if args.quick else [1, 5, 10])
    chunk = args.chunk_size or (1 if args.quick else 8)

    machine = describe_machine(device, threads_set=args.threads is not None)
    print("# One second-order MAML meta-step, timed\n")
    for line in machine_lines(machine):
        print(line + "  ")
    contenders = list(dict.fromkeys(args.contenders))
    notes = []
    for contender in OPTIONAL:
        if contender in contenders and not contender_available(contender):
            contenders.remove(contender)
            notes.append(f"{contender} skipped: not installed "
                         f"(pip install -r benchmarks/requirements.txt)")
    for note in notes:
        print(note + "  ")
    print(f"\nEach run: forward, inner loop, query loss and meta-gradient w.r.t. θ (no optimiser "
          f"step). {args.warmup} warm-up runs each, then {args.repeats} interleaved timed runs; "
          f"median shown. Error: relative L2 distance of the whole meta-gradient from "
          f"{LOOP}'s in float64 on the same θ and tasks: each contender's step run once in "
          f"float64 (must be ≤ {TOLERANCE:g}), and the largest over its timed float32 runs "
          f"(float32 rounding, for information).")
    if not args.skip_memory:
        print("Peak memory of one warm step: " + (
            "growth of torch.cuda.max_memory_allocated." if device.type == "cuda" else
            "peak of live tensor bytes recorded by torch.profiler." if args.memory_method == "profiler"
            else "growth of the peak resident set, each in a fresh process."))

    results = {"machine": machine,
               "options": vars(args) | {"memory_steps": memory_steps, "chunk_size": chunk},
               "notes": notes, "settings": {}, "memory_vs_inner_steps": []}
    memory_cache: dict = {}
    failed = []

    def memory(setting: Setting, contender: str, task_chunk_size: Optional[int] = None) -> tuple:
        key = (setting, contender, task_chunk_size)
        if key not in memory_cache:
            memory_cache[key] = measure_memory(setting, contender, device, args.seed,
                                               args.memory_method, task_chunk_size)
        return memory_cache[key]

    for name in args.settings:
        setting = quick(SETTINGS[name]) if args.quick else SETTINGS[name]
        problem = make_problem(setting, device, args.seed)
        # mamlkit-fast runs as training does: the fast path, TRAINING_CHUNK tasks at a time.
        steps = {c: build_step(problem, c, TRAINING_CHUNK if c == FAST else None) for c in contenders}
        problem64 = as_float64(problem)
        reference = [g.detach() for g in build_step(problem64, LOOP)()]
        # Correctness, in float64: each contender's own step on the float64 copy of the problem.
        checks = {c: relative_error(build_step(problem64, c, TRAINING_CHUNK if c == FAST else None)(),
                                    reference) for c in contenders}
        del problem64
        first_errors = {c: relative_error(step(), reference) for c, step in steps.items()}
        times, run_errors = time_interleaved(steps, reference, args.repeats, args.warmup, device)
        medians = {c: statistics.median(t) for c, t in times.items()}
        ratio = speedups(medians)
        entry = {"setting": dataclasses.asdict(setting), "contenders": {}}
        for c in contenders:
            error = checks[c]
            if error > TOLERANCE:
                failed.append(f"{name}/{c}: {error:.1e}")
            entry["contenders"][c] = {
                "median_s": medians[c], "times_s": times[c], "speedup_vs_best_other": ratio.get(c),
                "max_rel_grad_error": error, "float32_rel_error": max(first_errors[c], run_errors[c]),
            }
        del problem, steps
        gc.collect()
        if not args.skip_memory:
            for c in contenders:
                entry["contenders"][c]["memory"] = memory(setting, c, TRAINING_CHUNK if c == FAST else None)[0]
        results["settings"][name] = entry
        print(f"\n## {name}: {setting.describe()}\n")
        print("\n".join(setting_table(entry)))
        print("\ntimed runs (s): " + "; ".join(
            f"{c} " + " ".join(f"{t:.3f}" for t in times[c]) for c in contenders))

    if not args.skip_memory:
        base = quick(SETTINGS[MEMORY_SETTING]) if args.quick else SETTINGS[MEMORY_SETTING]
        rows_for = [(LOOP, None)] + [(c, None) for c in contenders if c != LOOP]
        if FAST in contenders:
            rows_for.insert(rows_for.index((FAST, None)) + 1, (FAST, chunk))
        rows = []
        for inner_steps in memory_steps:
            setting = dataclasses.replace(base, inner_steps=inner_steps)
            reference = None
            for contender, task_chunk_size in rows_for:
                result, grads = memory(setting, contender, task_chunk_size)
                label = contender if task_chunk_size is None else f"{contender}, task_chunk_size={task_chunk_size}"
                row = {"inner_steps": inner_steps, "contender": label, "memory": result}
                if contender == LOOP:
                    reference = grads
                elif grads is not None and reference is not None:
                    row["rel_grad_error"] = relative_error(grads, reference)
                    if row["rel_grad_error"] > TOLERANCE:
                        failed.append(f"memory table, {inner_steps} steps, {label}: "
                                      f"{row['rel_grad_error']:.1e}")
                rows.append(row)
        results["memory_vs_inner_steps"] = rows
        print(f"\n## Memory of the second-order step vs inner steps: "
              f"{base.describe(with_steps=False)}\n")
        print("\n".join(memory_table(rows)))
        print(f"\n{LOOP} and {HIGHER} call backward once per task, so one task's graph is alive at "
              f"a time; {TORCHOPT} (as its example does) and {FAST} keep all {base.meta_batch_size} "
              f"tasks' graphs until one backward, and task_chunk_size={chunk} keeps {chunk} at a time"
              + (" (profiled one group at a time: torch.profiler sees the calling thread only; training "
                 "with N threads keeps N groups alive, which --memory-method rss measures)"
                 if args.memory_method == "profiler" and args.device == "cpu" else "")
              + ". The time column is one run after one warm-up: indicative only.")

    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
            f.write("\n")
        print(f"\nresults written to {args.json}")
    if failed:
        print(f"\nFAIL: meta-gradients differ from {LOOP} by more than {TOLERANCE:g}: "
              + "; ".join(failed), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
