"""The two networks of the MAML paper, each usable one task at a time or many at once.

Every model is an ordinary ``nn.Module`` (run it with :func:`mamlkit.functional.forward` and a
parameter dict) and also offers ``forward_tasks(params, x)``: the same function evaluated for
``T`` tasks at once, where every parameter tensor carries a leading task axis. The per-task
form is what the notebooks teach; ``forward_tasks`` is its tested twin used by the fast
meta-step (:mod:`mamlkit.fast`).
"""

from __future__ import annotations

import torch
from torch import nn

from mamlkit.functional import Params
from mamlkit.models.batchnorm_relu import batch_norm_relu
from mamlkit.models.grouped_conv import grouped_conv2d


class SineMLP(nn.Module):
    """The 1 → 40 → 40 → 1 ReLU network of the sinusoid experiments.

    Input ``(S, 1)``, output ``(S, 1)``.
    """

    def __init__(self, hidden: int = 40, generator: torch.Generator | None = None):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Linear(1, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, 1)
        )
        if generator is not None:
            reset_parameters(self, generator)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)

    @staticmethod
    def forward_tasks(params: Params, x: torch.Tensor) -> torch.Tensor:
        """Evaluate ``T`` tasks at once.

        Args:
            params: each tensor with a leading task axis, e.g. ``layers.0.weight`` ``(T, 40, 1)``.
            x: ``(T, S, 1)``.

        Returns:
            ``(T, S, 1)``.
        """
        h = x
        for i in (0, 2, 4):
            weight, bias = params[f"layers.{i}.weight"], params[f"layers.{i}.bias"]
            h = torch.baddbmm(bias.unsqueeze(1), h, weight.transpose(1, 2))
            if i < 4:
                h = torch.relu(h)
        return h


class ConvBlock(nn.Module):
    """3×3 convolution with stride 2, batch norm on the batch's own statistics, ReLU.

    The convolution has no bias: batch norm subtracts the per-channel mean right after it,
    which would cancel any bias exactly (its gradient is zero).
    """

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 3, stride=2, padding=1, bias=False)
        # MAML normalises with the statistics of the current batch, in training and at test
        # time alike, so there are no running statistics to track.
        self.norm = nn.BatchNorm2d(out_channels, track_running_stats=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.norm(self.conv(x)))


class Conv4(nn.Module):
    """The Omniglot network of the MAML paper: 4 conv blocks, mean over space, linear head.

    ``(S, 1, 28, 28)`` → blocks (28 → 14 → 7 → 4 → 2 pixels) → mean → ``(S, n_way)`` logits.
    """

    def __init__(self, n_way: int, channels: int = 64, in_channels: int = 1,
                 generator: torch.Generator | None = None):
        super().__init__()
        if n_way < 2:
            raise ValueError(f"n_way must be at least 2 classes, got {n_way}")
        widths = [in_channels] + [channels] * 4
        self.blocks = nn.Sequential(*(ConvBlock(a, b) for a, b in zip(widths[:-1], widths[1:])))
        self.head = nn.Linear(channels, n_way)
        if generator is not None:
            reset_parameters(self, generator)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(x).mean(dim=(2, 3)))

    @staticmethod
    def forward_tasks(params: Params, x: torch.Tensor) -> torch.Tensor:
        """Evaluate ``T`` tasks at once, each with its own parameters.

        The tasks are laid side by side along the channel axis, ``(S, T·C, H, W)``, so one
        grouped convolution (``groups=T``) applies every task's filters to its own images, and
        one ``batch_norm`` call normalises every (task, channel) pair with its own statistics
        over the task's ``S`` images — exactly what the per-task network computes.

        Activations are kept channels-last (``torch.channels_last``): PyTorch's CPU kernels for
        grouped convolutions compute in that layout and would otherwise convert every
        gradient back and forth. The convolution is :func:`mamlkit.models.grouped_conv.grouped_conv2d`
        and batch norm with ReLU :func:`mamlkit.models.batchnorm_relu.batch_norm_relu`, both with
        their second derivatives written out for speed.

        Args:
            params: each tensor with a leading task axis, e.g. ``blocks.0.conv.weight``
                ``(T, 64, 1, 3, 3)``, ``head.weight`` ``(T, n_way, 64)``.
            x: ``(T, S, C, H, W)`` images.

        Returns:
            ``(T, S, n_way)`` logits.
        """
        num_tasks, num_examples = x.shape[:2]
        h = x.transpose(0, 1).reshape(num_examples, num_tasks * x.shape[2], *x.shape[3:])
        h = h.contiguous(memory_format=torch.channels_last)
        block = 0
        while f"blocks.{block}.conv.weight" in params:
            weight = params[f"blocks.{block}.conv.weight"]
            h = grouped_conv2d(h, weight.reshape(-1, *weight.shape[2:]), num_tasks, stride=2, padding=1)
            h = batch_norm_relu(h, params[f"blocks.{block}.norm.weight"].reshape(-1),
                                params[f"blocks.{block}.norm.bias"].reshape(-1))
            block += 1
        features = h.mean(dim=(2, 3)).reshape(num_examples, num_tasks, -1)
        logits = torch.einsum("stc,tnc->tsn", features, params["head.weight"])
        return logits + params["head.bias"].unsqueeze(1)


def reset_parameters(model: nn.Module, generator: torch.Generator) -> None:
    r"""Re-initialise ``model`` from ``generator``, so that a seed fixes the model exactly.

    Weights of convolutions and linear layers: LeCun-uniform, :math:`U(-\sqrt{3/n}, \sqrt{3/n})`
    with :math:`n` = fan_in, so variance :math:`1/n` (LeCun et al. 1998, "Efficient BackProp").
    PyTorch's own default differs: ``kaiming_uniform_(a=√5)``, bound :math:`1/\sqrt{n}`, a third
    of this variance. Biases zero; batch-norm scale one and shift zero.
    """
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                fan_in = module.weight[0].numel()
                bound = (1.0 / fan_in) ** 0.5 * 3 ** 0.5  # uniform with variance 1/fan_in
                module.weight.uniform_(-bound, bound, generator=generator)
                if module.bias is not None:
                    module.bias.zero_()
            elif isinstance(module, nn.BatchNorm2d):
                module.weight.fill_(1.0)
                module.bias.zero_()
