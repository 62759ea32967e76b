"""Where a run's digits come from: the four IDX files located (downloaded or generated when
missing), validated, and presented to MindSpore's reader as a folder of raw files.

Files are validated with :mod:`trainer.data.idx` so a bad file gets a plain message instead of the
pipeline's traceback, and decompressed when they are gzipped (MindSpore's reader only takes raw
IDX).
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from trainer.config import TrainConfig
from trainer.data.idx import (
    SPLIT_FILES,
    find_split,
    missing_files,
    read_idx,
    validate_split,
    write_idx,
)
from trainer.errors import ConfigError, DataError
from trainer.fileio import cache_root, remove_stale_staging

logger = logging.getLogger("mstrain")  # what the user sees (trainer.logs.setup_logging)


# Subfolder of a split's folder that holds raw copies of gzipped files.
DECOMPRESSED = "decompressed"


@dataclass
class SplitInfo:
    """A split ready for MindSpore's reader: a folder of raw IDX files and its size."""

    folder: Path
    count: int


def ensure_data(cfg: TrainConfig, progress: bool = True) -> Path:
    """Makes sure the four IDX files of ``cfg``'s data source exist and returns their folder.

    MNIST is downloaded into the data folder when files are missing (unless ``download`` is off);
    generated digits are written there on first use.

    Raises:
        DataError: the files are missing and cannot be fetched or generated.
    """
    data_dir = cfg.resolved_data_dir()
    if cfg.data_source == "synthetic":
        if missing_files(data_dir):
            from trainer.data.synthetic import generate_digits

            logger.info("Generating %d + %d synthetic digits in %s", cfg.synthetic_train_size,
                        cfg.synthetic_test_size, data_dir)
            generate_digits(data_dir, cfg.synthetic_train_size, cfg.synthetic_test_size,
                            seed=cfg.seed)
        return data_dir
    from trainer.data.download import ensure_mnist

    return ensure_mnist(data_dir, allow_download=cfg.download, progress=progress)


def prepare_split(data_dir: Path, split: str) -> SplitInfo:
    """Validates one split and returns a folder holding it as raw IDX files.

    MindSpore's reader takes every file of the folder whose name *contains* an expected name, so
    it is only given a folder where the two raw files are the only such entries. Otherwise (the
    files are gzipped, or a ``.gz`` twin, backup or temporary file sits beside them) raw copies
    are written into a ``decompressed/`` subfolder when the folder is writable, or into a cache
    folder keyed by the files' identity. Copies are written atomically, so an interrupted run
    never leaves a partial raw file that a later run would trust.

    Raises:
        DataError: a file is missing or malformed (the message names it and the fault).
    """
    folder = Path(data_dir) / split
    found = find_split(folder, split)
    if found is None:
        from trainer.data.download import ensure_mnist

        ensure_mnist(data_dir, allow_download=False)  # raises the message listing the files
        raise AssertionError("unreachable: ensure_mnist found the files missing")
    images, labels = found
    count = validate_split(images, labels)
    names = SPLIT_FILES[split]
    if not any(p.suffix == ".gz" for p in found) and _only_raw_files(folder, names):
        return SplitInfo(folder, count)
    # The mode bits count too: root passes os.access even for a read-only (r-x) folder.
    writable = os.access(folder, os.W_OK) and bool(folder.stat().st_mode & 0o222)
    target = folder / DECOMPRESSED if writable else _cache_folder(found)
    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        where = "" if writable else (" (the data folder is read-only; set MSTRAIN_CACHE to a "
                                     "folder you may write to)")
        raise DataError(f"Cannot create the folder {target} for raw copies of the IDX files in "
                        f"{folder}{where}: {exc.strerror or exc}.") from None
    remove_stale_staging(target, lock_name=".building")
    for path, name in zip(found, names):
        raw = target / name
        if not _fresh(raw, path):
            write_idx(raw, read_idx(path))
    return SplitInfo(target, count)


def _only_raw_files(folder: Path, names: tuple[str, ...]) -> bool:
    """Whether the raw files are the only entries whose names contain theirs."""
    return all(entry.name in names for entry in folder.iterdir()
               if any(name in entry.name for name in names))


def _cache_folder(files: tuple[Path, Path]) -> Path:
    key = hashlib.sha1()
    for path in files:
        stat = path.stat()
        key.update(f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode())
    return cache_root() / "idx" / key.hexdigest()[:16]


def _fresh(raw: Path, gz: Path) -> bool:
    """Whether a decompressed copy exists and is newer than its source."""
    return raw.is_file() and raw.stat().st_mtime >= gz.stat().st_mtime


def check_batch_size(batch_size: int, train_count: int, shards: int = 1) -> None:
    """Refuses a batch size that leaves no full training batch."""
    per_shard = train_count // shards
    if batch_size > per_shard:
        where = f" per worker ({train_count} split across {shards})" if shards > 1 else ""
        raise ConfigError(
            f"Option 'batch_size' is {batch_size}, larger than the {per_shard} training "
            f"samples{where}; training drops the last incomplete batch, so no step would run. "
            f"Use --batch-size {max(1, per_shard // 4)} or less, or more training data.")
