"""Models as functions of an explicit parameter dictionary.

MAML evaluates the *same* network with *different* parameters: θ, and every task's adapted
φᵢ. Instead of copying modules, the course keeps parameters in a plain ``{name: tensor}``
dictionary and runs the module through :func:`torch.func.functional_call`, so that φ can be
any tensor computed from θ (and gradients flow from φ back to θ).

A tensor of θ whose ``requires_grad`` is False is *frozen*: the inner loop does not adapt it
and the outer step does not move it, but the forward pass uses it like any other. A dict in
which *no* tensor requires grad (weights loaded from a file) is the exception: there is
nothing to tell frozen from trainable, so every tensor adapts.

This file is one module because every run of a learner's module, in every method and both
loops, goes through :func:`forward` or :func:`run_module`, and the checks kept here beside them
(inputs, parameters reached around ``functional_call``, checkpointed, compiled and refused
layers, outputs) are what guard that one path.
"""

from __future__ import annotations

import contextlib
import sys
import weakref
from collections.abc import Mapping
from typing import Dict

import torch
from torch import nn
from torch.autograd.graph import get_gradient_edge
from torch.func import functional_call
from torch.nn.utils.spectral_norm import SpectralNorm as _OldSpectralNorm
from torch.nn.utils.weight_norm import WeightNorm as _OldWeightNorm
from torch.overrides import TorchFunctionMode

Params = Dict[str, torch.Tensor]


def get_params(model: nn.Module) -> Params:
    """The model's parameters as a fresh ``{name: tensor}`` dict of leaf tensors θ.

    The tensors are detached copies: the outer optimiser owns them, and the module itself only
    serves as the architecture. Each keeps its module's ``requires_grad``, so a layer frozen
    with ``requires_grad_(False)`` stays frozen in the inner and the outer loop.

    Raises:
        TypeError: ``model`` is not an ``nn.Module``.
        ValueError: the model has no parameters.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    params = {name: p.detach().clone().requires_grad_(p.requires_grad)
              for name, p in model.named_parameters()}
    if not params:
        raise ValueError(f"{type(model).__name__} has no parameters: there is nothing to meta-learn")
    return params


def check_params(model: nn.Module, params: Params) -> None:
    """Raise unless ``params`` has exactly the names and shapes of ``model``'s parameters.

    Raises:
        TypeError: ``model`` is not a module, ``params`` is not a ``{name: tensor}`` mapping
            (e.g. ``model.parameters()``, a list, or a module).
        ValueError: names or shapes differ from the model's, or params mixes devices.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(params, Mapping):
        raise TypeError(
            f"params must be a dict {{name: tensor}} such as get_params(model) or "
            f"dict(model.named_parameters()), got {type(params).__name__}"
        )
    not_tensors = sorted(name for name, p in params.items() if not isinstance(p, torch.Tensor))
    if not_tensors:
        raise TypeError(f"params[{not_tensors[0]!r}] is a {type(params[not_tensors[0]]).__name__}, "
                        "not a tensor; every value of params must be a torch.Tensor")
    expected = {name: tuple(p.shape) for name, p in model.named_parameters()}
    missing = sorted(set(expected) - set(params))
    unexpected = sorted(set(params) - set(expected))
    if missing or unexpected:
        problems = []
        if missing:
            problems.append(f"missing {missing}")
        if unexpected:
            problems.append(f"unexpected {unexpected}")
        hint = (" Buffers (batch-norm running statistics) are not parameters: build params with "
                "get_params(model), not model.state_dict()."
                if set(unexpected) & {n for n, _ in model.named_buffers()} else "")
        raise ValueError(
            f"params does not match {type(model).__name__}: {'; '.join(problems)}. "
            f"Expected exactly these names: {sorted(expected)}.{hint}"
        )
    for name, shape in expected.items():
        if tuple(params[name].shape) != shape:
            raise ValueError(
                f"params[{name!r}] has shape {tuple(params[name].shape)}, but "
                f"{type(model).__name__} needs {shape}"
            )
    devices = {p.device for p in params.values()}
    if len(devices) > 1:
        raise ValueError(f"params holds tensors on several devices {sorted(map(str, devices))}; "
                         "move them all to one, e.g. {n: p.to(device) for n, p in params.items()}")


