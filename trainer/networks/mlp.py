"""The dense network of MindSpore's quick start."""

from __future__ import annotations

from mindspore import nn

from trainer.registry import register_network


@register_network("mlp", rank=1, help="the quick start's dense network, the source's image size")
class MLP(nn.Cell):
    """The dense network of MindSpore's quick start: flatten the image (28x28 for MNIST),
    512-512 with ReLU, logits.

    Args:
        num_classes: Number of output logits. Defaults to `10`.
        in_channels: Input channels. Defaults to `1`.
        image_size: Side of the square input. Defaults to `28`.
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 1,
                 image_size: int = 28) -> None:
        super().__init__()
        self.image_size = image_size
        self.flatten = nn.Flatten()
        self.dense_relu_sequential = nn.SequentialCell(
            nn.Dense(in_channels * image_size * image_size, 512), nn.ReLU(),
            nn.Dense(512, 512), nn.ReLU(),
            nn.Dense(512, num_classes),
        )

    def construct(self, x):
        return self.dense_relu_sequential(self.flatten(x))
