"""The decoded-data cache: each split decoded and resized once by MindSpore's reader and kept as
two ``.npy`` files of uint8 digits and int32 labels, so later epochs and runs cut whole batches
from arrays (normalised per batch, see :func:`trainer.data.transforms.value_table`)."""

from __future__ import annotations

import hashlib
import logging
from functools import partial
from pathlib import Path

import numpy as np

from trainer.data.entries import Damaged, entry_path, open_entry, origin_of, write_entry
from trainer.data.idx import NUM_CLASSES, SPLIT_FILES
from trainer.data.transforms import pixel_transforms

logger = logging.getLogger("mstrain")


# Bumped whenever what the cache holds changes, so old caches are never read as new ones.
CACHE_VERSION = 4  # 4: a checked entry with a manifest; 3: uint8 digits; 2: normalised float32

KIND = "decoded"
_CACHE_FILES = ("images.npy", "labels.npy")


def decoded_split(folder: Path, split: str, *, image_size: int, num_workers: int = 2):
    """The split decoded and resized once by MindSpore's reader, as two arrays.

    The digits go through ``MnistDataset`` and the streaming pipeline's pixel operations
    (:func:`pixel_transforms`) and stay uint8, a quarter of the float32 size; the per-value
    operations are a 256-entry table applied per batch (:func:`value_table`), so a batch is bit
    for bit what the streaming pipeline produces. They are kept as an entry of the cache
    (:mod:`trainer.data.entries`: built in a staging folder, renamed into place, checked against
    its manifest once per run) of two ``.npy`` files (read back with ``allow_pickle=False`` and
    memory-mapped, so msrun's workers share one copy), keyed by the IDX files' path, size and
    modification time, the image size and :data:`CACHE_VERSION`. Two processes building it at
    once (msrun's workers) both end up with the same complete entry. A damaged entry (a file
    changed, labels out of range, images of another shape than the key says) is rebuilt; when
    the cache folder cannot be written, the split is decoded into memory for this run only.

    Args:
        folder: Folder with the split's raw IDX files (see :func:`prepare_split`).
        split: ``"train"`` or ``"test"``.
        image_size: Side the network expects.
        num_workers: Parallel workers for the one-off decoding. Defaults to `2`.

    Returns:
        ``(images uint8 [N, 1, S, S], labels int32 [N])``.
    """
    files = [Path(folder) / name for name in SPLIT_FILES[split]]
    key = hashlib.sha1(f"v{CACHE_VERSION}|{image_size}".encode())
    for path in files:
        stat = path.stat()
        key.update(f"|{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode())
    name = f"{split}-{image_size}-{key.hexdigest()[:16]}"
    check = partial(check_arrays, image_size=image_size)
    found = open_entry(KIND, name, check)
    if found is not None:
        try:
            return _load(found)
        except Damaged:
            pass  # removed since it was checked: decoded again below
    target = entry_path(KIND, name)
    logger.info("Decoding %s once into %s (later runs read it from there).", folder, target)
    images, labels = _decode(folder, split, image_size, num_workers)

    def fill(staging: Path) -> dict:
        for file, array in zip(_CACHE_FILES, (images, labels)):
            with open(staging / file, "wb") as out:
                np.save(out, array, allow_pickle=False)
        origin = origin_of(Path(folder))
        return {"split": split, "image_size": image_size, "count": len(labels),
                "source": [str(p.resolve()) for p in files], "origin": origin,
                "about": f"{len(labels):,} digits decoded at {image_size}x{image_size} from "
                         f"{origin}"}

    try:
        write_entry(KIND, name, fill, check)
    except OSError as exc:
        logger.warning("Could not write the decoded-data cache in %s (%s), so the %s split was "
                       "decoded for this run only. Set MSTRAIN_CACHE to a folder you may write "
                       "to, and later runs start faster.", target.parent,
                       exc.strerror or exc, split)
    return images, labels


def check_arrays(folder: Path, meta: dict, *, image_size: int) -> None:
    """The values of a decoded entry: uint8 digits of the key's side, as many int32 labels,
    each a class.

    Raises:
        Damaged: an array is unreadable, of another type or shape, or a label is out of range.
    """
    images, labels = _load(folder)
    count = meta.get("count")
    if not isinstance(count, int):
        raise Damaged("its manifest records no count of digits")
    expected = (count, 1, image_size, image_size)
    if images.dtype != np.uint8 or images.shape != expected:
        raise Damaged(f"images.npy holds {images.dtype} {list(images.shape)}, not uint8 "
                      f"{list(expected)}")
    if labels.dtype != np.int32 or labels.shape != (count,):
        raise Damaged(f"labels.npy holds {labels.dtype} {list(labels.shape)}, not int32 "
                      f"[{count}]")
    if count and (int(labels.min()) < 0 or int(labels.max()) >= NUM_CLASSES):
        raise Damaged(f"labels.npy holds labels outside 0-{NUM_CLASSES - 1}")


def _load(folder: Path):
    try:
        return tuple(np.load(folder / name, mmap_mode="r", allow_pickle=False)
                     for name in _CACHE_FILES)
    except (OSError, ValueError) as exc:
        raise Damaged(f"an array cannot be read: {exc}") from None


def _decode(folder: Path, split: str, image_size: int, num_workers: int):
    """Decodes a split with MindSpore's reader and the streaming pipeline's pixel operations."""
    import mindspore.dataset as ds
    from mindspore.dataset import vision

    source = ds.MnistDataset(str(folder), usage=split, shuffle=False,
                             num_parallel_workers=num_workers)
    source = source.map([*pixel_transforms(image_size), vision.HWC2CHW()], "image",
                        num_parallel_workers=num_workers)
    batches = list(source.batch(2048).create_tuple_iterator(output_numpy=True, num_epochs=1))
    images = np.concatenate([b[0] for b in batches])
    if images.dtype != np.uint8:  # the reader's digits are uint8, and Resize keeps the type
        raise TypeError(f"decoded digits are {images.dtype}, not uint8")
    labels = np.concatenate([b[1] for b in batches]).astype(np.int32)
    return np.ascontiguousarray(images), labels