def adaptable(params: Params) -> Params:
    """``params`` itself, or, when none of its tensors requires grad, detached copies that all do.

    Weights loaded from a file (or detached by hand) carry no ``requires_grad`` flags at all;
    adapting them means adapting every tensor, not freezing them all.
    """
    if any(p.requires_grad for p in params.values()):
        return params
    return {name: p.detach().requires_grad_(True) for name, p in params.items()}


def buffer_copies(model: nn.Module) -> Params:
    """Copies of the model's buffers, so that a forward pass cannot change the module.

    A ``BatchNorm`` layer in training mode with ``track_running_stats=True`` updates its
    running statistics in place on every call; run through :func:`forward`, it updates these
    copies instead, and the learner's module keeps its own.
    """
    return {name: b.clone() for name, b in model.named_buffers()}


def check_inputs_match(params: Params, x: torch.Tensor, name: str) -> None:
    """Raise a ValueError when inputs ``x`` and the parameters differ in float dtype or device.

    Otherwise the model's first layer fails deep inside torch ("mat1 and mat2 must have the
    same dtype"); integer inputs (token ids, say) are left to the model.
    """
    if not params:
        return
    reference = next(iter(params.values()))
    if x.device != reference.device:
        raise ValueError(f"{name} is on {x.device} but params are on {reference.device}; "
                         f"move the tasks with tasks.to({str(reference.device)!r})")
    if x.is_floating_point() and reference.is_floating_point() and x.dtype != reference.dtype:
        raise ValueError(f"{name} is {x.dtype} but params are {reference.dtype}; convert the inputs "
                         f"(x.to({reference.dtype})) or the model (model.to({x.dtype}) before get_params)")


# Modules whose outputs were found to depend on the parameters passed in, not on their own.
_SWAP_CHECKED: "weakref.WeakSet[nn.Module]" = weakref.WeakSet()


def check_parameters_swapped(model: nn.Module, params: Params, output: torch.Tensor,
                             probe_x: torch.Tensor | None = None) -> None:
    """Raise a ValueError when ``output`` depends on a parameter of the module that ``params`` replaces.

    :func:`torch.func.functional_call` swaps the parameters *registered* in the module. A tensor
    the forward reaches some other way (``self.refs = [self.fc.weight]``, a closure, a plain
    attribute) keeps the module's own value: θ's tensor of that name is ignored and its
    meta-gradient is silently zero. Checked once per module, by walking the output's graph back
    to its leaves (a few hundred nodes for a small network); a first output without a graph
    (evaluation under ``torch.no_grad``, ANIL's frozen body) is checked on one extra forward
    with gradients on (:func:`_check_on_a_probe`).
    """
    if model in _SWAP_CHECKED:
        return
    if output.grad_fn is None:
        if probe_x is not None:
            _check_on_a_probe(model, params, probe_x)
        else:
            _SWAP_CHECKED.add(model)  # even with gradients on, the output depends on no parameter
        return
    replaced = {id(p): name for name, p in model.named_parameters(remove_duplicate=False)
                if name in params and params[name] is not p and p.requires_grad}
    # The walk stops at the tensors passed in: φ computed from the module's own tensors (θ being
    # dict(model.named_parameters())) reaches them through params, as it should.
    passed_in = {get_gradient_edge(t).node for t in params.values() if t.requires_grad}
    frontier, seen = ([] if output.grad_fn in passed_in else [output.grad_fn]), set(passed_in)
    while replaced and frontier:
        node = frontier.pop()
        leaf = getattr(node, "variable", None)
        if leaf is not None and id(leaf) in replaced:
            name = replaced[id(leaf)]
            raise ValueError(
                f"{type(model).__name__}'s output depends on its own parameter {name!r}, not on the tensor "
                f"passed for it in params: functional_call, which every inner loop here runs, swaps only the "
                f"parameters registered in the module, so a reference kept elsewhere (a list, a plain attribute, "
                f"a closure) is not replaced and {name!r} would get a zero meta-gradient without any error. "
                f"Reach it through its module inside forward (self.fc.weight, self.fc(x))."
            )
        for next_node, _ in node.next_functions:
            if next_node is not None and next_node not in seen:
                seen.add(next_node)
                frontier.append(next_node)
    _SWAP_CHECKED.add(model)


