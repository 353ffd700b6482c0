"""The networks, and the kernels of their fast path.

==================  ==========================================================================
``conv4``           the paper's networks: ``Conv4`` (Omniglot) and ``SineMLP`` (sine waves)
``grouped_conv``    ``T`` tasks' convolutions as one grouped convolution (``forward_tasks``)
``batchnorm_relu``  batch norm and ReLU fused, with a hand-written backward
==================  ==========================================================================

``from mamlkit.models import Conv4`` is the short form of ``mamlkit.models.conv4``.
"""

from mamlkit.models.conv4 import Conv4, ConvBlock, SineMLP, reset_parameters

__all__ = ["Conv4", "ConvBlock", "SineMLP", "reset_parameters"]
