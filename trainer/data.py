"""The MNIST input pipeline, built on ``mindspore.dataset.MnistDataset``.

Files are located (downloaded or generated when missing), validated with :mod:`trainer.idx` so a
bad file gets a plain message instead of the pipeline's traceback, and decompressed when they are
gzipped (MindSpore's reader only takes raw IDX). Then the pipeline of MindSpore's tutorial is
applied: resize (when the network wants 32x32), rescale to [0, 1], normalise, HWC to CHW, labels
to int32, shuffle and batch.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from trainer.config import TrainConfig
from trainer.errors import ConfigError, DataError
from trainer.fileio import default_mode
from trainer.idx import SPLIT_FILES, find_split, missing_files, read_idx, validate_split, write_idx

logger = logging.getLogger(__name__)

# Subfolder of a split's folder that holds raw copies of gzipped files.
DECOMPRESSED = "decompressed"

MNIST_MEAN = 0.1307
MNIST_STD = 0.3081


@dataclass
class SplitInfo:
    """A split ready for MindSpore's reader: a folder of raw IDX files and its size."""

    folder: Path
    count: int


def cache_root() -> Path:
    """Where decompressed copies of read-only gzipped files go."""
    base = os.environ.get("MSTRAIN_CACHE") or os.environ.get("XDG_CACHE_HOME")
    return Path(base or Path.home() / ".cache") / "mstrain"


def ensure_data(cfg: TrainConfig, progress: bool = True) -> Path:
    """Makes sure the four IDX files of ``cfg``'s data source exist and returns their folder.

    MNIST is downloaded into the data folder when files are missing (unless ``download`` is off);
    generated digits are written there on first use.

    Raises:
        DataError: the files are missing and cannot be fetched or generated.
    """
    data_dir = cfg.resolved_data_dir()
    if cfg.data_source == "synthetic":
        if missing_files(data_dir):
            from trainer.synthetic import generate_digits

            logger.info("Generating %d + %d synthetic digits in %s", cfg.synthetic_train_size,
                        cfg.synthetic_test_size, data_dir)
            generate_digits(data_dir, cfg.synthetic_train_size, cfg.synthetic_test_size,
                            seed=cfg.seed)
        return data_dir
    from trainer.download import ensure_mnist

    return ensure_mnist(data_dir, allow_download=cfg.download, progress=progress)


def prepare_split(data_dir: Path, split: str) -> SplitInfo:
    """Validates one split and returns a folder holding it as raw IDX files.

    MindSpore's reader takes every file of the folder whose name *contains* an expected name, so
    it is only given a folder where the two raw files are the only such entries. Otherwise (the
    files are gzipped, or a ``.gz`` twin, backup or temporary file sits beside them) raw copies
    are written into a ``decompressed/`` subfolder when the folder is writable, or into a cache
    folder keyed by the files' identity. Copies are written atomically, so an interrupted run
    never leaves a partial raw file that a later run would trust.

    Raises:
        DataError: a file is missing or malformed (the message names it and the fault).
    """
    folder = Path(data_dir) / split
    found = find_split(folder, split)
    if found is None:
        from trainer.download import ensure_mnist

        ensure_mnist(data_dir, allow_download=False)  # raises the message listing the files
        raise AssertionError("unreachable: ensure_mnist found the files missing")
    images, labels = found
    count = validate_split(images, labels)
    names = SPLIT_FILES[split]
    if not any(p.suffix == ".gz" for p in found) and _only_raw_files(folder, names):
        return SplitInfo(folder, count)
    # The mode bits count too: root passes os.access even for a read-only (r-x) folder.
    writable = os.access(folder, os.W_OK) and bool(folder.stat().st_mode & 0o222)
    target = folder / DECOMPRESSED if writable else _cache_folder(found)
    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        where = "" if writable else (" (the data folder is read-only; set MSTRAIN_CACHE to a "
                                     "folder you may write to)")
        raise DataError(f"Cannot create the folder {target} for raw copies of the IDX files in "
                        f"{folder}{where}: {exc.strerror or exc}.") from None
    for path, name in zip(found, names):
        raw = target / name
        if not _fresh(raw, path):
            write_idx(raw, read_idx(path))
    return SplitInfo(target, count)


