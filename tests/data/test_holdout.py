"""The validation split: held out of the training files, stratified, stable, disjoint."""

from __future__ import annotations

import numpy as np
import pytest

from trainer.data.holdout import choose_holdout, holdout_count, split_training_files
from trainer.data.idx import SPLIT_FILES, read_idx
from trainer.errors import ConfigError


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MSTRAIN_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


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


def test_the_split_files_hold_exactly_the_digits_of_the_training_files(cache, digits_dir):
    folder = digits_dir / "train"
    images = read_idx(folder / SPLIT_FILES["train"][0])
    labels = read_idx(folder / SPLIT_FILES["train"][1])
    train_dir, val_dir, train_count, val_count = split_training_files(folder, 0.1)
    assert (train_count, val_count) == (1440, 160)
    kept_images = read_idx(train_dir / SPLIT_FILES["train"][0])
    held_images = read_idx(val_dir / SPLIT_FILES["test"][0])  # under the test split's names
    held_labels = read_idx(val_dir / SPLIT_FILES["test"][1])
    # Disjoint and complete: every training digit is in exactly one of the two.
    rows = {row.tobytes(): i for i, row in enumerate(images.reshape(len(images), -1))}
    held_rows = [rows[r.tobytes()] for r in held_images.reshape(val_count, -1)]
    kept_rows = [rows[r.tobytes()] for r in kept_images.reshape(train_count, -1)]
    assert sorted(held_rows + kept_rows) == list(range(len(images)))
    assert np.array_equal(held_labels, labels[held_rows])
    assert np.array_equal(np.bincount(held_labels, minlength=10), np.full(10, 16))
    # Stable: the same call again reuses the same files.
    assert split_training_files(folder, 0.1) == (train_dir, val_dir, 1440, 160)


def test_another_split_is_another_folder(cache, digits_dir):
    first = split_training_files(digits_dir / "train", 0.1)
    second = split_training_files(digits_dir / "train", 400)
    assert first[0] != second[0] and second[2:] == (1200, 400)
