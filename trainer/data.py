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

import numpy as np

from trainer.config import TrainConfig
from trainer.errors import ConfigError, DataError
from trainer.fileio import default_mode
from trainer.idx import SPLIT_FILES, find_split, missing_files, read_idx, validate_split, write_idx

logger = logging.getLogger("mstrain")  # what the user sees (trainer.logs.setup_logging)

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
CACHE_VERSION = 2
_CACHE_FILES = ("images.npy", "labels.npy")
_CACHE_META = "meta.json"


def decoded_split(folder: Path, split: str, *, image_size: int, num_workers: int = 2):
    """The split decoded, resized and normalised once by MindSpore's reader, as two arrays.

    The digits go through ``MnistDataset`` and the same operations as the streaming pipeline
    (:func:`image_transforms`), so the arrays are bit for bit what it produces. They are kept
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
        ``(images float32 [N, 1, S, S], labels int32 [N])``.
    """
    import json
    import shutil
    import tempfile

    files = [Path(folder) / name for name in SPLIT_FILES[split]]
    key = hashlib.sha1(f"v{CACHE_VERSION}|{image_size}|{MNIST_MEAN}|{MNIST_STD}".encode())
    for path in files:
        stat = path.stat()
        key.update(f"|{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode())
    target = cache_root() / "decoded" / f"{split}-{image_size}-{key.hexdigest()[:16]}"
    cached = _read_cache(target)
    if cached is not None:
        return cached
    logger.info("Decoding the %s split once into %s (later runs read it from there).", split,
                target)
    images, labels = _decode(folder, split, image_size, num_workers)
    staging = None
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp",
                                        dir=target.parent))
        staging.chmod(default_mode(directory=True))  # mkdtemp makes it private
        for name, array in zip(_CACHE_FILES, (images, labels)):
            with open(staging / name, "wb") as out:
                np.save(out, array, allow_pickle=False)
                out.flush()
                os.fsync(out.fileno())
        meta = {"version": CACHE_VERSION, "split": split, "image_size": image_size,
                "count": len(labels), "source": [str(p.resolve()) for p in files]}
        (staging / _CACHE_META).write_text(json.dumps(meta, indent=1) + "\n")
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
    return images, labels


def _read_cache(target: Path):
    """The cached arrays of :func:`decoded_split`, or None when absent, incomplete or damaged."""
    import json

    try:
        meta = json.loads((target / _CACHE_META).read_text())
        images, labels = (np.load(target / name, mmap_mode="r", allow_pickle=False)
                          for name in _CACHE_FILES)
    except (OSError, ValueError):
        return None
    count = meta.get("count") if isinstance(meta, dict) else None
    if (images.dtype != np.float32 or labels.dtype != np.int32 or images.ndim != 4
            or len(images) != count or labels.shape != (count,)):
        return None
    return images, labels


def _decode(folder: Path, split: str, image_size: int, num_workers: int):
    """Decodes a split with MindSpore's reader and the streaming pipeline's operations."""
    import mindspore.dataset as ds

    source = ds.MnistDataset(str(folder), usage=split, shuffle=False,
                             num_parallel_workers=num_workers)
    source = source.map(image_transforms(image_size), "image", num_parallel_workers=num_workers)
    batches = list(source.batch(2048).create_tuple_iterator(output_numpy=True, num_epochs=1))
    images = np.concatenate([b[0] for b in batches]).astype(np.float32, copy=False)
    labels = np.concatenate([b[1] for b in batches]).astype(np.int32)
    return np.ascontiguousarray(images), labels


