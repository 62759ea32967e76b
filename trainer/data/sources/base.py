"""What a data source is: a data set turned into arrays once, and what it tells the rest of the
tool about them.

A source gives, per split (``"train"`` and ``"test"``), uint8 images ``[N, C, H, W]`` (square,
1 or 3 channels) and integer labels, and beforehand (cheaply, without decoding) a
:class:`SourceInfo`: the channel count, the side of its images, the class names and the
normalisation (known constants, or None to have it computed once from the training images).
Everything downstream (the held-out split, the decoded cache, the batch feed, augmentation,
evaluation, prediction and export) works on that and never asks which source it was.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from trainer.errors import DataError

#: The kinds of images a source holds. ``digits``: MNIST-like glyphs (digit augmentation, and
#: predict.py's fitting of a photo to MNIST's convention); ``natural``: photos (random crops and
#: flips, and plain resizing in predict.py).
DIGITS, NATURAL = "digits", "natural"
KINDS = (DIGITS, NATURAL)
SPLITS = ("train", "test")
CHANNELS = (1, 3)


@dataclass(frozen=True)
class Normalisation:
    """Per-channel mean and standard deviation of the pixel values scaled to [0, 1]."""

    mean: tuple[float, ...]
    std: tuple[float, ...]

    def to_dict(self) -> dict[str, list[float]]:
        return {"mean": list(self.mean), "std": list(self.std)}

    @classmethod
    def from_dict(cls, data: Any, channels: int) -> Normalisation | None:
        """A normalisation from its JSON form, or None when it is not one of ``channels``."""
        if not isinstance(data, dict):
            return None
        mean, std = data.get("mean"), data.get("std")
        ok = all(isinstance(v, list) and len(v) == channels
                 and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v)
                 for v in (mean, std))
        if not ok or not all(s > 0 for s in std) or not all(0 <= m <= 1 for m in mean):
            return None
        return cls(tuple(float(m) for m in mean), tuple(float(s) for s in std))


@dataclass(frozen=True)
class SourceInfo:
    """What a source says about its data before decoding it.

    Attributes:
        channels: 1 (grayscale) or 3 (RGB).
        image_size: The side of its square images, before any resizing for a network.
        class_names: One name per class, in label order.
        counts: Images per split (``{"train": N, "test": M}``).
        normalisation: Known constants, or None: computed from the training images.
        kind: :data:`DIGITS` or :data:`NATURAL`.
        about: Where the data comes from, in a few words (``"MNIST in data/mnist"``).
    """

    channels: int
    image_size: int
    class_names: tuple[str, ...]
    counts: dict[str, int]
    normalisation: Normalisation | None = None
    kind: str = NATURAL
    about: str = ""

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


class Source:
    """The base of every data source (built-in, a user's ``pkg.mod:factory``, or an object given
    to ``Trainer(source=...)``).

    Subclasses implement :meth:`prepare` (find, fetch or generate the files and check them,
    without MindSpore) and :meth:`load` (decode one split into arrays). They may implement
    :meth:`key` to have their decoded arrays cached, :meth:`labels` to give the labels without
    decoding the images, and :meth:`stream` to feed training through a MindSpore reader of
    their own (``--no-data-cache``).

    Attributes:
        name: The source's name, as ``--data-source`` and the records show it.
        streams: Whether :meth:`stream` exists, so ``--no-data-cache`` can stream every epoch
            through the source's reader.
        own_pipeline: Whether training always goes through :meth:`stream` (a reader with its
            own batching and transforms, such as mindvision's); the decoded cache is not used.
    """

    name = "source"
    streams = False
    own_pipeline = False

    def prepare(self, *, fetch: bool = True) -> SourceInfo:
        """Finds (downloads, generates) and checks the data; returns what it holds.

        Args:
            fetch: Whether missing files may be downloaded or generated. Defaults to `True`.

        Raises:
            DataError: the data is missing, malformed or cannot be fetched.
        """
        raise NotImplementedError

    def load(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        """Decodes ``split`` (``"train"`` or ``"test"``): ``(uint8 [N, C, H, W], labels [N])``.

        Raises:
            DataError: the data cannot be decoded.
        """
        raise NotImplementedError

    def labels(self, split: str) -> np.ndarray:
        """The labels of ``split``, for the held-out split's choice; decodes by default."""
        return self.load(split)[1]

    def key(self, split: str) -> str | None:
        """What the split's arrays are made from (files, their sizes and modification times,
        options), as a string; None when the arrays are not to be cached."""
        return None

    def stream(self, split: str, **options: Any):
        """A batched MindSpore dataset of ``split`` read by the source's own reader (see
        :func:`trainer.data.pipeline.build_run_data` for the options)."""
        raise NotImplementedError(f"data source {self.name!r} has no streaming reader")


def check_arrays(images: Any, labels: Any, *, where: str, num_classes: int | None = None,
                 channels: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Checks a split's arrays as a source gives them; returns them (labels as int32).

    Raises:
        DataError: naming ``where`` and what is wrong: a type or shape other than uint8
            ``[N, C, S, S]`` with 1 or 3 channels, labels that do not pair up, are not whole
            numbers, or lie beyond the class count.
    """
    from trainer.limits import SOURCE_MAX_BYTES, SOURCE_MAX_IMAGES, SOURCE_MAX_SIDE

    fix = ("A source gives uint8 images shaped [N, C, S, S] (C = 1 or 3) and one integer label "
           "per image, from 0 to the class count - 1.")
    if not isinstance(images, np.ndarray) or images.dtype != np.uint8:
        what = (f"{images.dtype} arrays" if isinstance(images, np.ndarray)
                else f"a {type(images).__name__}")
        raise DataError(f"{where}: the images are {what}, not uint8 arrays. Convert them with "
                        f"numpy (np.asarray(x, dtype=np.uint8), values 0-255). {fix}")
    if images.ndim != 4 or images.shape[1] not in CHANNELS or images.shape[2] != images.shape[3]:
        raise DataError(f"{where}: the images have shape {list(images.shape)}, not "
                        f"[N, C, S, S] with C = 1 or 3 and square sides. {fix}")
    count, depth, side = images.shape[0], images.shape[1], images.shape[2]
    if channels is not None and depth != channels:
        raise DataError(f"{where}: the images have {depth} channel(s), but the source says "
                        f"{channels}. {fix}")
    if count > SOURCE_MAX_IMAGES or side > SOURCE_MAX_SIDE or images.nbytes > SOURCE_MAX_BYTES:
        raise DataError(f"{where}: {count:,} images of {side}x{side} pixels ({images.nbytes:,} "
                        f"bytes) are more than the limits ({SOURCE_MAX_IMAGES:,} images, "
                        f"{SOURCE_MAX_SIDE} pixels a side, {SOURCE_MAX_BYTES:,} bytes). Use fewer "
                        "or smaller images.")
    if side < 1 or count < 1:
        raise DataError(f"{where}: there are no images (shape {list(images.shape)}). {fix}")
    labels = np.asarray(labels) if not isinstance(labels, np.ndarray) else labels
    if labels.ndim != 1 or len(labels) != count:
        raise DataError(f"{where}: {count} images but labels of shape {list(labels.shape)}; "
                        f"there must be one label per image. {fix}")
    if labels.dtype.kind not in "iu":
        raise DataError(f"{where}: the labels are {labels.dtype}, not whole numbers. {fix}")
    low, high = int(labels.min()), int(labels.max())
    if low < 0 or (num_classes is not None and high >= num_classes):
        bad = low if low < 0 else high
        limit = f"0-{num_classes - 1}" if num_classes is not None else "0 and up"
        raise DataError(f"{where}: label {bad} is outside {limit} (the source has "
                        f"{num_classes} classes). {fix}")
    return images, labels.astype(np.int32)


def check_class_names(names: Any, where: str) -> tuple[str, ...]:
    """Class names as a tuple of short strings, at least two of them.

    Raises:
        DataError: fewer than two names, a name that is not a string, empty, too long, or
            repeated.
    """
    from trainer.limits import CLASS_NAME_MAX_CHARS, MAX_CLASSES

    if isinstance(names, (str, bytes)) or not isinstance(names, Sequence):
        raise DataError(f"{where}: the class names are {type(names).__name__}, not a list of "
                        "strings (one per class, in label order).")
    names = tuple(names)
    if not 2 <= len(names) <= MAX_CLASSES:
        raise DataError(f"{where}: there are {len(names)} classes; training needs from 2 to "
                        f"{MAX_CLASSES:,}. Give at least two classes.")
    for name in names:
        if not isinstance(name, str) or not name.strip() or len(name) > CLASS_NAME_MAX_CHARS:
            raise DataError(f"{where}: class name {name!r} is not a non-empty string of at most "
                            f"{CLASS_NAME_MAX_CHARS} characters.")
    if len(set(names)) != len(names):
        twice = next(n for n in names if names.count(n) > 1)
        raise DataError(f"{where}: class name {twice!r} appears twice; each class needs its own "
                        "name.")
    return names
