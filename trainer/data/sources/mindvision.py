"""mindvision's ``Mnist`` as a source, for code from MindSpore's tutorials: the same IDX files
as ``mnist`` (downloaded by the tool when missing), read and batched by mindvision's own
pipeline (see :mod:`trainer.data.mindvision`)."""

from __future__ import annotations

from typing import Any

from trainer.data.sources.mnist import Mnist
from trainer.registry import register_source


@register_source("mindvision", rank=90, default_dir="data/mnist", own_pipeline=True,
                 help="the same files, read by mindvision's Mnist (slower)")
class MindvisionMnist(Mnist):
    """MNIST through ``mindvision.classification.dataset.Mnist``: its parser, shuffle and
    transforms, every epoch (it has no decoded cache and no augmentation)."""

    name = "mindvision"
    title = "MNIST (mindvision's reader)"
    own_pipeline = True

    def stream(self, split: str, **options: Any):
        from trainer.data.mindvision import build_dataset

        options.pop("seed", None)
        options.pop("normalisation", None)
        return build_dataset(self.folder(split).folder, split, **options)