class BatchFeed:
    """Whole batches cut from decoded arrays: one Python call per batch, not per digit.

    ``mindspore.dataset.GeneratorDataset`` iterates it (see :func:`build_dataset`). A training
    feed shuffles with a permutation drawn from ``(seed, epoch)``, so every epoch's order is
    known in advance: a run resumes exactly at any global step (see :func:`resume_at`), and
    data-parallel workers, drawing the same permutation, each take their own slice of every
    global batch. An epoch counts as read only once it is read to the end, so a read that stops
    early (MindSpore's probe of shapes and types) never shifts the order.

    After :meth:`group`, each element holds several consecutive batches stacked on a new first
    axis (``[k, B, 1, S, S]`` and ``[k, B]``), for ``trainer.step.LaunchSteps`` to train on in
    one graph launch. The batches and their order are the same either way.

    Args:
        images: ``float32 [N, 1, S, S]``.
        labels: ``int32 [N]``.
        batch_size: Samples per batch (per worker).
        training: Shuffle every epoch and drop the last incomplete batch.
        seed: Seed of the shuffle. Defaults to `0`.
        num_shards: Number of data-parallel workers. Defaults to `1`.
        shard_id: This worker's rank. Defaults to `0`.
    """

    def __init__(self, images, labels, batch_size: int, *, training: bool, seed: int = 0,
                 num_shards: int = 1, shard_id: int = 0) -> None:
        self.images, self.labels = images, labels
        self.batch_size, self.training, self.seed = batch_size, training, seed
        self.num_shards, self.shard_id = num_shards, shard_id
        self.epoch = 0  # the epoch the next full read delivers
        if training:
            self.steps = len(labels) // (batch_size * num_shards)
        else:
            self.steps = -(-len(labels) // batch_size)
        self.groups: list[tuple[int, int]] | None = None  # in-epoch [start, stop) of each element
        self._start: tuple[int, int] | None = None  # (epoch, step): where a resumed run begins

    def __len__(self) -> int:
        return len(self.groups) if self.groups is not None else self.steps

    def group(self, steps_per_launch: int, cuts: tuple[int, ...] = ()) -> None:
        """Delivers up to ``steps_per_launch`` consecutive batches per element.

        A group never crosses the end of an epoch, nor an in-epoch step that is a multiple of
        one of ``cuts`` (where a callback acts, e.g. the loss monitor's interval), so those
        callbacks still see that exact step. Every epoch is cut the same way; ``1`` delivers
        single batches again.
        """
        if steps_per_launch <= 1:
            self.groups = None
            return
        ends = {self.steps, *(m for c in cuts if c > 0 for m in range(c, self.steps, c))}
        groups, start = [], 0
        for end in sorted(ends):
            while start < end:
                stop = min(start + steps_per_launch, end)
                groups.append((start, stop))
                start = stop
        self.groups = groups

    def start_at(self, global_step: int) -> int:
        """Makes the next read continue at ``global_step`` (a resume).

        Returns:
            How many elements MindSpore's ``set_init_step`` must skip, epochs included: the
            element holding that step is trimmed to begin exactly there.
        """
        epoch, step = divmod(global_step, self.steps)
        self.epoch = epoch
        if self.groups is None:
            self._start = None
            return global_step
        index = next(i for i, (first, stop) in enumerate(self.groups) if first <= step < stop)
        self._start = (epoch, step) if step else None
        return epoch * len(self.groups) + index

    def order(self, epoch: int) -> np.ndarray:
        """The sample order of ``epoch``: a permutation when training, else the file order."""
        if not self.training:
            return np.arange(len(self.labels))
        return np.random.default_rng((self.seed, epoch)).permutation(len(self.labels))

    def _batches(self, order: np.ndarray, first: int, stop: int) -> np.ndarray:
        """Indices of the batches ``first`` to ``stop - 1`` of this worker, ``[k, B]``."""
        size, shards = self.batch_size, self.num_shards
        rows = np.arange(first, stop) * shards + self.shard_id
        return order[(rows[:, None] * size + np.arange(size)).reshape(-1)].reshape(-1, size)

    def __iter__(self):
        epoch = self.epoch
        order = self.order(epoch)
        if self.groups is None:
            size, shards = self.batch_size, self.num_shards
            for step in range(self.steps):
                first = (step * shards + self.shard_id) * size
                index = order[first:first + size]
                yield self.images[index], self.labels[index]
        else:
            begin = self._start[1] if self._start and self._start[0] == epoch else 0
            for first, stop in self.groups:
                # Groups before a resume point are skipped by MindSpore (set_init_step); the one
                # holding it starts exactly there.
                index = self._batches(order, max(first, begin) if stop > begin else first, stop)
                yield self.images[index], self.labels[index]
        if self._start and self._start[0] == epoch:
            self._start = None
        self.epoch = epoch + 1


def build_dataset(folder: Path, split: str, *, image_size: int, batch_size: int, training: bool,
                  num_workers: int = 2, num_shards: int | None = None, shard_id: int | None = None,
                  cache: bool = False, seed: int = 0):
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
        cache: Decode the split once (see :func:`decoded_split`) and feed whole batches from the
            decoded arrays (see :class:`BatchFeed`, the dataset's ``source``), instead of
            decoding, resizing and batching every digit on every epoch. Defaults to `False`.
        seed: Seed of the cached feed's shuffle (the streaming pipeline follows
            ``mindspore.dataset.config.set_seed``). Defaults to `0`.

    Returns:
        A ``mindspore.dataset.Dataset`` yielding ``(image float32 [N,1,S,S], label int32 [N])``.
    """
    import mindspore as ms
    import mindspore.dataset as ds
    from mindspore.dataset import transforms

    if cache:
        images, labels = decoded_split(folder, split, image_size=image_size,
                                       num_workers=num_workers)
        return feed_dataset(BatchFeed(images, labels, batch_size, training=training, seed=seed,
                                      num_shards=num_shards or 1, shard_id=shard_id or 0))
    dataset = ds.MnistDataset(str(folder), usage=split, shuffle=training,
                              num_parallel_workers=num_workers, num_shards=num_shards,
                              shard_id=shard_id)
    dataset = dataset.map(image_transforms(image_size), "image", num_parallel_workers=num_workers)
    dataset = dataset.map(transforms.TypeCast(ms.int32), "label", num_parallel_workers=num_workers)
    return dataset.batch(batch_size, drop_remainder=training)


def feed_dataset(feed: BatchFeed):
    """A ``mindspore.dataset.GeneratorDataset`` over a :class:`BatchFeed` (its ``source``):
    one thread, no worker processes, since a batch is one array slice."""
    import mindspore.dataset as ds

    # Nothing else is attached to the dataset: MindSpore deep-copies a dataset's attributes
    # (all but its source) for every iterator, which would copy the arrays.
    return ds.GeneratorDataset(feed, column_names=["image", "label"], shuffle=False,
                               num_parallel_workers=1, python_multiprocessing=False)


def launch_dataset(dataset, steps_per_launch: int, cuts: tuple[int, ...] = ()):
    """The training dataset regrouped for ``steps_per_launch`` steps per element.

    ``dataset`` must come from :func:`build_dataset` with ``cache=True``; its feed is grouped
    (see :meth:`BatchFeed.group`) and a new dataset is made over it, since MindSpore reads the
    length of a dataset's source once, when the dataset is made.
    """
    feed = getattr(dataset, "source", None)
    if not isinstance(feed, BatchFeed):
        raise ValueError("several steps per launch need the cached feed (build_dataset with "
                         "cache=True)")
    feed.group(steps_per_launch, cuts)
    return feed_dataset(feed)


def resume_at(dataset, global_step: int) -> None:
    """Makes a training dataset of :func:`build_dataset` continue a run at ``global_step``.

    MindSpore's ``set_init_step`` skips the batches of the current epoch that were already
    trained on; the cached feed is told which epoch's order that is (and, when it groups batches
    for several steps per launch, trims the group that holds ``global_step``).
    """
    feed = getattr(dataset, "source", None)
    if isinstance(feed, BatchFeed):
        global_step = feed.start_at(global_step)
    dataset.set_init_step(global_step)
