"""The per-image operations between a source's uint8 images and the network's input, shared by
training, evaluation and prediction so that all three see identical inputs."""

from __future__ import annotations

from trainer.data.sources.base import Normalisation
from trainer.data.sources.mnist import MNIST_MEAN, MNIST_STD

__all__ = ["MNIST", "MNIST_MEAN", "MNIST_STD", "image_transforms", "pixel_transforms",
           "value_table", "value_transforms"]

#: MNIST's normalisation, also the one of a run that records none.
MNIST = Normalisation((MNIST_MEAN,), (MNIST_STD,))


def image_transforms(image_size: int, normalisation: Normalisation = MNIST,
                     native: int = 28) -> list:
    """The per-image operations between a uint8 ``[S, S, C]`` image and the network's input.

    Resize (bilinear, only when ``image_size`` is not the images' ``native`` side), rescale to
    [0, 1], normalise with the source's per-channel mean and deviation, HWC to CHW. The
    streaming pipeline maps them over the dataset; prediction applies the same objects to single
    images (they are callable eagerly), so both see identical inputs.

    Args:
        image_size: Side the network expects.
        normalisation: The source's mean and deviation. Defaults to MNIST's.
        native: The side of the images given. Defaults to `28`.

    Returns:
        A list of ``mindspore.dataset.vision`` operations.
    """
    from mindspore.dataset import vision

    return [*pixel_transforms(image_size, native), *value_transforms(normalisation),
            vision.HWC2CHW()]


def pixel_transforms(image_size: int, native: int = 28) -> list:
    """The operations that move pixels (a bilinear resize when ``image_size`` is not
    ``native``); on a uint8 image they give a uint8 image."""
    from mindspore.dataset import vision

    if image_size == native:
        return []
    return [vision.Resize((image_size, image_size), vision.Inter.LINEAR)]


def value_transforms(normalisation: Normalisation = MNIST) -> list:
    """The per-value operations: rescale to [0, 1], then the per-channel mean and deviation."""
    from mindspore.dataset import vision

    return [vision.Rescale(1.0 / 255.0, 0.0),
            vision.Normalize(list(normalisation.mean), list(normalisation.std))]


_TABLES: dict[Normalisation, object] = {}


def value_table(normalisation: Normalisation = MNIST):
    """``float32 [C, 256]``: what :func:`value_transforms` makes of each uint8 value in each
    channel, computed by those operations themselves, so indexing it with a uint8 image gives
    their output bit for bit (they act on each value alone)."""
    if normalisation not in _TABLES:
        import numpy as np
        from mindspore.dataset import transforms

        channels = len(normalisation.mean)
        values = np.repeat(np.arange(256, dtype=np.uint8).reshape(16, 16, 1), channels, axis=2)
        table = np.asarray(transforms.Compose(value_transforms(normalisation))(values),
                           dtype=np.float32)
        _TABLES[normalisation] = np.ascontiguousarray(table.reshape(256, channels).T)
    return _TABLES[normalisation]
