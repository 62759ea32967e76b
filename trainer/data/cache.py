"""The decoded-data cache: each split decoded and resized once by MindSpore's reader and kept as
two ``.npy`` files of uint8 digits and int32 labels, so later epochs and runs cut whole batches
from arrays (normalised per batch, see :func:`trainer.data.transforms.value_table`)."""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

import numpy as np

from trainer.data.idx import SPLIT_FILES
from trainer.data.transforms import pixel_transforms
from trainer.fileio import cache_root, default_mode, hold_lock, read_bounded, remove_stale_staging
from trainer.limits import POINTER_MAX_BYTES

logger = logging.getLogger("mstrain")


# Bumped whenever what the cache holds changes, so old caches are never read as new ones.
CACHE_VERSION = 3  # 3: uint8 digits (1 byte a pixel); 2 held normalised float32


_CACHE_FILES = ("images.npy", "labels.npy")


_CACHE_META = "meta.json"
_BUILDING = ".building"


def decoded_split(folder: Path, split: str, *, image_size: int, num_workers: int = 2):
    """The split decoded and resized once by MindSpore's reader, as two arrays.

    The digits go through ``MnistDataset`` and the streaming pipeline's pixel operations
    (:func:`pixel_transforms`) and stay uint8, a quarter of the float32 size; the per-value
    operations are a 256-entry table applied per batch (:func:`value_table`), so a batch is bit
    for bit what the streaming pipeline produces. They are kept
    under :func:`cache_root` as two ``.npy`` files (read back with ``allow_pickle=False`` and
    memory-mapped, so msrun's workers share one copy), keyed by the IDX files' path, size and
    modification time, the image size and :data:`CACHE_VERSION`. They are written in a temporary
    folder that is renamed into place when complete, so an interrupted build is never mistaken
    for a cache, and two processes building it at once (msrun's workers) both end up with the
    same complete folder. A damaged cache is rebuilt; when the cache folder cannot be written,
    the split is decoded into memory for this run only.

    Args:
        folder: Folder with the split's raw IDX files (see :func:`prepare_split`).
        split: ``"train"`` or ``"test"``.
        image_size: Side the network expects.
        num_workers: Parallel workers for the one-off decoding. Defaults to `2`.

    Returns:
        ``(images uint8 [N, 1, S, S], labels int32 [N])``.
    """
    import json
    import shutil
    import tempfile

    files = [Path(folder) / name for name in SPLIT_FILES[split]]
    key = hashlib.sha1(f"v{CACHE_VERSION}|{image_size}".encode())
    for path in files:
        stat = path.stat()
        key.update(f"|{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode())
    target = cache_root() / "decoded" / f"{split}-{image_size}-{key.hexdigest()[:16]}"
    remove_stale_staging(target.parent)
    cached = _read_cache(target)
    if cached is not None:
        return cached
    logger.info("Decoding %s once into %s (later runs read it from there).", folder, target)
    images, labels = _decode(folder, split, image_size, num_workers)
    staging = building = None
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp",
                                        dir=target.parent))
        staging.chmod(default_mode(directory=True))  # mkdtemp makes it private
        # Held while building: a later start tells a live build from one a SIGKILL left behind.
        building = hold_lock(staging / _BUILDING)
        for name, array in zip(_CACHE_FILES, (images, labels)):
            with open(staging / name, "wb") as out:
                np.save(out, array, allow_pickle=False)
                out.flush()
                os.fsync(out.fileno())
        meta = {"version": CACHE_VERSION, "split": split, "image_size": image_size,
                "count": len(labels), "source": [str(p.resolve()) for p in files]}
        (staging / _CACHE_META).write_text(json.dumps(meta, indent=1) + "\n")
        (staging / _BUILDING).unlink()
        if target.exists():  # a damaged leftover (a good one was returned above)
            shutil.rmtree(target, ignore_errors=True)
        try:
            os.rename(staging, target)
        except OSError:
            if _read_cache(target) is None:  # not a concurrent build that finished first
                raise
    except OSError as exc:
        logger.warning("Could not write the decoded-data cache in %s (%s), so the %s split was "
                       "decoded for this run only. Set MSTRAIN_CACHE to a folder you may write "
                       "to, and later runs start faster.", target.parent,
                       exc.strerror or exc, split)
    finally:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
        if building is not None:
            building.close()
    return images, labels


def _read_cache(target: Path):
    """The cached arrays of :func:`decoded_split`, or None when absent, incomplete or damaged."""
    import json

    try:
        meta = json.loads(read_bounded(target / _CACHE_META, POINTER_MAX_BYTES))
        images, labels = (np.load(target / name, mmap_mode="r", allow_pickle=False)
                          for name in _CACHE_FILES)
    except (OSError, ValueError, RecursionError):
        return None
    count = meta.get("count") if isinstance(meta, dict) else None
    if (images.dtype != np.uint8 or labels.dtype != np.int32 or images.ndim != 4
            or len(images) != count or labels.shape != (count,)):
        return None
    return images, labels


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
