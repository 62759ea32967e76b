"""MNIST: the four IDX files in ``--data-dir`` (default ``data/mnist``), downloaded MD5-checked
when missing (:mod:`trainer.data.download`), decoded by MindSpore's ``MnistDataset``."""

from __future__ import annotations

from trainer.data.sources.base import Normalisation
from trainer.data.sources.idx_files import IdxSource
from trainer.registry import register_source

#: MNIST's mean and standard deviation, as MindSpore's tutorial normalises with them.
MNIST_MEAN = 0.1307
MNIST_STD = 0.3081


@register_source("mnist", rank=0, default_dir="data/mnist",
                 help="MNIST's IDX files, downloaded when missing, read by MnistDataset")
class Mnist(IdxSource):
    """MNIST's 60,000 training and 10,000 test digits (or any files in its layout)."""

    name = "mnist"
    title = "MNIST"
    normalisation = Normalisation((MNIST_MEAN,), (MNIST_STD,))

    def fetch(self, allow: bool) -> None:
        from trainer.data.download import ensure_mnist

        ensure_mnist(self.data_dir, allow_download=allow, progress=self.progress)
