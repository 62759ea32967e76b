"""The decoded-data cache: each split of a source decoded and resized once, kept as two ``.npy``
files of uint8 images and int32 labels, so later epochs and runs cut whole batches from arrays
(normalised per batch, see :func:`trainer.data.transforms.value_table`)."""

from __future__ import annotations

import hashlib
import logging
from functools import partial
from pathlib import Path

import numpy as np

from trainer.data.entries import Damaged, entry_path, open_entry, write_entry
from trainer.data.sources.base import Normalisation, Source, check_arrays
from trainer.fileio import slug

logger = logging.getLogger("mstrain")


# Bumped whenever what the cache holds changes, so old caches are never read as new ones.
CACHE_VERSION = 5

KIND = "decoded"
_CACHE_FILES = ("images.npy", "labels.npy")
_RESIZE_CHUNK = 4096


def decoded_split(source, split: str, *, image_size: int, num_classes: int = 10,
                  channels: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """``(images, labels)`` of :func:`decode_split`; ``source`` may also be a folder of one
    split's raw IDX files."""
    if not isinstance(source, Source):
        from trainer.data.pipeline import IdxFolder

        source = IdxFolder(Path(source), split)
    images, labels, _ = decode_split(source, split, image_size=image_size,
                                     num_classes=num_classes, channels=channels)
    return images, labels


def decode_split(source: Source, split: str, *, image_size: int, num_classes: int,
                 channels: int) -> tuple[np.ndarray, np.ndarray, dict]:
    """A source's split decoded once and resized to ``image_size``, as two arrays, and the
    entry's facts (``mean`` and ``std`` of the pixel values, per channel).

    The images stay uint8, a quarter of the float32 size; the per-value operations are a table
    applied per batch (:func:`trainer.data.transforms.value_table`), so a batch is bit for bit
    what the streaming pipeline produces. When the source has a :meth:`~Source.key`, they are
    kept as an entry of the cache (:mod:`trainer.data.entries`: built in a staging folder,
    renamed into place, checked against its manifest once per run) of two ``.npy`` files (read
    back with ``allow_pickle=False`` and memory-mapped, so msrun's workers share one copy), keyed
    by the source's key, the image size and :data:`CACHE_VERSION`. Two processes building it at
    once (msrun's workers) both end up with the same complete entry. A damaged entry is rebuilt;
    when the cache folder cannot be written, the split is decoded into memory for this run only.

    Args:
        source: The data source, prepared.
        split: ``"train"`` or ``"test"``.
        image_size: Side the network expects.
        num_classes: The source's class count (labels are checked against it).
        channels: The source's channel count.

    Returns:
        ``(images uint8 [N, C, S, S], labels int32 [N], facts)``.

    Raises:
        DataError: the source's arrays are not what a source gives.
    """
    key = source.key(split)
    where = f"Data source {source.name!r}, {split} split"
    if key is None:
        images, labels = _decode(source, split, image_size, num_classes, channels, where)
        return images, labels, _facts(images)
    digest = hashlib.sha1(f"v{CACHE_VERSION}|{image_size}|{key}".encode()).hexdigest()[:16]
    name = f"{slug(source.name)}-{split}-{image_size}-{digest}"
    check = partial(check_entry, image_size=image_size, num_classes=num_classes,
                    channels=channels)
    found = open_entry(KIND, name, check)
    if found is not None:
        try:
            return (*_load(found), _read_facts(found))
        except Damaged:
            pass  # removed since it was checked: decoded again below
    target = entry_path(KIND, name)
    logger.info("Decoding the %s split of %s once into %s (later runs read it from there).",
                split, source.name, target)
    images, labels = _decode(source, split, image_size, num_classes, channels, where)
    facts = _facts(images)
    origin = getattr(source, "origin", None) or source.name

    def fill(staging: Path) -> dict:
        for file, array in zip(_CACHE_FILES, (images, labels)):
            with open(staging / file, "wb") as out:
                np.save(out, array, allow_pickle=False)
        return {"split": split, "image_size": image_size, "count": len(labels),
                "channels": channels, "num_classes": num_classes, "source": source.name,
                "origin": str(origin), **facts,
                "about": f"{len(labels):,} {split} images of {origin} decoded at "
                         f"{image_size}x{image_size}"}

    try:
        write_entry(KIND, name, fill, check)
    except OSError as exc:
        logger.warning("Could not write the decoded-data cache in %s (%s), so the %s split was "
                       "decoded for this run only. Set MSTRAIN_CACHE to a folder you may write "
                       "to, and later runs start faster.", target.parent,
                       exc.strerror or exc, split)
    return images, labels, facts


def check_entry(folder: Path, meta: dict, *, image_size: int, num_classes: int,
                channels: int) -> None:
    """The values of a decoded entry: uint8 images of the key's side and channels, as many
    int32 labels, each a class, and the recorded mean and deviation.

    Raises:
        Damaged: an array is unreadable, of another type or shape, or a label is out of range.
    """
    images, labels = _load(folder)
    count = meta.get("count")
    if not isinstance(count, int):
        raise Damaged("its manifest records no count of images")
    expected = (count, channels, image_size, image_size)
    if images.dtype != np.uint8 or images.shape != expected:
        raise Damaged(f"images.npy holds {images.dtype} {list(images.shape)}, not uint8 "
                      f"{list(expected)}")
    if labels.dtype != np.int32 or labels.shape != (count,):
        raise Damaged(f"labels.npy holds {labels.dtype} {list(labels.shape)}, not int32 "
                      f"[{count}]")
    if count and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise Damaged(f"labels.npy holds labels outside 0-{num_classes - 1}")
    if Normalisation.from_dict(meta, channels) is None:
        raise Damaged("its manifest records no mean and deviation of the pixel values")


def _read_facts(folder: Path) -> dict:
    import json

    from trainer.data.entries import MANIFEST
    from trainer.fileio import read_bounded
    from trainer.limits import POINTER_MAX_BYTES

    try:
        meta = json.loads(read_bounded(folder / MANIFEST, POINTER_MAX_BYTES))["meta"]
        return {"mean": meta["mean"], "std": meta["std"]}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise Damaged(f"its manifest cannot be read: {exc}") from None


def _facts(images: np.ndarray) -> dict:
    """Per-channel mean and standard deviation of the pixel values scaled to [0, 1] (at least
    1/255, so a blank channel still normalises)."""
    channels = images.shape[1]
    mean, square = np.zeros(channels), np.zeros(channels)
    for start in range(0, len(images), _RESIZE_CHUNK):
        chunk = images[start:start + _RESIZE_CHUNK].astype(np.float64) / 255.0
        mean += chunk.sum(axis=(0, 2, 3))
        square += (chunk * chunk).sum(axis=(0, 2, 3))
    total = max(1, images.shape[0] * images.shape[2] * images.shape[3])
    mean /= total
    std = np.sqrt(np.maximum(square / total - mean * mean, 0.0))
    return {"mean": [round(float(m), 6) for m in mean],
            "std": [round(max(float(s), 1 / 255), 6) for s in std]}


def _load(folder: Path):
    try:
        return tuple(np.load(folder / name, mmap_mode="r", allow_pickle=False)
                     for name in _CACHE_FILES)
    except (OSError, ValueError) as exc:
        raise Damaged(f"an array cannot be read: {exc}") from None


def _decode(source: Source, split: str, image_size: int, num_classes: int, channels: int,
            where: str) -> tuple[np.ndarray, np.ndarray]:
    """The source's split, checked and resized to ``image_size``."""
    from trainer.errors import DataError
    from trainer.limits import SOURCE_MAX_BYTES

    images, labels = source.load(split)
    images, labels = check_arrays(images, labels, where=where, num_classes=num_classes,
                                  channels=channels)
    resized = len(images) * channels * image_size * image_size
    if resized > SOURCE_MAX_BYTES:
        raise DataError(f"{where}: {len(images):,} images resized to {image_size}x{image_size} "
                        f"would take {resized:,} bytes, more than the limit of "
                        f"{SOURCE_MAX_BYTES:,}. Use a smaller --image-size or fewer images.")
    return resize(images, image_size), labels


def resize(images: np.ndarray, image_size: int) -> np.ndarray:
    """uint8 ``[N, C, H, W]`` resized to ``image_size`` a side by MindSpore's bilinear
    ``Resize`` (the streaming pipeline's, so both give the same pixels); unchanged when the
    images have that size already."""
    if images.shape[2:] == (image_size, image_size):
        return np.ascontiguousarray(images)
    from mindspore.dataset import vision

    op = vision.Resize((image_size, image_size), vision.Inter.LINEAR)
    out = np.empty((len(images), images.shape[1], image_size, image_size), dtype=np.uint8)
    for start in range(0, len(images), _RESIZE_CHUNK):
        chunk = np.ascontiguousarray(images[start:start + _RESIZE_CHUNK].transpose(0, 2, 3, 1))
        resized = np.asarray(op(chunk)).reshape(len(chunk), image_size, image_size, -1)
        out[start:start + len(chunk)] = resized.transpose(0, 3, 1, 2)
    return out
