"""The dense network of MindSpore's quick start."""

from __future__ import annotations

from mindspore import nn


class MLP(nn.Cell):
    """The dense network of MindSpore's quick start: flatten 28x28, 512-512 with ReLU, logits.

    Args:
        num_classes: Number of output logits. Defaults to `10`.
    """

    image_size = 28

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.flatten = nn.Flatten()
        self.dense_relu_sequential = nn.SequentialCell(
            nn.Dense(28 * 28, 512), nn.ReLU(),
            nn.Dense(512, 512), nn.ReLU(),
            nn.Dense(512, num_classes),
        )

    def construct(self, x):
        return self.dense_relu_sequential(self.flatten(x))
