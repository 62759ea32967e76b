"""The validation split: digits held out of the training files by a fixed, class-stratified
choice, written once as IDX files so that every data source, the decoded cache, msrun's shards
and exact resume treat it like any split.

MNIST's own convention (and the hand-built tutorial's) holds 5,000 of the 60,000 training
digits out for validation; choosing them per class keeps each digit's share. The choice depends
only on the training files and ``--val-split``, never on ``--seed``, so every run on the same files
validates on the same digits and runs of different seeds compare fairly.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import numpy as np

from trainer.data.entries import cached_entry, origin_of
from trainer.data.idx import SPLIT_FILES, read_idx, write_idx
from trainer.errors import ConfigError, DataError, os_fault
from trainer.fileio import cache_root

logger = logging.getLogger("mstrain")

# The choice's own seed: fixed, so the split is the same for every run on the same files.
HOLDOUT_SEED = 20_000_101
_VERSION = 2  # 2: a checked entry with a manifest, the held-out digits in val/test
KIND = "holdout"
# The entry's two parts; the held-out digits' folder is named as the split they are read as.
TRAIN, VAL = "train", "val/test"


def holdout_count(val_split: float, total: int) -> int:
    """How many digits ``--val-split`` holds out of ``total``: a fraction below 1 of them
    (rounded), or a count.

    Raises:
        ConfigError: the split would hold out no digit, or every one.
    """
    count = int(round(val_split * total)) if val_split < 1 else int(val_split)
    if not 0 < count < total:
        raise ConfigError(f"Option 'val_split' is {val_split!r}, which holds out {count} of the "
                          f"{total} training digits; it must leave some for validation and some "
                          "for training. Use a fraction such as 0.1, a count below the training "
                          "set's size, or 0 to validate on the test split.")
    return count


def choose_holdout(labels: np.ndarray, count: int, seed: int = HOLDOUT_SEED) -> np.ndarray:
    """The indices of ``count`` digits, stratified by class, in increasing order.

    Each class gives its share of ``count`` (largest remainders decide the rounding, so the total
    is exact); within a class the digits are a seeded random choice.
    """
    labels = np.asarray(labels)
    classes, sizes = np.unique(labels, return_counts=True)
    quota = sizes * count / len(labels)
    taken = np.floor(quota).astype(np.int64)
    short = count - int(taken.sum())
    if short:
        taken[np.argsort(-(quota - taken), kind="stable")[:short]] += 1
    rng = np.random.default_rng(seed)
    chosen = [rng.permutation(np.flatnonzero(labels == c))[:n] for c, n in zip(classes, taken)]
    return np.sort(np.concatenate(chosen))


def split_training_files(folder: Path, val_split: float) -> tuple[Path, Path, int, int]:
    """Writes (once) the training files without the held-out digits, and the held-out digits as
    a split of their own, as an entry of the cache (:mod:`trainer.data.entries`: checked against
    its manifest once per run, rebuilt when damaged).

    Args:
        folder: The training split's folder of raw IDX files.
        val_split: ``--val-split``, above 0.

    Returns:
        ``(training folder, validation folder, training count, validation count)``. The
        validation folder is named ``test`` and holds its digits under the test split's file
        names, as readers of a test split expect.

    Raises:
        ConfigError: the split would hold out no digit or every one.
        DataError: the split files cannot be written.
    """
    from trainer.data.splits import check_split_folder

    files = [Path(folder) / name for name in SPLIT_FILES["train"]]
    key = hashlib.sha1(f"v{_VERSION}|{val_split!r}|{HOLDOUT_SEED}".encode())
    for path in files:
        stat = path.stat()
        key.update(f"|{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode())
    name = key.hexdigest()[:16]
    labels = read_idx(files[1])
    count = holdout_count(val_split, len(labels))
    parts = {TRAIN: ("train", len(labels) - count), VAL: ("test", count)}

    def check(target: Path, meta: dict) -> None:
        for part, (split, expected) in parts.items():
            check_split_folder(target / part, split, expected)

    def fill(staging: Path) -> dict:
        _write(staging, files, labels, count)
        origin = origin_of(Path(folder))
        return {"val_split": val_split, "train_count": len(labels) - count, "val_count": count,
                "source": [str(p.resolve()) for p in files], "origin": origin,
                "parts": {TRAIN: f"the training digits of --val-split {val_split}",
                          VAL: f"the digits --val-split {val_split} holds out"},
                "about": f"{count:,} of the {len(labels):,} training digits of {origin} held "
                         f"out for validation (--val-split {val_split})"}

    try:
        target = cached_entry(KIND, name, fill, check)
    except OSError as exc:
        raise DataError(f"Cannot write the validation split into {cache_root() / KIND}: "
                        f"{os_fault(exc)}. Set MSTRAIN_CACHE to a folder you may write to, or "
                        "pass --val-split 0 to validate on the test split.") from None
    return target / TRAIN, target / VAL, len(labels) - count, count


def _write(staging: Path, files: list[Path], labels: np.ndarray, count: int) -> None:
    """Writes the two parts of the split into ``staging``."""
    held = choose_holdout(labels, count)
    keep = np.setdiff1d(np.arange(len(labels)), held, assume_unique=True)
    images = read_idx(files[0])
    for part, rows, names in ((TRAIN, keep, SPLIT_FILES["train"]),
                              (VAL, held, SPLIT_FILES["test"])):
        (staging / part).mkdir(parents=True)
        write_idx(staging / part / names[0], images[rows])
        write_idx(staging / part / names[1], labels[rows])
    logger.info("Held %d of the %d training digits out for validation (--val-split).",
                len(held), len(labels))
