"""The decoded-data cache: the same tensors as the streaming pipeline, rebuilt when the data
changes, never half-written, and training from it learns as training from the stream does."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from trainer import data as data_mod
from trainer.data import build_dataset, cached_split, prepare_split
from trainer.errors import DataError


def _arrays(dataset) -> tuple[np.ndarray, np.ndarray]:
    batches = list(dataset.create_tuple_iterator(output_numpy=True, num_epochs=1))
    return (np.concatenate([b[0] for b in batches]), np.concatenate([b[1] for b in batches]))


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


def test_training_pipeline_shuffles_shards_and_drops_the_remainder(digits_dir, cache_dir):
    split = prepare_split(digits_dir, "train")
    full = build_dataset(split.folder, "train", image_size=32, batch_size=64, training=True,
                         cache=True)
    assert full.get_dataset_size() == split.count // 64
    labels = _arrays(full)[1]
    ordered = _arrays(build_dataset(split.folder, "train", image_size=32, batch_size=64,
                                    training=False, cache=True))[1]
    assert not np.array_equal(labels, ordered[:len(labels)])  # shuffled
    shards = [_arrays(build_dataset(split.folder, "train", image_size=32, batch_size=8,
                                    training=True, num_shards=2, shard_id=i, cache=True))[0]
              for i in range(2)]
    assert len(shards[0]) + len(shards[1]) == split.count // 16 * 16
    flat = [{s.tobytes() for s in shard} for shard in shards]
    assert not flat[0] & flat[1]  # the two workers see different digits


def test_cache_is_reused_and_rebuilt_when_the_files_change(digits_dir, tmp_path, cache_dir):
    import shutil

    data = tmp_path / "data"
    shutil.copytree(digits_dir, data)
    split = prepare_split(data, "test")
    first = cached_split(split.folder, "test", image_size=32)
    stamp = first.stat().st_mtime_ns
    assert cached_split(split.folder, "test", image_size=32) == first
    assert first.stat().st_mtime_ns == stamp  # read, not rewritten
    images = split.folder / "t10k-images-idx3-ubyte"
    os.utime(images, ns=(images.stat().st_atime_ns, images.stat().st_mtime_ns + 10**9))
    second = cached_split(split.folder, "test", image_size=32)
    assert second != first and second.is_file()


def test_an_interrupted_build_leaves_nothing_that_looks_complete(digits_dir, cache_dir,
                                                                  monkeypatch):
    split = prepare_split(digits_dir, "test")

    def crash(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(data_mod, "_write_mindrecord", crash)
    with pytest.raises(KeyboardInterrupt):
        cached_split(split.folder, "test", image_size=32)
    root = cache_dir / "mstrain" / "mindrecord"
    assert list(root.iterdir()) == []  # neither the cache nor its staging folder
    monkeypatch.undo()
    os.environ["MSTRAIN_CACHE"] = str(cache_dir)
    path = cached_split(split.folder, "test", image_size=32)
    assert path.is_file() and [p.name for p in root.iterdir()] == [path.parent.name]


def test_unwritable_cache_names_the_folder_and_the_fixes(digits_dir, tmp_path, monkeypatch):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    monkeypatch.setenv("MSTRAIN_CACHE", str(blocker))
    split = prepare_split(digits_dir, "test")
    with pytest.raises(DataError) as info:
        cached_split(split.folder, "test", image_size=32)
    message = str(info.value)
    assert str(blocker) in message and "MSTRAIN_CACHE" in message
    assert "--data-cache" in message


def test_cached_and_streaming_training_learn_alike(digits_dir, tmp_path, cache_dir):
    from trainer import TrainConfig, Trainer

    accuracy = {}
    for cache in (True, False):
        cfg = TrainConfig(data_dir=str(digits_dir), epochs=2, output_dir=str(tmp_path),
                          run_name=f"cache-{cache}", progress=False, plot=False,
                          log_every=0, data_cache=cache, net="mlp")
        history = Trainer(cfg).fit()
        accuracy[cache] = history.history["val_accuracy"][-1]
    assert min(accuracy.values()) >= 0.8
    assert abs(accuracy[True] - accuracy[False]) <= 0.06
