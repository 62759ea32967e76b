"""The validation split: rows held out of the training split, stratified, stable, disjoint."""

from __future__ import annotations

import numpy as np
import pytest

from trainer.data.holdout import choose_holdout, holdout_count, holdout_rows
from trainer.data.idx import SPLIT_FILES, read_idx
from trainer.errors import ConfigError


def test_the_choice_is_stratified_and_exact():
    labels = np.repeat(np.arange(10), [100, 200, 50, 150, 100, 100, 120, 80, 60, 40])
    held = choose_holdout(labels, 100)
    assert len(held) == 100 == len(set(held.tolist()))
    counts = np.bincount(labels[held], minlength=10)
    shares = np.bincount(labels, minlength=10) * 100 / len(labels)
    assert np.all(np.abs(counts - shares) < 1)  # each class gives its share, rounded


def test_the_choice_is_the_same_every_time_and_not_the_first_digits():
    labels = np.tile(np.arange(10), 50)
    first, again = choose_holdout(labels, 50), choose_holdout(labels, 50)
    assert np.array_equal(first, again)
    assert not np.array_equal(first, np.arange(50))


@pytest.mark.parametrize("split, total, count", [(0.1, 1600, 160), (0.25, 10, 2),
                                                 (5000, 60000, 5000), (0.0004, 10000, 4)])
def test_a_fraction_or_a_count(split, total, count):
    assert holdout_count(split, total) == count


@pytest.mark.parametrize("split", [0.0001, 1600, 2000])
def test_a_split_taking_no_digit_or_all_is_refused(split):
    with pytest.raises(ConfigError, match="val_split"):
        holdout_count(split, 1600)


def test_the_rows_cover_the_training_split_once_and_are_stable(digits_dir):
    labels = read_idx(digits_dir / "train" / SPLIT_FILES["train"][1])
    held, keep = holdout_rows(labels, 0.1)
    assert (len(keep), len(held)) == (1440, 160)
    # Disjoint and complete, in increasing order: every training image is in exactly one.
    assert sorted([*held.tolist(), *keep.tolist()]) == list(range(len(labels)))
    assert list(held) == sorted(held) and list(keep) == sorted(keep)
    assert np.array_equal(np.bincount(labels[held], minlength=10), np.full(10, 16))
    again = holdout_rows(labels, 0.1)
    assert np.array_equal(again[0], held) and np.array_equal(again[1], keep)
    other = holdout_rows(labels, 400)
    assert (len(other[0]), len(other[1])) == (400, 1200)