def _only_raw_files(folder: Path, names: tuple[str, ...]) -> bool:
    """Whether the raw files are the only entries whose names contain theirs."""
    return all(entry.name in names for entry in folder.iterdir()
               if any(name in entry.name for name in names))


def _cache_folder(files: tuple[Path, Path]) -> Path:
    key = hashlib.sha1()
    for path in files:
        stat = path.stat()
        key.update(f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode())
    return cache_root() / "idx" / key.hexdigest()[:16]


def _fresh(raw: Path, gz: Path) -> bool:
    """Whether a decompressed copy exists and is newer than its source."""
    return raw.is_file() and raw.stat().st_mtime >= gz.stat().st_mtime


def check_batch_size(batch_size: int, train_count: int, shards: int = 1) -> None:
    """Refuses a batch size that leaves no full training batch."""
    per_shard = train_count // shards
    if batch_size > per_shard:
        where = f" per worker ({train_count} split across {shards})" if shards > 1 else ""
        raise ConfigError(
            f"Option 'batch_size' is {batch_size}, larger than the {per_shard} training "
            f"samples{where}; training drops the last incomplete batch, so no step would run. "
            f"Use --batch-size {max(1, per_shard // 4)} or less, or more training data.")


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


# Bumped whenever what the cache holds changes, so old caches are never read as new ones.
CACHE_VERSION = 1
_CACHE_FILE = "data.mindrecord"
_CACHE_META = "meta.json"


def cached_split(folder: Path, split: str, *, image_size: int, num_workers: int = 2) -> Path:
    """Returns a MindRecord file holding the split decoded, resized and normalised once.

    The digits go through MindSpore's own reader and the same operations as the streaming
    pipeline (:func:`image_transforms`), so the cached tensors are bit for bit what it would
    produce; afterwards every epoch only reads finished ``float32 [1, S, S]`` tensors, which frees
    the CPU that per-sample decoding and resizing took from training. The file lives under
    :func:`cache_root`, keyed by the IDX files' path, size and modification time, the image size
    and :data:`CACHE_VERSION`. It is built in a temporary folder and renamed into place when
    complete, so an interrupted build is never mistaken for a cache (and two processes building it
    at once, such as msrun's workers, both end up with the same complete folder).

    Args:
        folder: Folder with the split's raw IDX files (see :func:`prepare_split`).
        split: ``"train"`` or ``"test"``.
        image_size: Side the network expects.
        num_workers: Parallel workers for the one-off decoding. Defaults to `2`.

    Returns:
        The path of the ``.mindrecord`` file (its ``.db`` index lies beside it).

    Raises:
        DataError: the cache folder cannot be written.
    """
    import json
    import shutil
    import tempfile

    files = [Path(folder) / name for name in SPLIT_FILES[split]]
    key = hashlib.sha1(f"v{CACHE_VERSION}|{image_size}|{MNIST_MEAN}|{MNIST_STD}".encode())
    for path in files:
        stat = path.stat()
        key.update(f"|{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode())
    target = cache_root() / "mindrecord" / f"{split}-{image_size}-{key.hexdigest()[:16]}"
    if _complete(target):
        return target / _CACHE_FILE
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp",
                                        dir=target.parent))
        staging.chmod(default_mode(directory=True))  # mkdtemp makes it private
    except OSError as exc:
        raise DataError(f"Cannot write the decoded-data cache in {target.parent}: "
                        f"{exc.strerror or exc}. Set MSTRAIN_CACHE to a folder you may write to, "
                        "or leave out --data-cache to decode the IDX files on every "
                        "epoch.") from None
    logging.getLogger("mstrain").info(
        "Decoding the %s split once into %s (later runs read it from there).", split, target)
    try:
        count = _write_mindrecord(folder, split, staging / _CACHE_FILE, image_size, num_workers)
        meta = {"version": CACHE_VERSION, "split": split, "image_size": image_size,
                "count": count, "source": [str(p.resolve()) for p in files]}
        (staging / _CACHE_META).write_text(json.dumps(meta, indent=1) + "\n")
        if target.exists():  # an incomplete leftover (complete ones returned above)
            shutil.rmtree(target, ignore_errors=True)
        try:
            os.rename(staging, target)
        except OSError:
            if not _complete(target):  # not a concurrent build that finished first
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target / _CACHE_FILE