def _check_on_a_probe(model: nn.Module, params: Params, x: torch.Tensor) -> None:
    """:func:`check_parameters_swapped` on a forward with gradients on, whatever the caller's mode.

    Detached copies of ``params`` and ``x`` (``x.clone()`` outside inference mode, since an
    inference tensor cannot enter a graph); buffers are copied as in :func:`forward`, and the
    random state is restored after it (a dropout layer draws), so the caller's numbers do not move.
    """
    devices = [x.device.index or 0] if x.is_cuda else []
    with torch.random.fork_rng(devices=devices), torch.inference_mode(False), torch.enable_grad():
        probe = {name: p.detach().clone().requires_grad_(p.is_floating_point()) for name, p in params.items()}
        x = x.clone()
        buffers = buffer_copies(model)
        with module_restored(model):
            output = run_module(model, lambda: functional_call(model, {**probe, **buffers} if buffers else probe, (x,)))
        check_parameters_swapped(model, probe, check_output(model, output))


def forward(model: nn.Module, params: Params, x: torch.Tensor) -> torch.Tensor:
    """Run ``model`` on ``x`` with the parameters in ``params`` instead of its own.

    The module's own parameters and buffers are never changed (buffers are copied first,
    when the module has any; a layer registered under two names, tied weights, gets its own
    tensors back, see :func:`module_restored`).

    Returns:
        the module's output, one tensor (``(S, *output_shape)`` for ``x`` ``(S, ...)``).

    Raises:
        TypeError: the module returns something else than one tensor (see :func:`check_output`).
        ValueError: ``x`` and ``params`` differ in float dtype or device (:func:`check_inputs_match`),
            or the output depends on a module parameter that ``params`` replaces
            (:func:`check_parameters_swapped`).
    """
    check_inputs_match(params, x, "the input")
    buffers = buffer_copies(model)
    with module_restored(model):
        output = run_module(model, lambda: functional_call(model, {**params, **buffers} if buffers else params, (x,)))
    output = check_output(model, output)
    check_parameters_swapped(model, params, output, probe_x=x)
    return output


# Modules run before: (whether they hold compiled code, whether they hold nn.MultiheadAttention).
_INSPECTED: "weakref.WeakKeyDictionary[nn.Module, tuple[bool, bool]]" = weakref.WeakKeyDictionary()


def run_module(model: nn.Module, call):
    """``call()``, a functional run of ``model``, with what MAML needs of compiled and checkpointed code.

    - Compiled code (``torch.compile(model)``, ``module.compile()``) runs eagerly
      (``torch.compiler.set_stance("force_eager")``): compiled backward graphs refuse
      ``create_graph=True``, which the second-order inner loop needs, so the same numbers
      are computed uncompiled.
    - ``torch.utils.checkpoint`` in ``forward`` is refused: it recomputes its layers during
      backward with the parameters the module holds then, its own, not the adapted φ passed
      in, so inner steps and meta-gradients would be wrong without any error.

    - ``nn.MultiheadAttention`` runs without its fused inference kernel
      (``torch.backends.mha.set_fastpath_enabled(False)`` for the call): in eval mode, or inside
      :func:`torch.func.vmap`, torch takes that kernel, which has no derivative.
    - Layers whose forward would change θ or the module behind MAML's back are refused before
      anything runs (:func:`check_supported_layers`).

    The module is inspected on its first run only (one pass over its submodules, and a
    :class:`~torch.overrides.TorchFunctionMode` that looks for checkpoint's frames).

    Raises:
        TypeError: the forward uses ``torch.utils.checkpoint``, or a layer
            :func:`check_supported_layers` refuses.
    """
    inspected = _INSPECTED.get(model)
    if inspected is None:
        check_supported_layers(model)
        # torch.compile(model) wraps it in an OptimizedModule; module.compile() compiles in place.
        compiled = any(type(m).__name__ == "OptimizedModule" or getattr(m, "_compiled_call_impl", None) is not None
                       for m in model.modules())
        attention = any(isinstance(m, nn.MultiheadAttention) for m in model.modules())
        spy = _CheckpointSpy()
        with _eager(compiled), _without_fused_attention(attention), spy:
            output = call()
        if spy.found:
            raise TypeError(
                f"{type(model).__name__}.forward uses torch.utils.checkpoint, which recomputes its layers in "
                "backward with the module's own parameters instead of the adapted ones mamlkit passes in, so "
                "inner steps and meta-gradients would be wrong; remove the checkpoint call (to save memory, "
                "use task_chunk_size, fewer inner_steps, or first_order=True)")
        _INSPECTED[model] = (compiled, attention)
        return output
    compiled, attention = inspected
    if compiled or attention:
        with _eager(compiled), _without_fused_attention(attention):
            return call()
    return call()


