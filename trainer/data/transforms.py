"""The per-image operations of MindSpore's MNIST tutorial, shared by training, evaluation and
prediction so that all three see identical inputs."""

from __future__ import annotations

MNIST_MEAN = 0.1307


MNIST_STD = 0.3081


def image_transforms(image_size: int) -> list:
    """The per-image operations between a uint8 ``[28, 28, 1]`` digit and the network's input.

    Resize (bilinear, only when ``image_size`` is not 28), rescale to [0, 1], normalise with
    MNIST's mean and standard deviation, HWC to CHW. The training pipeline maps them over the
    dataset; prediction applies the same objects to single images (they are callable eagerly), so
    both see identical inputs.

    Args:
        image_size: Side the network expects.

    Returns:
        A list of ``mindspore.dataset.vision`` operations.
    """
    from mindspore.dataset import vision

    return [*pixel_transforms(image_size), *value_transforms(), vision.HWC2CHW()]


def pixel_transforms(image_size: int) -> list:
    """The operations that move pixels (a bilinear resize when ``image_size`` is not 28); on a
    uint8 digit they give a uint8 digit."""
    from mindspore.dataset import vision

    if image_size == 28:
        return []
    return [vision.Resize((image_size, image_size), vision.Inter.LINEAR)]


def value_transforms() -> list:
    """The per-value operations: rescale to [0, 1], then MNIST's mean and standard deviation."""
    from mindspore.dataset import vision

    return [vision.Rescale(1.0 / 255.0, 0.0), vision.Normalize([MNIST_MEAN], [MNIST_STD])]


_TABLE = []


def value_table():
    """``float32 [256]``: what :func:`value_transforms` makes of each uint8 value, computed by
    those operations themselves, so indexing it with a uint8 digit gives their output bit for
    bit (they act on each value alone)."""
    if not _TABLE:
        import numpy as np
        from mindspore.dataset import transforms

        values = np.arange(256, dtype=np.uint8).reshape(16, 16, 1)
        table = np.asarray(transforms.Compose(value_transforms())(values), dtype=np.float32)
        _TABLE.append(np.ascontiguousarray(table.reshape(256)))
    return _TABLE[0]
