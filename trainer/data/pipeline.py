"""The batched MindSpore datasets of a run: the cached feed, or ``MnistDataset`` streaming with
the tutorial's operations, or mindvision's ``Mnist``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trainer.data.cache import decoded_split
from trainer.data.feed import BatchFeed, feed_dataset
from trainer.data.splits import SplitInfo, check_batch_size, ensure_data, prepare_split
from trainer.data.transforms import image_transforms, value_table


def build_dataset(folder: Path, split: str, *, image_size: int, batch_size: int, training: bool,
                  num_workers: int = 2, num_shards: int | None = None, shard_id: int | None = None,
                  cache: bool = False, seed: int = 0, augment: bool = False):
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
        augment: With ``cache``, shift, rotate and scale the training batches at random (see
            :mod:`trainer.data.augment`). Defaults to `False`.
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
        values = value_table()
        return feed_dataset(BatchFeed(images, labels, batch_size, training=training, seed=seed,
                                      num_shards=num_shards or 1, shard_id=shard_id or 0,
                                      augment=augment, fill=float(values[0]), values=values))
    dataset = ds.MnistDataset(str(folder), usage=split, shuffle=training,
                              num_parallel_workers=num_workers, num_shards=num_shards,
                              shard_id=shard_id)
    dataset = dataset.map(image_transforms(image_size), "image", num_parallel_workers=num_workers)
    dataset = dataset.map(transforms.TypeCast(ms.int32), "label", num_parallel_workers=num_workers)
    return dataset.batch(batch_size, drop_remainder=training)


def dataset_builder(data_source: str):
    """The ``build_dataset`` of a data source: MindSpore's MnistDataset, or mindvision's Mnist.

    Both take the same arguments and yield the same batches (image float32 [N,1,S,S], label int32
    [N]) from the same folder of IDX files.
    """
    if data_source == "mindvision":
        from trainer.data.mindvision import build_dataset as mindvision_dataset

        return mindvision_dataset
    return build_dataset


@dataclass
class RunData:
    """A run's datasets and their sizes.

    ``valid`` is the held-out part of the training files (``--val-split``), or the test split
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


def locate_splits(cfg, *, progress: bool, need_train: bool = True) -> dict[str, SplitInfo]:
    """The run's splits as folders of raw, validated IDX files (downloaded or generated when
    missing): ``test``, and with ``need_train`` ``train`` and, when ``--val-split`` holds digits
    out, ``val``. Nothing here imports MindSpore, so data mistakes answer quickly.

    Raises:
        DataError: the files are missing and cannot be fetched, or are malformed.
        ConfigError: the validation split would take no digit or every one.
    """
    from trainer.data.holdout import split_training_files

    root = ensure_data(cfg, progress=progress)
    splits = {"test": prepare_split(root, "test")}
    if need_train:
        train = prepare_split(root, "train")
        if cfg.val_split > 0:
            folder, val_folder, count, val_count = split_training_files(train.folder,
                                                                        cfg.val_split)
            train = SplitInfo(folder, count)
            splits["val"] = SplitInfo(val_folder, val_count)
        splits["train"] = train
    return splits


def build_run_data(cfg, splits: dict[str, SplitInfo], image_size: int, *, shards: int = 1,
                   shard_id: int = 0) -> RunData:
    """The batched datasets of a run (the training set only when ``splits`` has one).

    Each data-parallel worker reads its own shard of the training set; every worker validates on
    the whole test split, so all report (and act on) the same validation metrics.

    Raises:
        ConfigError: the batch size leaves no full training batch.
    """
    build = dataset_builder(cfg.data_source)
    # The cached pipeline is MindSpore's reader decoding once; mindvision reads on its own.
    extra = {"cache": cfg.data_cache, "seed": cfg.seed} if cfg.data_source != "mindvision" else {}

    def evaluation(split: SplitInfo):  # the held-out digits carry the test split's file names
        return build(split.folder, "test", image_size=image_size,
                     batch_size=cfg.eval_batch_size, training=False,
                     num_workers=cfg.num_workers, **extra)

    test = splits["test"]
    if "train" not in splits:
        return RunData(None, evaluation(test), 0, test.count, 0)
    held = splits.get("val")
    valid, test_data = (evaluation(held), evaluation(test)) if held else (evaluation(test), None)
    train_split = splits["train"]
    check_batch_size(cfg.batch_size, train_split.count, shards=shards)
    if shards > 1:
        extra = {**extra, "num_shards": shards, "shard_id": shard_id}
    if cfg.augment:
        extra["augment"] = True
    train = build(train_split.folder, "train", image_size=image_size, batch_size=cfg.batch_size,
                  training=True, num_workers=cfg.num_workers, **extra)
    return RunData(train, valid, train_split.count, held.count if held else test.count,
                   train.get_dataset_size(), test_data, test.count if held else 0)
