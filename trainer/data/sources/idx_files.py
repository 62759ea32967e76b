"""The base of the sources stored as MNIST's four IDX files (``train/`` and ``test/``): MNIST,
Fashion-MNIST, KMNIST and generated digits.

Every file is checked before MindSpore reads it (:mod:`trainer.data.idx`); the images are
decoded by MindSpore's ``MnistDataset`` (from raw copies in the cache when the files are
gzipped), and ``--no-data-cache`` streams every epoch through that reader.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np

from trainer.data.idx import find_split, read_idx, read_idx_header, validate_split
from trainer.data.sources.base import DIGITS, Normalisation, Source, SourceInfo
from trainer.errors import DataError

# Bumped when what a key describes changes, so decoded arrays of an older reader are not reused.
_KEY_VERSION = 1


def decode_idx_folder(folder: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """A folder of one split's raw IDX files decoded by MindSpore's ``MnistDataset``:
    ``(uint8 [N, 1, H, W], int32 [N])``."""
    import mindspore.dataset as ds
    from mindspore.dataset import vision

    reader = ds.MnistDataset(str(folder), usage=split, shuffle=False, num_parallel_workers=2)
    reader = reader.map([vision.HWC2CHW()], "image", num_parallel_workers=2)
    batches = list(reader.batch(4096).create_tuple_iterator(output_numpy=True, num_epochs=1))
    images = np.ascontiguousarray(np.concatenate([b[0] for b in batches]))
    if images.dtype != np.uint8:  # the reader's images are uint8
        raise TypeError(f"decoded images are {images.dtype}, not uint8")
    labels = np.concatenate([b[1] for b in batches]).astype(np.int32)
    return images, labels


class IdxSource(Source):
    """A data set of four IDX files of 28x28 grayscale images in ``data_dir/train`` and
    ``data_dir/test`` (raw or gzipped).

    Subclasses set :attr:`title`, :attr:`class_names` and :attr:`normalisation`, and implement
    :meth:`fetch` (download or generate the files when they are missing).

    Args:
        data_dir: The folder holding ``train/`` and ``test/``.
        download: Whether missing files may be fetched. Defaults to `True`.
        progress: Whether a download shows a progress bar. Defaults to `True`.
    """

    title = "IDX files"
    kind = DIGITS
    class_names: tuple[str, ...] = tuple(str(d) for d in range(10))
    normalisation: Normalisation | None = None
    streams = True

    def __init__(self, data_dir: Path, download: bool = True, progress: bool = True) -> None:
        self.data_dir = Path(data_dir).expanduser()
        self.download, self.progress = download, progress
        self._found: dict[str, tuple[Path, Path]] = {}
        self._raw: dict[str, Any] = {}
        self.origin = str(self.data_dir.resolve())

    def fetch(self, allow: bool) -> None:
        """Makes sure the four files are in :attr:`data_dir` (downloads or generates them when
        ``allow``).

        Raises:
            DataError: files are missing and cannot be fetched (the message lists them).
        """
        raise NotImplementedError

    def prepare(self, *, fetch: bool = True) -> SourceInfo:
        self.fetch(fetch and self.download)
        counts = {}
        for split in ("train", "test"):
            found = find_split(self.data_dir / split, split)
            if found is None:
                self.fetch(False)  # raises the message listing the missing files
                raise DataError(f"The {split} files of {self.data_dir} are missing.")
            counts[split] = validate_split(*found, num_classes=len(self.class_names))
            self._found[split] = found
        side = read_idx_header(self._found["train"][0])[1]
        return SourceInfo(channels=1, image_size=side, class_names=self.class_names,
                          counts=counts, normalisation=self.normalisation, kind=self.kind,
                          about=f"{self.title} in {self.data_dir}")

    def files(self, split: str) -> tuple[Path, Path]:
        """The split's images and labels files, as :meth:`prepare` found them."""
        if split not in self._found:
            self.prepare(fetch=False)
        return self._found[split]

    def folder(self, split: str):
        """The split as a folder of raw IDX files MindSpore's reader takes (see
        :func:`trainer.data.splits.prepare_split`)."""
        from trainer.data.splits import prepare_split

        if split not in self._raw:
            self._raw[split] = prepare_split(self.data_dir, split,
                                             num_classes=len(self.class_names))
        return self._raw[split]

    def labels(self, split: str) -> np.ndarray:
        return read_idx(self.files(split)[1]).astype(np.int32)

    def key(self, split: str) -> str:
        digest = hashlib.sha1(f"idx{_KEY_VERSION}|{split}".encode())
        for path in self.files(split):
            stat = path.stat()
            digest.update(f"|{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode())
        return digest.hexdigest()

    def load(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        """The split decoded by MindSpore's ``MnistDataset``, as uint8 ``[N, 1, 28, 28]``."""
        return decode_idx_folder(self.folder(split).folder, split)

    def stream(self, split: str, **options: Any):
        """The split through ``MnistDataset`` with the tutorial's per-image operations, decoded
        on every epoch (``--no-data-cache``); see :func:`trainer.data.pipeline.build_dataset`."""
        from trainer.data.pipeline import build_dataset

        return build_dataset(self.folder(split).folder, split, **options)
