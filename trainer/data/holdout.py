"""The validation split: images held out of the training split by a fixed, class-stratified
choice of rows, so that the decoded cache, msrun's shards and exact resume treat it like any
split, for every data source.

MNIST's own convention (and the hand-built tutorial's) holds 5,000 of the 60,000 training
digits out for validation; choosing them per class keeps each digit's share. The choice depends
only on the training files and ``--val-split``, never on ``--seed``, so every run on the same files
validates on the same digits and runs of different seeds compare fairly.
"""

from __future__ import annotations

import logging

import numpy as np

from trainer.errors import ConfigError

logger = logging.getLogger("mstrain")

# The choice's own seed: fixed, so the split is the same for every run on the same files.
HOLDOUT_SEED = 20_000_101


def holdout_count(val_split: float, total: int) -> int:
    """How many images ``--val-split`` holds out of ``total``: a fraction below 1 of them
    (rounded), or a count.

    Raises:
        ConfigError: the split would hold out no digit, or every one.
    """
    count = int(round(val_split * total)) if val_split < 1 else int(val_split)
    if not 0 < count < total:
        raise ConfigError(f"Option 'val_split' is {val_split!r}, which holds out {count} of the "
                          f"{total} training images; it must leave some for validation and some "
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


def holdout_rows(labels: np.ndarray, val_split: float) -> tuple[np.ndarray, np.ndarray]:
    """The rows ``--val-split`` holds out of a training split, and the rows left for training,
    both in increasing order (indices into the source's arrays; nothing is written).

    Raises:
        ConfigError: the split would hold out no image or every one.
    """
    count = holdout_count(val_split, len(labels))
    held = choose_holdout(labels, count)
    keep = np.setdiff1d(np.arange(len(labels)), held, assume_unique=True)
    logger.info("Held %d of the %d training images out for validation (--val-split).",
                len(held), len(labels))
    return held, keep
