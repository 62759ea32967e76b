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

    image_ops = []
    if image_size != 28:
        image_ops.append(vision.Resize((image_size, image_size), vision.Inter.LINEAR))
    image_ops += [vision.Rescale(1.0 / 255.0, 0.0), vision.Normalize([MNIST_MEAN], [MNIST_STD]),
                  vision.HWC2CHW()]
    return image_ops
