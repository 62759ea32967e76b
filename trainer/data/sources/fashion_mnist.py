"""Fashion-MNIST (Zalando Research): 70,000 28x28 grayscale photos of clothing in ten classes,
as MNIST's four IDX files in ``--data-dir`` (default ``data/fashion-mnist``), downloaded from
its publisher and MD5-checked when missing, decoded by MindSpore's ``MnistDataset``."""

from __future__ import annotations

from types import MappingProxyType

from trainer.data.download import IdxDataset, Source, ensure_idx
from trainer.data.sources.base import NATURAL
from trainer.data.sources.idx_files import IdxSource
from trainer.registry import register_source

HOMEPAGE = "https://github.com/zalandoresearch/fashion-mnist"
URLS = ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/")
# The MD5 sums Zalando publishes for the gzipped files.
GZ_MD5 = MappingProxyType({
    "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
    "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
    "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
    "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
})
FASHION_MNIST = IdxDataset(
    "Fashion-MNIST", tuple(Source("files", url, md5=GZ_MD5) for url in URLS),
    f"Get them (file name + .gz) from {URLS[0]}, or see {HOMEPAGE}.")
CLASS_NAMES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
               "Sneaker", "Bag", "Ankle boot")


@register_source("fashion-mnist", rank=1, default_dir="data/fashion-mnist",
                 help="Zalando's Fashion-MNIST IDX files, downloaded when missing")
class FashionMnist(IdxSource):
    """Fashion-MNIST's 60,000 training and 10,000 test images (or any files in its layout).

    They are photos, not glyphs: ``--augment`` crops and flips them, and predict.py resizes
    pictures rather than fitting them to MNIST's digit convention. The normalisation is computed
    once from the training images.
    """

    name = "fashion-mnist"
    title = "Fashion-MNIST"
    kind = NATURAL
    class_names = CLASS_NAMES
    dataset = FASHION_MNIST

    def fetch(self, allow: bool) -> None:
        ensure_idx(self.dataset, self.data_dir, allow_download=allow, progress=self.progress)
