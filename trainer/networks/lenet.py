"""LeNet-5 as in MindSpore's tutorials."""

from __future__ import annotations

from mindspore import nn
from mindspore.common.initializer import Normal

from trainer.networks.native import native_conv_relu_pool, native_dense
from trainer.networks.pool import MaxPool2x2
from trainer.registry import register_network


@register_network("lenet", rank=0, image_size=32, native_kernels=True,
                  help="LeNet-5 of MindSpore's tutorials, 32x32 inputs")
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
        in_channels: Input channels. Defaults to `1`.
        image_size: Side of the square input, at least 16 (the tutorial's 32 leaves 5x5 after
            the second pooling). Defaults to `32`.
        kernels: ``"native"`` or ``"mindspore"``. Defaults to `"mindspore"`.
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 1, image_size: int = 32,
                 kernels: str = "mindspore") -> None:
        super().__init__()
        if image_size < 16:
            raise ValueError(f"LeNet-5 needs inputs of at least 16x16 pixels, not {image_size}")
        self.image_size = image_size
        side = ((image_size - 4) // 2 - 4) // 2  # after two valid 5x5 convolutions and poolings
        self.conv1 = nn.Conv2d(in_channels, 6, 5, pad_mode="valid")
        self.conv2 = nn.Conv2d(6, 16, 5, pad_mode="valid")
        self.fc1 = nn.Dense(16 * side * side, 120, weight_init=Normal(0.02))
        self.fc2 = nn.Dense(120, 84, weight_init=Normal(0.02))
        self.fc3 = nn.Dense(84, num_classes, weight_init=Normal(0.02))
        self.relu = nn.ReLU()
        self.max_pool2d = MaxPool2x2()
        self.flatten = nn.Flatten()
        self.native1 = native_conv_relu_pool(kernels, self.conv1, self.image_size)
        self.native2 = native_conv_relu_pool(kernels, self.conv2, (self.image_size - 4) // 2)
        self.native = self.native1 is not None and self.native2 is not None
        heads = [native_dense(kernels, fc, relu) for fc, relu in
                 ((self.fc1, True), (self.fc2, True), (self.fc3, False))]
        self.native_dense = self.native and all(h is not None for h in heads)
        self.dense1, self.dense2, self.dense3 = heads if self.native_dense else (None,) * 3

    def construct(self, x):
        if self.training and self.native:
            return self.native_forward(x)
        x = self.max_pool2d(self.relu(self.conv1(x)))
        x = self.max_pool2d(self.relu(self.conv2(x)))
        x = self.flatten(x)
        x = self.relu(self.fc1(x))
        x = self.relu(self.fc2(x))
        return self.fc3(x)

    def native_forward(self, x):
        """The forward pass through the native kernels (only where ``self.native``): training's,
        and the engine's validation's (:class:`~trainer.networks.native.ops.NativeInference`)."""
        x = self.native1(x, self.conv1.weight)
        x = self.native2(x, self.conv2.weight)
        x = self.flatten(x)
        if self.native_dense:
            x = self.dense1(x, self.fc1.weight, self.fc1.bias)
            x = self.dense2(x, self.fc2.weight, self.fc2.bias)
            return self.dense3(x, self.fc3.weight, self.fc3.bias)
        x = self.relu(self.fc1(x))
        x = self.relu(self.fc2(x))
        return self.fc3(x)