def _complete(target: Path) -> bool:
    return all((target / name).is_file()
               for name in (_CACHE_FILE, _CACHE_FILE + ".db", _CACHE_META))


def _write_mindrecord(folder: Path, split: str, path: Path, image_size: int,
                      num_workers: int) -> int:
    """Decodes a split with MindSpore's reader and writes it as one MindRecord file."""
    import mindspore.dataset as ds
    from mindspore.mindrecord import FileWriter

    source = ds.MnistDataset(str(folder), usage=split, shuffle=False,
                             num_parallel_workers=num_workers)
    source = source.map(image_transforms(image_size), "image", num_parallel_workers=num_workers)
    source = source.batch(2048)
    writer = FileWriter(str(path), shard_num=1, overwrite=True)
    writer.add_schema({"image": {"type": "float32", "shape": [1, image_size, image_size]},
                       "label": {"type": "int32"}}, "mnist")
    count = 0
    for images, labels in source.create_tuple_iterator(output_numpy=True, num_epochs=1):
        writer.write_raw_data([{"image": image, "label": int(label)}
                               for image, label in zip(images, labels)])
        count += len(labels)
    writer.commit()
    return count


def build_dataset(folder: Path, split: str, *, image_size: int, batch_size: int, training: bool,
                  num_workers: int = 2, num_shards: int | None = None, shard_id: int | None = None,
                  cache: bool = False):
    """Builds the batched MindSpore pipeline for one split.

    Args:
        folder: Folder with the split's raw IDX files (see :func:`prepare_split`).
        split: ``"train"`` or ``"test"``.
        image_size: Side the network expects; 28 keeps MNIST's size, anything else resizes
            bilinearly.
        batch_size: Samples per batch.
        training: Shuffle and drop the last incomplete batch.
        num_workers: Parallel workers for reading and mapping. Defaults to `2`.
        num_shards: Number of data-parallel workers, or None. Defaults to `None`.
        shard_id: This worker's rank, or None. Defaults to `None`.
        cache: Read the split decoded once (see :func:`cached_split`) instead of decoding and
            resizing every sample on every epoch. Defaults to `False`.

    Returns:
        A ``mindspore.dataset.Dataset`` yielding ``(image float32 [N,1,S,S], label int32 [N])``.
    """
    import mindspore as ms
    import mindspore.dataset as ds
    from mindspore.dataset import transforms

    if cache:
        path = cached_split(folder, split, image_size=image_size, num_workers=num_workers)
        dataset = ds.MindDataset(str(path), columns_list=["image", "label"], shuffle=training,
                                 num_parallel_workers=num_workers, num_shards=num_shards,
                                 shard_id=shard_id)
        return dataset.batch(batch_size, drop_remainder=training)
    dataset = ds.MnistDataset(str(folder), usage=split, shuffle=training,
                              num_parallel_workers=num_workers, num_shards=num_shards,
                              shard_id=shard_id)
    dataset = dataset.map(image_transforms(image_size), "image", num_parallel_workers=num_workers)
    dataset = dataset.map(transforms.TypeCast(ms.int32), "label", num_parallel_workers=num_workers)
    return dataset.batch(batch_size, drop_remainder=training)
