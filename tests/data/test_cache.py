"""The decoded-data cache and the batch feed: the same tensors as the streaming pipeline, an order
known from (seed, epoch) so resume and data-parallel shards are exact, rebuilt when the data
changes, never half-written, and training from it learns as training from the stream does."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pytest

from trainer.data import (
    BatchFeed,
    build_dataset,
    decoded_split,
    feed_dataset,
    launch_dataset,
    prepare_split,
    resume_at,
)
from trainer.data import cache as data_mod


def _arrays(dataset) -> tuple[np.ndarray, np.ndarray]:
    batches = list(dataset.create_tuple_iterator(output_numpy=True, num_epochs=1))
    return (np.concatenate([b[0] for b in batches]), np.concatenate([b[1] for b in batches]))


def _cache_entries(cache_dir: Path) -> list[str]:
    root = cache_dir / "mstrain" / "decoded"
    return sorted(p.name for p in root.iterdir()) if root.exists() else []


@pytest.fixture
def cache_dir(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv("MSTRAIN_CACHE", str(folder))
    return folder


@pytest.mark.parametrize("image_size", [32, 28])
def test_cached_tensors_equal_the_streaming_pipeline(digits_dir, cache_dir, image_size):
    split = prepare_split(digits_dir, "test")
    kwargs = dict(image_size=image_size, batch_size=100, training=False)
    cached = _arrays(build_dataset(split.folder, "test", cache=True, **kwargs))
    streamed = _arrays(build_dataset(split.folder, "test", cache=False, **kwargs))
    assert cached[0].shape == (split.count, 1, image_size, image_size)
    assert cached[0].dtype == np.float32 and cached[1].dtype == np.int32
    np.testing.assert_array_equal(cached[0], streamed[0])
    np.testing.assert_array_equal(cached[1], streamed[1])


def test_the_cache_keeps_a_byte_a_pixel(digits_dir, cache_dir):
    split = prepare_split(digits_dir, "test")
    images, _ = decoded_split(split.folder, "test", image_size=32)
    assert images.dtype == np.uint8 and images.shape == (split.count, 1, 32, 32)
    [entry] = _cache_entries(cache_dir)
    size = (cache_dir / "mstrain" / "decoded" / entry / "images.npy").stat().st_size
    assert size < split.count * 32 * 32 + 1024  # the digits and a .npy header, no more


def test_training_feed_shuffles_shards_and_drops_the_remainder(digits_dir, cache_dir):
    split = prepare_split(digits_dir, "train")
    full = build_dataset(split.folder, "train", image_size=32, batch_size=64, training=True,
                         cache=True)
    assert full.get_dataset_size() == split.count // 64
    labels = _arrays(full)[1]
    ordered = _arrays(build_dataset(split.folder, "train", image_size=32, batch_size=64,
                                    training=False, cache=True))[1]
    assert len(labels) == split.count // 64 * 64
    assert not np.array_equal(labels, ordered[:len(labels)])  # shuffled
    shards = [_arrays(build_dataset(split.folder, "train", image_size=32, batch_size=8,
                                    training=True, num_shards=2, shard_id=i, cache=True))[0]
              for i in range(2)]
    assert len(shards[0]) == len(shards[1]) == split.count // 16 * 8
    flat = [{s.tobytes() for s in shard} for shard in shards]
    assert not flat[0] & flat[1]  # the two workers see different digits


def _feed(n: int = 100, batch: int = 8, **kwargs) -> BatchFeed:
    images = np.arange(n, dtype=np.float32).reshape(n, 1, 1, 1)
    return BatchFeed(images, np.arange(n, dtype=np.int32), batch, **kwargs)


def _epoch(feed: BatchFeed) -> list[list[int]]:
    return [labels.tolist() for _, labels in feed]


def test_feed_order_is_a_function_of_seed_and_epoch():
    feed = _feed(training=True, seed=5)
    first, second = _epoch(feed), _epoch(feed)
    assert len(first) == 100 // 8 and all(len(b) == 8 for b in first)
    assert first != second  # a new order every epoch
    again = _feed(training=True, seed=5)
    assert _epoch(again) == first and _epoch(again) == second  # the same run repeats
    assert _epoch(_feed(training=True, seed=6)) != first
    assert len(set(sum(first, []))) == 96  # no digit twice in an epoch
    assert _epoch(_feed(training=False)) == [list(range(k, min(k + 8, 100)))
                                              for k in range(0, 100, 8)]  # keeps the remainder


def test_feed_resumes_at_any_step_and_ignores_abandoned_reads():
    def run(start: int) -> list[list[int]]:
        feed = _feed(training=True, seed=1)  # 12 batches an epoch, 3 epochs
        dataset = feed_dataset(feed)
        peek = iter(feed)
        next(peek)  # a read that stops early, like MindSpore's probe of shapes and types
        del peek
        assert dataset.get_dataset_size() == 12
        if start:
            resume_at(dataset, start)
        batches = dataset.create_tuple_iterator(output_numpy=True, num_epochs=3)
        return [labels.tolist() for _ in range(3 - start // 12) for _, labels in batches]

    straight = run(0)
    assert len(straight) == 36 and straight[:12] != straight[12:24]
    for global_step in (5, 12, 13, 30):
        assert run(global_step) == straight[global_step:]


def test_feed_shards_split_every_global_batch():
    workers = [_feed(training=True, seed=2, batch=4, num_shards=3, shard_id=r) for r in range(3)]
    whole = _feed(training=True, seed=2, batch=12)
    assert len(workers[0]) == len(whole) == 100 // 12
    for parts, batch in zip(zip(*(_epoch(w) for w in workers)), _epoch(whole)):
        assert sum(parts, []) == batch


def test_grouped_feed_stacks_the_same_batches_and_cuts_where_callbacks_act():
    reference = _feed(n=200, training=True, seed=4)  # 25 batches of 8
    plain = [_epoch(reference), _epoch(reference)]
    feed = _feed(n=200, training=True, seed=4)
    feed.group(4, cuts=(10,))
    assert feed.groups == [(0, 4), (4, 8), (8, 10), (10, 14), (14, 18), (18, 20), (20, 24),
                           (24, 25)]
    assert len(feed) == 8
    launches = list(feed)
    for images, labels in launches:
        assert images.shape[1:] == (8, 1, 1, 1) and labels.shape[1:] == (8,)
        np.testing.assert_array_equal(images.reshape(labels.shape), labels)
    assert [batch.tolist() for _, labels in launches for batch in labels] == plain[0]
    feed.group(1)  # back to single batches, continuing with the next epoch's order
    assert len(feed) == 25 and _epoch(feed) == plain[1]


def test_grouped_feed_resumes_inside_a_group_and_ignores_abandoned_reads():
    def run(start: int) -> list[list[int]]:
        feed = _feed(training=True, seed=1)  # 12 batches an epoch, 3 epochs
        dataset = launch_dataset(feed_dataset(feed), 5)  # launches of 5, 5 and 2 steps
        peek = iter(feed)
        next(peek)  # MindSpore's probe of shapes and types
        del peek
        if start:
            resume_at(dataset, start)
        launches = dataset.create_tuple_iterator(output_numpy=True, num_epochs=3)
        steps = []
        for _ in range(3 - start // 12):
            for _, labels in launches:
                steps += labels.tolist()
        return steps

    straight = run(0)
    assert len(straight) == 36
    for global_step in (3, 5, 12, 13, 29, 34):
        assert run(global_step) == straight[global_step:], global_step


def test_cache_is_reused_and_rebuilt_when_the_files_change(digits_dir, tmp_path, cache_dir):
    import shutil

    data = tmp_path / "data"
    shutil.copytree(digits_dir, data)
    split = prepare_split(data, "test")
    decoded_split(split.folder, "test", image_size=32)
    [entry] = _cache_entries(cache_dir)
    images = cache_dir / "mstrain" / "decoded" / entry / "images.npy"
    stamp = images.stat().st_mtime_ns
    again = decoded_split(split.folder, "test", image_size=32)
    assert images.stat().st_mtime_ns == stamp  # read, not rewritten
    assert isinstance(again[0], np.memmap)
    raw = split.folder / "t10k-images-idx3-ubyte"
    os.utime(raw, ns=(raw.stat().st_atime_ns, raw.stat().st_mtime_ns + 10**9))
    decoded_split(split.folder, "test", image_size=32)
    assert len(_cache_entries(cache_dir)) == 2


def test_an_interrupted_build_leaves_nothing_that_looks_complete(digits_dir, cache_dir,
                                                                  monkeypatch):
    split = prepare_split(digits_dir, "test")
    real_save = np.save
    calls = []

    def crash_after_first_file(out, array, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            out.write(b"\x93NUMPY partial")
            raise KeyboardInterrupt
        real_save(out, array, **kwargs)

    monkeypatch.setattr(data_mod.np, "save", crash_after_first_file)
    with pytest.raises(KeyboardInterrupt):
        decoded_split(split.folder, "test", image_size=32)
    assert _cache_entries(cache_dir) == []  # neither the cache nor its staging folder
    monkeypatch.setattr(data_mod.np, "save", real_save)
    images, labels = decoded_split(split.folder, "test", image_size=32)
    assert len(images) == len(labels) == split.count
    assert len(_cache_entries(cache_dir)) == 1


def test_a_damaged_cache_is_rebuilt(digits_dir, cache_dir):
    split = prepare_split(digits_dir, "test")
    expected = np.array(decoded_split(split.folder, "test", image_size=32)[0])
    [entry] = _cache_entries(cache_dir)
    images = cache_dir / "mstrain" / "decoded" / entry / "images.npy"
    images.write_bytes(images.read_bytes()[:5000])  # truncated, as by a full disk
    rebuilt = decoded_split(split.folder, "test", image_size=32)[0]
    np.testing.assert_array_equal(rebuilt, expected)
    assert images.stat().st_size > 5000


def test_an_unwritable_cache_still_trains_and_says_how_to_fix_it(digits_dir, tmp_path,
                                                                  monkeypatch):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    monkeypatch.setenv("MSTRAIN_CACHE", str(blocker))
    split = prepare_split(digits_dir, "test")
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = records.append
    logging.getLogger("mstrain").addHandler(handler)  # the logger train.py prints
    try:
        images, labels = decoded_split(split.folder, "test", image_size=32)
    finally:
        logging.getLogger("mstrain").removeHandler(handler)
    assert len(images) == len(labels) == split.count
    [record] = records
    message = record.getMessage()
    assert str(blocker) in message and "MSTRAIN_CACHE" in message
    assert blocker.read_text() == "x"


def test_cached_and_streaming_training_learn_alike(digits_dir, tmp_path, cache_dir):
    from trainer import TrainConfig, Trainer

    accuracy = {}
    for cache in (True, False):
        cfg = TrainConfig(data_dir=str(digits_dir), epochs=2, val_split=0, output_dir=str(tmp_path),
                          run_name=f"cache-{cache}", progress=False, plot=False,
                          log_every=0, data_cache=cache, net="mlp")
        history = Trainer(cfg).fit()
        accuracy[cache] = history.history["val_accuracy"][-1]
    assert min(accuracy.values()) >= 0.8
    assert abs(accuracy[True] - accuracy[False]) <= 0.06