def _eager(compiled: bool):
    return torch.compiler.set_stance("force_eager") if compiled else contextlib.nullcontext()


@contextlib.contextmanager
def _without_fused_attention(attention: bool):
    """The body with ``nn.MultiheadAttention``'s fused kernel off (when ``attention``), then as before."""
    if not attention:
        yield
        return
    before = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        yield
    finally:
        torch.backends.mha.set_fastpath_enabled(before)


def check_supported_layers(model: nn.Module) -> None:
    """Raise a TypeError, naming the fix, for a layer whose forward MAML cannot run as written.

    - ``nn.DataParallel`` / ``DistributedDataParallel``: :func:`torch.func.functional_call`
      cannot run through them; pass ``model.module`` (mamlkit's own :mod:`mamlkit.run.distributed`
      splits tasks over processes).
    - ``nn.Embedding(max_norm=...)`` (and ``EmbeddingBag``): its forward renormalises rows of
      the weight *in place*, so θ (or φ) would change outside any gradient step.
    - ``nn.Embedding(sparse=True)``: sparse gradients, which the inner loop's arithmetic and
      the meta-gradient's second derivatives do not support.
    - The hook-based ``torch.nn.utils.weight_norm`` and ``torch.nn.utils.spectral_norm``
      (deprecated by torch): they write the weight as a plain attribute of the module at every
      forward, which would leave the module holding a tensor of the inner loop; their
      ``torch.nn.utils.parametrizations`` versions work.
    """
    for name, module in model.named_modules():
        where = f"{type(model).__name__}" + (f".{name}" if name else "")
        if isinstance(module, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
            raise TypeError(
                f"{where} is an nn.{type(module).__name__}, which torch.func.functional_call (every inner loop "
                f"here) cannot run through; pass the network inside it ({'model.module' if not name else name + '.module'}) "
                f"instead (to spread tasks over processes, see mamlkit.run.distributed)")
        if isinstance(module, (nn.Embedding, nn.EmbeddingBag)):
            if module.max_norm is not None:
                raise TypeError(
                    f"{where} is an {type(module).__name__} with max_norm={module.max_norm}, whose forward "
                    f"renormalises rows of its weight in place: θ and the adapted φ would change outside any "
                    f"gradient step; use max_norm=None (to bound the rows, normalise the looked-up vectors "
                    f"inside forward, e.g. torch.nn.functional.normalize)")
            if module.sparse:
                raise TypeError(
                    f"{where} is an {type(module).__name__} with sparse=True, whose sparse gradients the inner "
                    f"loop and the second-order meta-gradient do not support; use sparse=False")
        for hook in module._forward_pre_hooks.values():
            if isinstance(hook, (_OldWeightNorm, _OldSpectralNorm)):
                kind = "weight_norm" if isinstance(hook, _OldWeightNorm) else "spectral_norm"
                raise TypeError(
                    f"{where} uses the hook-based torch.nn.utils.{kind}, which writes the weight as a plain "
                    f"attribute of the module at every forward, so after an inner loop the module would hold "
                    f"one of its tensors; use torch.nn.utils.parametrizations.{kind} instead")


class _CheckpointSpy(TorchFunctionMode):
    """Notes whether any torch function runs inside ``torch.utils.checkpoint`` (either variant)."""

    def __init__(self):
        super().__init__()
        self.found = False

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if not self.found:
            frame = sys._getframe(1)
            while frame is not None and not self.found:
                self.found = frame.f_code.co_filename.replace("\\", "/").endswith("torch/utils/checkpoint.py")
                frame = frame.f_back
        return func(*args, **(kwargs or {}))


@contextlib.contextmanager
def module_restored(model: nn.Module):
    """Run the body, then put back every parameter and buffer object the module held before.

    :func:`torch.func.functional_call` swaps tensors into the module and back. For a layer
    registered under two names (tied or shared weights), torch 2.x swaps it back wrongly: the
    module is left holding a non-leaf tensor of the inner loop, or, after :func:`torch.func.vmap`,
    a batched tensor with which the module no longer runs. Whatever happened, the module's own
    objects are restored here (a walk over its submodules, no tensor is copied).
    """
    slots = [(module, kind, name, tensor) for module in model.modules()
             for kind in ("_parameters", "_buffers") for name, tensor in getattr(module, kind).items()]
    try:
        yield
    finally:
        for module, kind, name, tensor in slots:
            held = getattr(module, kind)
            if held.get(name, None) is not tensor or name in module.__dict__:
                module.__dict__.pop(name, None)
                held[name] = tensor


def check_output(model: nn.Module, output):
    """``output`` itself when it is one tensor; otherwise a TypeError that names the fix.

    Raises:
        TypeError: ``model`` returned a tuple, list, dict or other non-tensor, e.g.
            ``(logits, features)``: MAML needs the outputs its loss reads; wrap the model in
            :class:`SelectOutput` to pick them.
    """
    if isinstance(output, torch.Tensor):
        return output
    what = (f"a {type(output).__name__} of {len(output)}" if isinstance(output, (tuple, list, dict))
            else f"a {type(output).__name__}")
    raise TypeError(f"{type(model).__name__}.forward returned {what}, not one tensor of outputs; "
                    f"meta-learn the output the loss reads by wrapping the model: "
                    f"mamlkit.functional.SelectOutput(model, 0) (or the key of the output you need)")


class SelectOutput(nn.Module):
    """``model`` with one of its outputs selected: for a ``forward`` that returns several.

    ``SelectOutput(model, 0)`` runs ``model(x)[0]``, e.g. the logits of a network that returns
    ``(logits, features)``; ``SelectOutput(model, "logits")`` picks a dict's entry. The
    parameters keep the model's own names (``head.weight``, not ``module.head.weight``): the
    wrapper registers the model's children as its own, so ANIL and ProtoNet still find
    ``head``, and the model itself is not changed.

    Args:
        model: any ``nn.Module`` whose output can be indexed with ``select``.
        select: the index or key of the output to meta-learn.
    """

    def __init__(self, model: nn.Module, select=0):
        super().__init__()
        if not isinstance(model, nn.Module):
            raise TypeError(f"SelectOutput needs an nn.Module, got {type(model).__name__}")
        if model._parameters or model._buffers:
            raise TypeError(f"SelectOutput needs the parameters of {type(model).__name__} in submodules "
                            "(it holds parameters of its own); wrap it in an nn.Module that "
                            "returns the output you need instead")
        self._modules = model._modules  # the same children, under the same names
        self.__dict__["_wrapped"] = model  # not registered: its parameters are already ours
        self.select = select

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return type(self._wrapped).forward(self, x)[self.select]

    def __getattr__(self, name):
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name == "forward_tasks":  # the model's own would return every output
                raise
            return getattr(self.__dict__["_wrapped"], name)


def autocast_enabled() -> bool:
    """Whether ``torch.autocast`` is on in this thread, for the CPU or a GPU.

    Autocast is thread-local, and it casts the inputs of some operations: code that runs work
    in other threads, or replaces an operation by its own (a custom autograd Function), asks
    this first.
    """
    return any(torch.is_autocast_enabled(device) for device in ("cpu", "cuda"))
