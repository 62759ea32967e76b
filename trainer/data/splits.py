"""IDX files presented to MindSpore's reader as a folder of raw files, and the batch size's
check against a training split.

Files are validated with :mod:`trainer.data.idx` so a bad file gets a plain message instead of the
pipeline's traceback, and decompressed when they are gzipped (MindSpore's reader only takes raw
IDX) into an entry of the cache, never into the user's data folder.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

from trainer.data.entries import Damaged, cached_entry
from trainer.data.idx import (
    IMAGE_SIZE,
    NUM_CLASSES,
    SPLIT_FILES,
    find_split,
    read_idx,
    read_idx_header,
    validate_split,
    write_idx,
)
from trainer.errors import ConfigError, DataError, os_fault
from trainer.fileio import cache_root

logger = logging.getLogger("mstrain")  # what the user sees (trainer.logs.setup_logging)


# The cache's kind for raw copies of IDX files, and its version (bumped when the entry changes).
KIND = "idx"
_VERSION = 1


@dataclass
class SplitInfo:
    """A split ready for MindSpore's reader: a folder of raw IDX files and its size."""

    folder: Path
    count: int


def prepare_split(data_dir: Path, split: str, num_classes: int = NUM_CLASSES) -> SplitInfo:
    """Validates one split and returns a folder holding it as raw IDX files.

    MindSpore's reader takes every file of the folder whose name *contains* an expected name, so
    it is only given a folder where the two raw files are the only such entries. Otherwise (the
    files are gzipped, or a ``.gz`` twin, backup or temporary file sits beside them) it is given
    raw copies in an entry of the cache keyed by the files' identity (see
    :func:`raw_copies`); nothing is written into the data folder.

    Raises:
        DataError: a file is missing or malformed (the message names it and the fault), or the
            copies cannot be written.
    """
    folder = Path(data_dir) / split
    found = find_split(folder, split)
    if found is None:
        from trainer.data.download import ensure_mnist

        ensure_mnist(data_dir, allow_download=False)  # raises the message listing the files
        raise AssertionError("unreachable: ensure_mnist found the files missing")
    images, labels = found
    count = validate_split(images, labels, num_classes=num_classes)
    names = SPLIT_FILES[split]
    if not any(p.suffix == ".gz" for p in found) and _only_raw_files(folder, names):
        return SplitInfo(folder, count)
    return SplitInfo(raw_copies(found, split, count, num_classes), count)


def raw_copies(found: tuple[Path, Path], split: str, count: int,
               num_classes: int = NUM_CLASSES) -> Path:
    """A folder named ``split`` holding raw copies of a split's validated files (raw or
    gzipped), in an entry of the cache (checked against its manifest once per run, rebuilt when
    damaged).

    Raises:
        DataError: the cache cannot be written.
    """
    key = hashlib.sha1(f"v{_VERSION}|{split}".encode())
    for path in found:
        stat = path.stat()
        key.update(f"|{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode())
    folder = found[0].parent

    def fill(staging: Path) -> dict:
        (staging / split).mkdir()
        for path, name in zip(found, SPLIT_FILES[split]):
            write_idx(staging / split / name, read_idx(path))
        origin = str(folder.resolve())
        return {"split": split, "count": count, "source": [str(p.resolve()) for p in found],
                "origin": origin,
                "about": f"raw copy of the {count:,} digits in {origin}"}

    def check(target: Path, meta: dict) -> None:
        check_split_folder(target / split, split, count, num_classes)

    try:
        return cached_entry(KIND, key.hexdigest()[:16], fill, check) / split
    except OSError as exc:
        raise DataError(f"Cannot write raw copies of the IDX files in {folder} into the cache "
                        f"folder {cache_root() / KIND}: {os_fault(exc)}. Set MSTRAIN_CACHE to a "
                        "folder you may write to, or decompress the files in "
                        f"{folder} yourself (gunzip).") from None


def check_split_folder(folder: Path, split: str, count: int,
                       num_classes: int = NUM_CLASSES) -> None:
    """The values of a split in the cache: ``count`` 28x28 images and as many labels, each a
    class.

    Raises:
        Damaged: a file is unreadable, of another shape, or a label is out of range.
    """
    images, labels = (folder / name for name in SPLIT_FILES[split])
    try:
        dims = read_idx_header(images)
        values = read_idx(labels)
    except DataError as exc:
        raise Damaged(str(exc).split(". ")[0]) from None
    if dims != (count, IMAGE_SIZE, IMAGE_SIZE):
        raise Damaged(f"{images.name} holds {' x '.join(map(str, dims))} values, not "
                      f"{count} x {IMAGE_SIZE} x {IMAGE_SIZE}")
    if values.shape != (count,):
        raise Damaged(f"{labels.name} holds {values.size} labels, not {count}")
    if count and int(values.max()) >= num_classes:
        raise Damaged(f"{labels.name} holds labels outside 0-{num_classes - 1}")


def _only_raw_files(folder: Path, names: tuple[str, ...]) -> bool:
    """Whether the raw files are the only entries whose names contain theirs."""
    return all(entry.name in names for entry in folder.iterdir()
               if any(name in entry.name for name in names))


def check_batch_size(batch_size: int, train_count: int, shards: int = 1) -> None:
    """Refuses a batch size that leaves no full training batch."""
    per_shard = train_count // shards
    if batch_size > per_shard:
        where = f" per worker ({train_count} split across {shards})" if shards > 1 else ""
        raise ConfigError(
            f"Option 'batch_size' is {batch_size}, larger than the {per_shard} training "
            f"samples{where}; training drops the last incomplete batch, so no step would run. "
            f"Use --batch-size {max(1, per_shard // 4)} or less, or more training data.")
