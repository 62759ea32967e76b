"""--augment: random shifts, rotations and scaling, the same for the same (seed, epoch, step)."""

from __future__ import annotations

import numpy as np

from trainer.data import BatchFeed
from trainer.data.augment import augment_batch

FILL = -0.42


def _digits(count=64, size=32):
    rng = np.random.default_rng(1)
    images = np.full((count, 1, size, size), FILL, dtype=np.float32)
    images[:, :, 10:22, 14:18] = rng.uniform(1, 2, (count, 1, 12, 4))
    return images, rng.integers(0, 10, count).astype(np.int32)


def test_a_batch_is_transformed_and_keeps_its_shape_type_and_background():
    images, _ = _digits(8)
    out = augment_batch(images, np.random.default_rng(0), FILL)
    assert out.shape == images.shape and out.dtype == np.float32
    assert not np.allclose(out, images)
    assert np.allclose(out[:, :, 0, :], FILL) and np.allclose(out[:, :, :, 0], FILL)
    ink = (images > 0).sum(axis=(1, 2, 3))
    moved = (out > 0.5).sum(axis=(1, 2, 3))
    assert np.all(np.abs(moved - ink) < 0.5 * ink)  # the digit is moved, not lost


def test_the_same_generator_gives_the_same_batch():
    images, _ = _digits(8)
    a = augment_batch(images, np.random.default_rng((3, 1, 7, 0)), FILL)
    b = augment_batch(images, np.random.default_rng((3, 1, 7, 0)), FILL)
    c = augment_batch(images, np.random.default_rng((3, 1, 8, 0)), FILL)
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def _epoch(feed):
    return [images for images, _ in feed]


def test_the_feed_augments_training_batches_only_and_resumes_exactly():
    images, labels = _digits()
    plain = _epoch(BatchFeed(images, labels, 8, training=True, seed=5))
    feed = BatchFeed(images, labels, 8, training=True, seed=5, augment=True, fill=FILL)
    augmented = _epoch(feed)
    assert len(plain) == len(augmented) == 8
    assert all(not np.array_equal(p, a) for p, a in zip(plain, augmented))
    second = _epoch(feed)  # another epoch, another draw
    assert not np.array_equal(second[0], augmented[0])
    # Grouped for several steps per launch, and resumed in the middle of the epoch: the same.
    grouped = BatchFeed(images, labels, 8, training=True, seed=5, augment=True, fill=FILL)
    grouped.group(3)
    grouped.start_at(8 + 4)  # epoch 1, step 4
    resumed = [b for chunk in _epoch(grouped) for b in chunk][-4:]
    assert all(np.array_equal(r, s) for r, s in zip(resumed, second[4:]))
    evaluation = BatchFeed(images, labels, 8, training=False, augment=True, fill=FILL)
    assert np.array_equal(np.concatenate(_epoch(evaluation)), images)
