"""relu(batch_norm(x)) with hand-written first and second derivatives, checked against
float64 finite differences and against PyTorch's own composition."""

import pytest
import torch
import torch.nn.functional as F

from mamlkit.models.batchnorm_relu import batch_norm_relu

LAYOUTS = [torch.contiguous_format, torch.channels_last]


def inputs(layout, seed=0, shape=(4, 3, 5, 5), offset=0.0):
    g = torch.Generator().manual_seed(seed)
    x = (torch.randn(shape, generator=g, dtype=torch.float64) + offset).contiguous(memory_format=layout)
    weight = torch.rand(shape[1], generator=g, dtype=torch.float64) + 0.5
    bias = torch.randn(shape[1], generator=g, dtype=torch.float64)
    return x.requires_grad_(), weight.requires_grad_(), bias.requires_grad_()


def pytorch_batch_norm_relu(x, weight, bias):
    return torch.relu(F.batch_norm(x, None, None, weight, bias, training=True))


@pytest.mark.parametrize("layout", LAYOUTS)
def test_forward_is_pytorchs_batch_norm_then_relu(layout):
    x, weight, bias = inputs(layout, offset=3.0)
    assert torch.allclose(batch_norm_relu(x, weight, bias), pytorch_batch_norm_relu(x, weight, bias), atol=1e-12)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_first_and_second_derivatives_match_finite_differences(layout):
    args = inputs(layout)
    assert torch.autograd.gradcheck(batch_norm_relu, args)
    assert torch.autograd.gradgradcheck(batch_norm_relu, args)


def second_derivatives(fn, x, weight, bias, wrt_first):
    """Gradients of a random linear function of the first derivatives, w.r.t. everything."""
    y = fn(x, weight, bias)
    g = torch.Generator().manual_seed(1)
    first = torch.autograd.grad((y * torch.randn(y.shape, generator=g, dtype=y.dtype)).sum(), wrt_first,
                                create_graph=True)
    mix = sum((d * torch.randn(d.shape, generator=g, dtype=d.dtype)).sum() for d in first)
    return torch.autograd.grad(mix, (x, weight), allow_unused=True)


@pytest.mark.parametrize("which", ["x, weight and bias", "weight and bias only"])
def test_second_derivatives_equal_pytorchs(which):
    """Including the case where only gγ and gβ are used, which skips the terms in ggx."""
    x, weight, bias = inputs(torch.contiguous_format, seed=2, shape=(6, 4, 3, 3))
    wrt = (x, weight, bias) if which == "x, weight and bias" else (weight, bias)
    ours = second_derivatives(batch_norm_relu, x, weight, bias, wrt)
    theirs = second_derivatives(pytorch_batch_norm_relu, x, weight, bias, wrt)
    for name, a, b in zip(("x", "weight"), ours, theirs):
        a = torch.zeros_like(x if name == "x" else weight) if a is None else a
        b = torch.zeros_like(a) if b is None else b
        assert torch.allclose(a, b, atol=1e-10), f"second derivative w.r.t. {name} differs from PyTorch's"


def test_a_third_derivative_is_refused_not_wrong():
    x, weight, bias = inputs(torch.contiguous_format)
    y = batch_norm_relu(x, weight, bias)
    (gx,) = torch.autograd.grad(y.sum(), x, create_graph=True)
    with pytest.raises(RuntimeError, match="third derivative"):
        torch.autograd.grad((gx ** 2).sum(), x, create_graph=True)


def test_bad_shapes_are_explained():
    x, weight, bias = inputs(torch.contiguous_format)
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        batch_norm_relu(x[0], weight, bias)
    with pytest.raises(ValueError, match="one value per channel"):
        batch_norm_relu(x, weight[:2], bias)
    with pytest.raises(ValueError, match="more than one value per channel"):
        batch_norm_relu(x[:1, :, :1, :1], weight, bias)  # PyTorch's batch norm refuses it too
    with pytest.raises(ValueError, match="eps must be a positive number"):
        batch_norm_relu(x, weight, bias, eps=0.0)
    with pytest.raises(TypeError, match="weight must be a tensor"):
        batch_norm_relu(x, None, bias)


def test_mixed_precision_falls_back_to_pytorchs_block():
    x, weight, bias = inputs(torch.contiguous_format)
    half = x.detach().to(torch.bfloat16)
    expected = pytorch_batch_norm_relu(half, weight.float(), bias.float())
    assert torch.equal(batch_norm_relu(half, weight.float(), bias.float()), expected)
