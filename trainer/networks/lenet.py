"""LeNet-5 as in MindSpore's tutorials."""

from __future__ import annotations

from mindspore import nn
from mindspore.common.initializer import Normal

from trainer.networks.native import native_conv_relu_pool
from trainer.networks.pool import MaxPool2x2


class LeNet5(nn.Cell):
    """LeNet-5 as in MindSpore's tutorials: two 5x5 valid convolutions and three dense layers.

    The pooling is :class:`~trainer.networks.pool.MaxPool2x2`, the tutorial's
    ``nn.MaxPool2d(kernel_size=2, stride=2)`` with a faster backward pass: the same function and
    gradients, and the same parameters, so checkpoints are those of the tutorial's network.

    With ``kernels="native"``, training runs each convolution with its ReLU and pooling as the
    native CPU kernels of :mod:`trainer.networks.native` (where they are available and faster
    for the layer's shape); inference always runs MindSpore's operators. The parameters are the
    same either way.

    Args:
        num_classes: Number of output logits. Defaults to `10`.
        num_channel: Input channels. Defaults to `1`.
        kernels: ``"native"`` or ``"mindspore"``. Defaults to `"mindspore"`.
    """

    image_size = 32

    def __init__(self, num_classes: int = 10, num_channel: int = 1,
                 kernels: str = "mindspore") -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(num_channel, 6, 5, pad_mode="valid")
        self.conv2 = nn.Conv2d(6, 16, 5, pad_mode="valid")
        self.fc1 = nn.Dense(16 * 5 * 5, 120, weight_init=Normal(0.02))
        self.fc2 = nn.Dense(120, 84, weight_init=Normal(0.02))
        self.fc3 = nn.Dense(84, num_classes, weight_init=Normal(0.02))
        self.relu = nn.ReLU()
        # nn.MaxPool2d(kernel_size=2, stride=2) with a faster backward pass on CPU; the same
        # outputs and gradients (trainer/networks/pool.py).
        self.max_pool2d = MaxPool2x2()
        self.flatten = nn.Flatten()
        self.native1 = native_conv_relu_pool(kernels, self.conv1, self.image_size)
        self.native2 = native_conv_relu_pool(kernels, self.conv2, (self.image_size - 4) // 2)
        self.native = self.native1 is not None and self.native2 is not None

    def construct(self, x):
        if self.training and self.native:
            x = self.native1(x, self.conv1.weight)
            x = self.native2(x, self.conv2.weight)
        else:
            x = self.max_pool2d(self.relu(self.conv1(x)))
            x = self.max_pool2d(self.relu(self.conv2(x)))
        x = self.flatten(x)
        x = self.relu(self.fc1(x))
        x = self.relu(self.fc2(x))
        return self.fc3(x)
