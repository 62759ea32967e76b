"""ResNet-20 for 32x32 colour images, as He et al. (2016, "Deep Residual Learning for Image
Recognition", section 4.2) trained it on CIFAR-10."""

from __future__ import annotations

from mindspore import nn, ops
from mindspore.common.initializer import HeNormal

from trainer.registry import register_network


def _conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=stride, pad_mode="pad", padding=1, has_bias=False,
                     weight_init=HeNormal(mode="fan_out", nonlinearity="relu"))


class BasicBlock(nn.Cell):
    """Two 3x3 convolutions with batch norm, and the identity added back; where the block halves
    the side and doubles the channels, the identity is subsampled and padded with zero channels
    (the paper's option A, which adds no parameters)."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1, self.bn1 = _conv3x3(cin, cout, stride), nn.BatchNorm2d(cout)
        self.conv2, self.bn2 = _conv3x3(cout, cout), nn.BatchNorm2d(cout)
        self.relu = nn.ReLU()
        # Subsampling by a 1x1 pooling: the same values as x[:, :, ::2, ::2], and a gradient
        # MindSpore's CPU kernels compute for every shape (StridedSliceGrad does not).
        self.subsample = nn.AvgPool2d(kernel_size=1, stride=stride) if stride != 1 else None
        self.extra = cout - cin  # zero channels the shortcut adds, half before and half after

    def construct(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        shortcut = x
        if self.subsample is not None:
            shortcut = self.subsample(shortcut)
        if self.extra:
            half = self.extra // 2
            shortcut = ops.pad(shortcut, (0, 0, 0, 0, half, self.extra - half))
        return self.relu(out + shortcut)


@register_network("resnet20", rank=2, image_size=32,
                  help="He et al.'s CIFAR ResNet-20 with batch norm, 0.27 M parameters, 32x32")
class ResNet20(nn.Cell):
    """ResNet-20: a 3x3 convolution to 16 channels, three stages of three basic blocks (16, 32
    and 64 channels; the second and third start by halving the side), global average pooling and
    a dense layer; batch norm after every convolution. About 0.27 M parameters for 10 classes.

    Batch norm keeps running statistics (``moving_mean``, ``moving_variance``): training updates
    them, validation, evaluation and export use them; they are saved in every checkpoint, and
    with ``--ema-decay`` averaged with the weights.

    Args:
        num_classes: Number of output logits. Defaults to `10`.
        in_channels: Input channels. Defaults to `3`.
        image_size: Side of the square input (any side from 8; CIFAR's is 32). Defaults to
            `32`.
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 3, image_size: int = 32,
                 blocks: int = 3) -> None:
        super().__init__()
        if image_size < 8:
            raise ValueError(f"ResNet-20 needs inputs of at least 8x8 pixels, not {image_size}")
        self.image_size = image_size
        self.conv1, self.bn1 = _conv3x3(in_channels, 16), nn.BatchNorm2d(16)
        self.relu = nn.ReLU()
        layers, cin = [], 16
        for stage, cout in enumerate((16, 32, 64)):
            for index in range(blocks):
                stride = 2 if stage > 0 and index == 0 else 1
                layers.append(BasicBlock(cin, cout, stride))
                cin = cout
        self.layers = nn.SequentialCell(layers)
        self.pool = ops.ReduceMean(keep_dims=False)
        self.fc = nn.Dense(64, num_classes)

    def construct(self, x):
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layers(x)
        return self.fc(self.pool(x, (2, 3)))
