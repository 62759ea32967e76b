"""The data flow's first stage: IDX files found, fetched or generated, validated, decoded once,
and fed to MindSpore as batches."""

from trainer.data.cache import decoded_split
from trainer.data.feed import BatchFeed, feed_dataset, launch_dataset, resume_at
from trainer.data.pipeline import (
    RunData,
    build_dataset,
    build_run_data,
    dataset_builder,
    locate_splits,
)
from trainer.data.splits import (
    SplitInfo,
    check_batch_size,
    ensure_data,
    prepare_split,
)
from trainer.data.transforms import MNIST_MEAN, MNIST_STD, image_transforms
from trainer.fileio import cache_root

__all__ = ["MNIST_MEAN", "MNIST_STD", "BatchFeed", "RunData", "SplitInfo",
           "build_dataset", "build_run_data", "locate_splits",
           "cache_root", "check_batch_size", "dataset_builder", "decoded_split", "ensure_data",
           "feed_dataset", "image_transforms", "launch_dataset", "prepare_split", "resume_at"]
