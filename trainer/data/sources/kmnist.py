"""Kuzushiji-MNIST (ROIS-DS Center for Open Data in the Humanities): 70,000 28x28 cursive
Japanese characters in ten classes, as MNIST's four IDX files in ``--data-dir`` (default
``data/kmnist``), downloaded from its publisher and MD5-checked when missing."""

from __future__ import annotations

from types import MappingProxyType

from trainer.data.download import IdxDataset, Source, ensure_idx
from trainer.data.sources.base import DIGITS
from trainer.data.sources.idx_files import IdxSource
from trainer.registry import register_source

HOMEPAGE = "https://github.com/rois-codh/kmnist"
URLS = ("https://codh.rois.ac.jp/kmnist/dataset/kmnist/",)
# The MD5 sums of the gzipped files as the publisher's download script checks them.
GZ_MD5 = MappingProxyType({
    "train-images-idx3-ubyte.gz": "bdb82020997e1d708af4cf47b453dcf7",
    "train-labels-idx1-ubyte.gz": "e144d726b3acfaa3e44228e80efcd344",
    "t10k-images-idx3-ubyte.gz": "5c965bf0a639b31b8f53240b1b52f4d7",
    "t10k-labels-idx1-ubyte.gz": "7320c461ea6c1c855c0b718fb2a4b134",
})
KMNIST = IdxDataset(
    "KMNIST", tuple(Source("files", url, md5=GZ_MD5) for url in URLS),
    f"Get them (file name + .gz) from {URLS[0]}, or see {HOMEPAGE}.")
# One hiragana per class, as the publisher's classmap names them.
CLASS_NAMES = ("o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo")


@register_source("kmnist", rank=2, default_dir="data/kmnist",
                 help="Kuzushiji-MNIST's IDX files (cursive hiragana), downloaded when missing")
class Kmnist(IdxSource):
    """KMNIST's 60,000 training and 10,000 test characters (or any files in its layout).

    They are glyphs centred like MNIST's digits, so ``--augment`` shifts, rotates and scales
    them, and predict.py fits pictures to the same convention. The normalisation is computed
    once from the training images.
    """

    name = "kmnist"
    title = "KMNIST"
    kind = DIGITS
    class_names = CLASS_NAMES
    dataset = KMNIST

    def fetch(self, allow: bool) -> None:
        ensure_idx(self.dataset, self.data_dir, allow_download=allow, progress=self.progress)
