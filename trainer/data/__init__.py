"""The data flow's first stage: a data source's images found, fetched or generated, checked,
decoded once, and fed to MindSpore as batches.

``sources/`` holds one module per data source (see :mod:`trainer.data.sources`); the rest works
on what any source gives: the held-out split (``holdout``), the decoded cache (``cache``, through
the checked entries of ``entries``), the batch feed (``feed``), augmentation (``augment``) and
the run's datasets (``pipeline``).
"""

from trainer.data.cache import decoded_split
from trainer.data.feed import BatchFeed, feed_dataset, launch_dataset, resume_at
from trainer.data.pipeline import (
    PreparedData,
    RunData,
    build_dataset,
    build_run_data,
    prepare_data,
)
from trainer.data.sources import ArraySource, Normalisation, Source, SourceInfo, make_source
from trainer.data.splits import SplitInfo, check_batch_size, prepare_split
from trainer.data.transforms import MNIST_MEAN, MNIST_STD, image_transforms
from trainer.fileio import cache_root

__all__ = ["MNIST_MEAN", "MNIST_STD", "ArraySource", "BatchFeed", "Normalisation",
           "PreparedData", "RunData", "Source", "SourceInfo", "SplitInfo", "build_dataset",
           "build_run_data", "cache_root", "check_batch_size", "decoded_split", "feed_dataset",
           "image_transforms", "launch_dataset", "make_source", "prepare_data", "prepare_split",
           "resume_at"]
