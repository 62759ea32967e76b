"""The batched MindSpore datasets of a run, from any data source: the cached feed (the source's
arrays decoded once, batches cut from them), or the source's own reader streaming every epoch
(``--no-data-cache``, and sources such as mindvision's that always read on their own)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from trainer.data.cache import decode_split
from trainer.data.feed import BatchFeed, feed_dataset
from trainer.data.idx import NUM_CLASSES
from trainer.data.sources import Normalisation, Source, SourceInfo, make_source
from trainer.data.splits import check_batch_size
from trainer.data.transforms import MNIST, image_transforms, value_table
from trainer.errors import ConfigError, DataError

logger = logging.getLogger("mstrain")


def build_dataset(folder: Path, split: str, *, image_size: int, batch_size: int, training: bool,
                  num_workers: int = 2, num_shards: int | None = None, shard_id: int | None = None,
                  cache: bool = False, seed: int = 0, augment: bool | str = False,
                  rows: np.ndarray | None = None, normalisation: Normalisation = MNIST,
                  native: int = 28):
    """Builds the batched MindSpore pipeline for one split of a folder of raw IDX files.

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
        augment: With ``cache``, augment the training batches (see
            :mod:`trainer.data.augment`). Defaults to `False`.
        rows: Only these rows of the files (a held-out split, or the rest). Defaults to `None`.
        normalisation: The per-value operations' mean and deviation. Defaults to MNIST's.
        native: The side of the files' images. Defaults to `28`.

    Returns:
        A ``mindspore.dataset.Dataset`` yielding ``(image float32 [N,1,S,S], label int32 [N])``.
    """
    import mindspore as ms
    import mindspore.dataset as ds
    from mindspore.dataset import transforms

    if cache:
        images, labels, _ = decode_split(IdxFolder(Path(folder), split), split,
                                          image_size=image_size, num_classes=NUM_CLASSES,
                                          channels=1)
        values = value_table(normalisation)
        return feed_dataset(BatchFeed(images, labels, batch_size, training=training, seed=seed,
                                      num_shards=num_shards or 1, shard_id=shard_id or 0,
                                      augment=augment, fill=values[:, 0], values=values,
                                      rows=rows))
    if rows is None:
        dataset = ds.MnistDataset(str(folder), usage=split, shuffle=training,
                                  num_parallel_workers=num_workers, num_shards=num_shards,
                                  shard_id=shard_id)
    else:
        dataset = ds.MnistDataset(str(folder), usage=split, num_parallel_workers=num_workers,
                                  sampler=_sampler(rows, training, num_shards, shard_id))
    dataset = dataset.map(image_transforms(image_size, normalisation, native), "image",
                          num_parallel_workers=num_workers)
    dataset = dataset.map(transforms.TypeCast(ms.int32), "label", num_parallel_workers=num_workers)
    return dataset.batch(batch_size, drop_remainder=training)


def _sampler(rows: np.ndarray, training: bool, shards: int | None, shard_id: int | None):
    """A sampler over ``rows``: training shuffles them every epoch (MindSpore's seed), each
    data-parallel worker its own equal share; evaluation reads them in order."""
    import mindspore.dataset as ds

    if not training:
        return ds.SubsetSampler([int(r) for r in rows])
    shards, shard_id = shards or 1, shard_id or 0
    share = [int(r) for r in rows[shard_id::shards][:len(rows) // shards]]
    return ds.SubsetRandomSampler(share)


class IdxFolder(Source):
    """One split's raw IDX files in a folder, as a source (for :func:`build_dataset`)."""

    name = "idx-folder"

    def __init__(self, folder: Path, split: str) -> None:
        self.folder, self.split = folder, split
        self.origin = str(folder.resolve())

    def key(self, split: str) -> str:
        from trainer.data.idx import SPLIT_FILES

        parts = [self.split]
        for name in SPLIT_FILES[self.split]:
            stat = (self.folder / name).stat()
            parts.append(f"{(self.folder / name).resolve()}|{stat.st_size}|{stat.st_mtime_ns}")
        return "|".join(parts)

    def load(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        from trainer.data.sources.idx_files import decode_idx_folder

        return decode_idx_folder(self.folder, self.split)


@dataclass
class PreparedData:
    """A run's data located and checked, before anything is decoded.

    Attributes:
        source: The data source.
        info: What it holds.
        rows: The rows of the training split that train (``"train"``) and validate (``"val"``)
            when ``--val-split`` holds some out; absent otherwise.
        need_train: Whether the training split is used (not for evaluation alone).
    """

    source: Source
    info: SourceInfo
    rows: dict[str, np.ndarray] = field(default_factory=dict)
    need_train: bool = True

    def count(self, part: str) -> int:
        """Images of ``part``: ``train``, ``val`` or ``test``."""
        if part in self.rows:
            return len(self.rows[part])
        return self.info.counts["test" if part == "test" else "train"]


def prepare_data(cfg, *, progress: bool, need_train: bool = True,
                 source: Any = None) -> PreparedData:
    """The run's data source, its data located (downloaded or generated when missing) and
    checked, and the rows ``--val-split`` holds out of its training split. Nothing here imports
    MindSpore for the built-in sources, so data mistakes answer quickly.

    Args:
        cfg: The run's configuration.
        progress: Whether a download shows a progress bar.
        need_train: Whether the training split is used. Defaults to `True`.
        source: A source object given from Python (``Trainer(source=...)``), used instead of
            ``cfg.data_source``. Defaults to `None`.

    Raises:
        DataError: the data is missing, malformed or cannot be fetched.
        ConfigError: the validation split would take no image or every one, or ``--channels``
            asks for other images than the source gives.
    """
    from trainer.data.holdout import holdout_rows
    from trainer.data.sources import check_class_names

    made = make_source(cfg, source, progress=progress)
    info = made.prepare(fetch=True)
    where = f"Data source {made.name!r}"
    check_class_names(info.class_names, where)
    if cfg.channels and info.channels != cfg.channels:
        raise ConfigError(f"Option 'channels' is {cfg.channels}, but data source {made.name!r} "
                          f"gives {info.channels}-channel images and does not convert them. "
                          "Leave --channels at 0 to take them as they are.")
    if cfg.num_classes and cfg.num_classes < info.num_classes:
        raise ConfigError(f"Option 'num_classes' is {cfg.num_classes}, but data source "
                          f"{made.name!r} has {info.num_classes} classes; the network needs an "
                          "output per class. Leave --num-classes at 0 to take the source's count.")
    prepared = PreparedData(made, info, need_train=need_train)
    if need_train and cfg.val_split > 0:
        held, keep = holdout_rows(made.labels("train"), cfg.val_split)
        prepared.rows = {"train": keep, "val": held}
    return prepared


@dataclass
class RunData:
    """A run's datasets and their sizes.

    ``valid`` is the held-out part of the training split (``--val-split``), or the test split
    with ``--val-split 0``; ``test`` is the test split when it is not what validates, for the
    one evaluation at the end of training.
    """

    train: Any
    valid: Any
    train_count: int
    valid_count: int
    steps_per_epoch: int
    test: Any = None
    test_count: int = 0
    normalisation: Normalisation | None = None


def streams(cfg, source: Source) -> bool:
    """Whether the run reads through the source's own reader every epoch (its own pipeline,
    or ``--no-data-cache``) rather than the decoded cache.

    Raises:
        ConfigError: ``--no-data-cache`` with a source that has no streaming reader.
    """
    if source.own_pipeline:
        return True
    if cfg.data_cache:
        return False
    if not source.streams:
        raise ConfigError(f"Option 'data_cache' is off, but data source {source.name!r} has no "
                          "reader that streams every epoch; it always decodes once into the "
                          "cache. Leave out --no-data-cache.")
    return True


def build_run_data(cfg, prepared: PreparedData, image_size: int, *, shards: int = 1,
                   shard_id: int = 0, normalisation: Normalisation | None = None) -> RunData:
    """The batched datasets of a run (the training set only when ``prepared`` needs it).

    Each data-parallel worker reads its own shard of the training set; every worker validates on
    the whole validation split, so all report (and act on) the same validation metrics.

    Args:
        cfg: The run's configuration.
        prepared: The data from :func:`prepare_data`.
        image_size: Side the network expects.
        shards: Data-parallel workers. Defaults to `1`.
        shard_id: This worker's rank. Defaults to `0`.
        normalisation: The mean and deviation to normalise with (a checkpoint's). Defaults to
            `None`: the source's constants, else those of its training images.

    Raises:
        ConfigError: the batch size leaves no full training batch.
        DataError: the source's arrays are not what a source gives.
    """
    source, info = prepared.source, prepared.info
    num_classes = info.num_classes
    norm = normalisation or info.normalisation
    stream = streams(cfg, source)
    arrays: dict[str, tuple] = {}

    def decoded(split: str) -> tuple:
        if split not in arrays:
            arrays[split] = decode_split(source, split, image_size=image_size,
                                          num_classes=num_classes, channels=info.channels)
        return arrays[split]

    if norm is None:
        if not prepared.need_train:
            raise DataError(f"Data source {source.name!r} has no normalisation of its own and "
                            "the checkpoint records none; evaluate a checkpoint that a run of "
                            "this version saved.")
        facts = decoded("train")[2]
        norm = Normalisation(tuple(facts["mean"]), tuple(facts["std"]))

    common = {"image_size": image_size, "num_workers": cfg.num_workers, "seed": cfg.seed,
              "normalisation": norm}

    def make(part: str, training: bool, batch_size: int, **extra):
        split = "test" if part == "test" else "train"
        rows = prepared.rows.get(part)
        if stream:
            return source.stream(split, rows=rows, batch_size=batch_size, training=training,
                                 native=info.image_size, **common, **extra)
        images, labels, _ = decoded(split)
        values = value_table(norm)
        return feed_dataset(BatchFeed(images, labels, batch_size, training=training,
                                      seed=cfg.seed, values=values, fill=values[:, 0],
                                      rows=rows, **extra))

    def evaluation(part: str):
        return make(part, False, cfg.eval_batch_size)

    test_count = prepared.count("test")
    if not prepared.need_train:
        return RunData(None, evaluation("test"), 0, test_count, 0, normalisation=norm)
    held = "val" in prepared.rows
    valid, test_data = (evaluation("val"), evaluation("test")) if held else (evaluation("test"),
                                                                             None)
    train_count = prepared.count("train")
    check_batch_size(cfg.batch_size, train_count, shards=shards)
    extra: dict[str, Any] = {}
    if shards > 1:
        extra = {"num_shards": shards, "shard_id": shard_id}
    if cfg.augment:
        extra["augment"] = info.kind
    train = make("train", True, cfg.batch_size, **extra)
    return RunData(train, valid, train_count, prepared.count("val") if held else test_count,
                   train.get_dataset_size(), test_data, test_count if held else 0,
                   normalisation=norm)
