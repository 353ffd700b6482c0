"""A grouped convolution with its second derivative written out, checked against float64
finite differences and against PyTorch's own."""

import pytest
import torch
import torch.nn.functional as F

from mamlkit.models.grouped_conv import grouped_conv2d


def inputs(layout=torch.contiguous_format, groups=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(3, groups * 2, 7, 7, generator=g, dtype=torch.float64).contiguous(memory_format=layout)
    weight = torch.randn(groups * 3, 2, 3, 3, generator=g, dtype=torch.float64)
    return x.requires_grad_(), weight.requires_grad_()


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
@pytest.mark.parametrize("stride,padding", [(2, 1), (1, 0)])
def test_first_and_second_derivatives_match_finite_differences(layout, stride, padding):
    x, weight = inputs(layout)
    conv = lambda a, b: grouped_conv2d(a, b, 2, stride=stride, padding=padding)  # noqa: E731
    assert torch.equal(conv(x, weight), F.conv2d(x, weight, stride=stride, padding=padding, groups=2))
    assert torch.autograd.gradcheck(conv, (x, weight))
    assert torch.autograd.gradgradcheck(conv, (x, weight))


def test_inputs_without_gradient_as_for_the_first_layer():
    """The images of the first layer need no gradient; the weight's second derivative still flows."""
    x, weight = inputs()
    x = x.detach()
    assert torch.autograd.gradgradcheck(lambda b: grouped_conv2d(x, b, 2, stride=2, padding=1), (weight,))


def test_second_derivatives_equal_pytorchs():
    x, weight = inputs(groups=4)

    def second(conv):
        y = conv(x, weight)
        g = torch.Generator().manual_seed(1)
        gx, gw = torch.autograd.grad((y * torch.randn(y.shape, generator=g, dtype=y.dtype)).sum(), (x, weight),
                                     create_graph=True)
        mix = (gx * torch.randn(gx.shape, generator=g, dtype=gx.dtype)).sum() + (gw ** 2).sum()
        return torch.autograd.grad(mix, (x, weight))

    ours = second(lambda a, b: grouped_conv2d(a, b, 4, stride=2, padding=1))
    theirs = second(lambda a, b: F.conv2d(a, b, stride=2, padding=1, groups=4))
    for a, b in zip(ours, theirs):
        assert torch.allclose(a, b, atol=1e-10)


def test_a_third_derivative_is_refused_and_bad_shapes_explained():
    x, weight = inputs()
    (gx,) = torch.autograd.grad(grouped_conv2d(x, weight, 2).sum(), x, create_graph=True)
    with pytest.raises(RuntimeError, match="third derivative"):
        torch.autograd.grad((gx ** 2).sum(), weight, create_graph=True)
    with pytest.raises(ValueError, match="groups=3 does not fit"):
        grouped_conv2d(x, weight, 3)
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        grouped_conv2d(x[0], weight, 2)
    with pytest.raises(TypeError, match="stride must be an integer"):
        grouped_conv2d(x, weight, 2, stride=(1, 2))
    with pytest.raises(TypeError, match="padding must be an integer"):
        grouped_conv2d(x, weight, 2, padding="same")
    with pytest.raises(ValueError, match="stride must be at least 1"):
        grouped_conv2d(x, weight, 2, stride=0)


@pytest.mark.parametrize("groups,kernel,wrt", [(1, (3, 3), "both"), (2, (2, 3), "both"), (4, (3, 3), "weight")])
def test_second_derivatives_equal_pytorchs_in_other_shapes(groups, kernel, wrt):
    g = torch.Generator().manual_seed(groups)
    x = torch.randn(2, groups * 2, 6, 6, generator=g, dtype=torch.float64).requires_grad_(wrt == "both")
    weight = torch.randn(groups * 2, 2, *kernel, generator=g, dtype=torch.float64).requires_grad_()
    inputs_ = (x, weight) if wrt == "both" else (weight,)

    def second(conv):
        y = conv(x, weight)
        first = torch.autograd.grad((y ** 2).sum(), inputs_, create_graph=True)
        return torch.autograd.grad(sum((d ** 2).sum() for d in first), inputs_)

    ours = second(lambda a, b: grouped_conv2d(a, b, groups, stride=2, padding=1))
    theirs = second(lambda a, b: F.conv2d(a, b, stride=2, padding=1, groups=groups))
    for a, b in zip(ours, theirs):
        assert torch.allclose(a, b, atol=1e-10)
