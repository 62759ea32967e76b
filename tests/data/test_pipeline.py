"""The input pipeline: locating and checking the files, decompressing, batching, normalising."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("mindspore")

from trainer.config import TrainConfig  # noqa: E402
from trainer.data import (  # noqa: E402
    MNIST_MEAN,
    MNIST_STD,
    build_dataset,
    check_batch_size,
    prepare_data,
    prepare_split,
)
from trainer.data.idx import SPLIT_FILES, read_idx, write_idx  # noqa: E402
from trainer.errors import ConfigError, DataError  # noqa: E402


def batches(dataset) -> list[tuple[np.ndarray, np.ndarray]]:
    return list(dataset.create_tuple_iterator(output_numpy=True))


def split_arrays(root: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    images_name, labels_name = SPLIT_FILES[split]
    folder = root / split
    pick = [folder / n if (folder / n).exists() else folder / f"{n}.gz"
            for n in (images_name, labels_name)]
    return read_idx(pick[0]), read_idx(pick[1])


def listing(root: Path) -> dict[str, int]:
    """Every file under ``root`` with its modification time."""
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in root.rglob("*")
            if p.is_file()}


@pytest.fixture
def gz_copy(tmp_path, digits_gz_dir) -> Path:
    """A private copy of the gzipped digits (the shared one must stay as it is)."""
    return Path(shutil.copytree(digits_gz_dir, tmp_path / "gz"))


@pytest.fixture
def read_only():
    """``read_only(folder)`` makes ``folder`` unwritable (nothing is written into a data folder,
    so the tests also hold for root, which ignores the mode)."""
    made: list[Path] = []

    def _make(folder: Path) -> None:
        folder.chmod(0o555)
        made.append(folder)

    yield _make
    for folder in made:
        folder.chmod(0o755)


# ---------------------------------------------------------------------------------- batches
@pytest.mark.parametrize("net, size", [("lenet", 32), ("mlp", 28)])
def test_train_batches_have_the_network_shape_and_dtypes(digits_dir, net, size):
    from trainer.networks import build_network

    image_size = build_network(net).image_size
    assert image_size == size
    split = prepare_split(digits_dir, "train")
    dataset = build_dataset(split.folder, "train", image_size=image_size, batch_size=64,
                            training=True, num_workers=1)
    got = batches(dataset)
    images, labels = got[0]
    assert images.shape == (64, 1, size, size) and images.dtype == np.float32
    assert labels.shape == (64,) and labels.dtype == np.int32
    all_labels = np.concatenate([lab for _, lab in got])
    assert all_labels.min() >= 0 and all_labels.max() <= 9


def test_only_training_drops_the_last_incomplete_batch(digits_dir):
    train = prepare_split(digits_dir, "train")
    test = prepare_split(digits_dir, "test")
    batch = 300
    assert train.count % batch and test.count % batch  # both splits leave a remainder
    train_ds = build_dataset(train.folder, "train", image_size=28, batch_size=batch,
                             training=True, num_workers=1)
    test_ds = build_dataset(test.folder, "test", image_size=28, batch_size=batch,
                            training=False, num_workers=1)
    train_sizes = [len(lab) for _, lab in batches(train_ds)]
    test_sizes = [len(lab) for _, lab in batches(test_ds)]
    assert train_sizes == [batch] * (train.count // batch)
    assert train_ds.get_dataset_size() == train.count // batch
    assert sum(test_sizes) == test.count and test_sizes[-1] == test.count % batch


def test_test_split_is_in_file_order_and_normalised_like_the_tutorial(digits_dir):
    split = prepare_split(digits_dir, "test")
    raw_images, raw_labels = split_arrays(digits_dir, "test")
    dataset = build_dataset(split.folder, "test", image_size=28, batch_size=split.count,
                            training=False, num_workers=1)
    (images, labels), = batches(dataset)
    expected = ((raw_images.astype(np.float32) / 255.0 - MNIST_MEAN) / MNIST_STD)[:, None]
    np.testing.assert_allclose(images, expected, atol=1e-5)
    np.testing.assert_array_equal(labels, raw_labels.astype(np.int32))


def test_training_split_is_shuffled_and_keeps_its_examples(digits_dir):
    split = prepare_split(digits_dir, "train")
    _, raw_labels = split_arrays(digits_dir, "train")
    dataset = build_dataset(split.folder, "train", image_size=28, batch_size=split.count,
                            training=True, num_workers=1)
    (_, labels), = batches(dataset)
    assert not np.array_equal(labels, raw_labels)
    np.testing.assert_array_equal(np.bincount(labels, minlength=10),
                                  np.bincount(raw_labels, minlength=10))


@pytest.mark.parametrize("size", [28, 32])
def test_normalised_images_have_mean_near_0_and_std_near_1(digits_dir, size):
    split = prepare_split(digits_dir, "train")
    dataset = build_dataset(split.folder, "train", image_size=size, batch_size=400,
                            training=True, num_workers=1)
    pixels = np.concatenate([img for img, _ in batches(dataset)])
    assert abs(float(pixels.mean())) < 0.25
    assert 0.7 < float(pixels.std()) < 1.3


# ---------------------------------------------------------------------------- gzipped input
def test_gzipped_split_is_decompressed_into_the_cache_not_the_data_folder(gz_copy, tmp_path,
                                                                           monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("MSTRAIN_CACHE", str(cache))
    before = listing(gz_copy)
    split = prepare_split(gz_copy, "train")
    assert split.count == 640 and split.folder.name == "train" and cache in split.folder.parents
    images, labels = split_arrays(gz_copy, "train")  # reads the .gz files
    for name, array in zip(SPLIT_FILES["train"], (images, labels)):
        np.testing.assert_array_equal(read_idx(split.folder / name), array)
    assert listing(gz_copy) == before  # derived data is kept in the cache only
    dataset = build_dataset(split.folder, "train", image_size=28, batch_size=64, training=True,
                            num_workers=1)
    assert dataset.get_dataset_size() == 640 // 64
    assert sum(len(lab) for _, lab in batches(dataset)) == 640
    # A second preparation reuses the copies instead of writing them again.
    cached = listing(split.folder)
    assert prepare_split(gz_copy, "train").folder == split.folder
    assert listing(split.folder) == cached


@pytest.mark.parametrize("stray", [".gz", ".bak", ".part"])
def test_files_beside_the_raw_ones_do_not_reach_the_reader(digits_dir, tmp_path, stray):
    # MindSpore's reader takes every file whose name contains the expected one.
    root = Path(shutil.copytree(digits_dir, tmp_path / "copy"))
    images_name, labels_name = SPLIT_FILES["test"]
    shutil.copy(root / "test" / labels_name, root / "test" / f"{labels_name}{stray}")
    split = prepare_split(root, "test")
    dataset = build_dataset(split.folder, "test", image_size=28, batch_size=256, training=False,
                            num_workers=1)
    assert sum(len(lab) for _, lab in batches(dataset)) == split.count == 400


def test_read_only_gzipped_folder_falls_back_to_the_cache(gz_copy, tmp_path, monkeypatch,
                                                          read_only):
    cache = tmp_path / "cache"
    monkeypatch.setenv("MSTRAIN_CACHE", str(cache))
    folder = gz_copy / "test"
    before = listing(gz_copy)
    read_only(folder)
    split = prepare_split(gz_copy, "test")
    assert split.count == 160
    assert split.folder != folder and cache in split.folder.parents
    assert listing(gz_copy) == before  # nothing written into the read-only folder
    images, labels = split_arrays(gz_copy, "test")
    np.testing.assert_array_equal(read_idx(split.folder / SPLIT_FILES["test"][0]), images)
    np.testing.assert_array_equal(read_idx(split.folder / SPLIT_FILES["test"][1]), labels)
    dataset = build_dataset(split.folder, "test", image_size=28, batch_size=100, training=False,
                            num_workers=1)
    assert sum(len(lab) for _, lab in batches(dataset)) == 160
    # The cached copy is found again on the next run.
    assert prepare_split(gz_copy, "test").folder == split.folder


def test_read_only_folder_with_one_raw_and_one_gzipped_file(gz_copy, tmp_path, monkeypatch,
                                                            read_only):
    monkeypatch.setenv("MSTRAIN_CACHE", str(tmp_path / "cache"))
    folder = gz_copy / "test"
    images_name, labels_name = SPLIT_FILES["test"]
    write_idx(folder / images_name, read_idx(folder / f"{images_name}.gz"))
    (folder / f"{images_name}.gz").unlink()
    read_only(folder)
    split = prepare_split(gz_copy, "test")
    assert {p.name for p in split.folder.iterdir()} >= {images_name, labels_name}
    dataset = build_dataset(split.folder, "test", image_size=28, batch_size=200, training=False,
                            num_workers=1)
    assert sum(len(lab) for _, lab in batches(dataset)) == split.count


def test_unusable_cache_is_a_data_error(gz_copy, tmp_path, monkeypatch, read_only):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    monkeypatch.setenv("MSTRAIN_CACHE", str(blocker))
    read_only(gz_copy / "test")
    with pytest.raises(DataError) as info:
        prepare_split(gz_copy, "test")
    assert "MSTRAIN_CACHE" in str(info.value)


def test_corrupt_gzip_leaves_no_decompressed_file(gz_copy):
    images_gz = gz_copy / "train" / f"{SPLIT_FILES['train'][0]}.gz"
    images_gz.write_bytes(images_gz.read_bytes()[:-100])
    before = listing(gz_copy)
    with pytest.raises(DataError) as info:
        prepare_split(gz_copy, "train")
    assert str(images_gz) in str(info.value)
    assert listing(gz_copy) == before


# ----------------------------------------------------------------------------- finding files
def test_missing_split_names_the_files(tmp_path):
    with pytest.raises(DataError) as info:
        prepare_split(tmp_path, "test")
    message = str(info.value)
    for split, names in SPLIT_FILES.items():
        for name in names:
            assert f"{split}/{name}" in message


def test_corrupt_labels_are_named(tmp_path, digits_dir):
    root = Path(shutil.copytree(digits_dir, tmp_path / "copy"))
    labels_path = root / "test" / SPLIT_FILES["test"][1]
    labels = read_idx(labels_path)
    labels[5] = 12
    write_idx(labels_path, labels)
    with pytest.raises(DataError) as info:
        prepare_split(root, "test")
    assert str(labels_path) in str(info.value) and "12" in str(info.value)


def ensure_data(cfg, progress: bool = False) -> Path:
    """The data folder of ``cfg``'s source, its files fetched or generated and checked."""
    return prepare_data(cfg, progress=progress).source.data_dir


def test_ensure_data_generates_synthetic_digits_once(tmp_path):
    cfg = TrainConfig(data_source="synthetic", data_dir=str(tmp_path / "syn"),
                      synthetic_train_size=40, synthetic_test_size=20).validate()
    root = ensure_data(cfg, progress=False)
    assert root == tmp_path / "syn"
    assert prepare_split(root, "train").count == 40
    assert prepare_split(root, "test").count == 20
    before = listing(root)
    assert ensure_data(cfg, progress=False) == root
    assert listing(root) == before


def test_ensure_data_without_download_names_the_missing_files(tmp_path):
    cfg = TrainConfig(data_dir=str(tmp_path / "mnist"), download=False).validate()
    with pytest.raises(DataError) as info:
        ensure_data(cfg, progress=False)
    message = str(info.value)
    assert str(tmp_path / "mnist") in message
    assert all(name in message for names in SPLIT_FILES.values() for name in names)


def test_default_data_folders_depend_on_the_source():
    assert TrainConfig().resolved_data_dir() == Path("data/mnist")
    assert TrainConfig(data_source="synthetic").resolved_data_dir() == Path("data/synthetic")
    assert TrainConfig(data_dir="~/x").resolved_data_dir() == Path("~/x").expanduser()


# ------------------------------------------------------------------------------- batch size
def test_batch_size_larger_than_the_training_set_is_refused():
    with pytest.raises(ConfigError) as info:
        check_batch_size(1601, 1600)
    message = " ".join(str(info.value).split())
    assert "'batch_size'" in message and "1601" in message and "1600" in message
    assert "--batch-size" in message
    check_batch_size(1600, 1600)  # one full batch is enough
    check_batch_size(1, 1)


def test_batch_size_is_checked_per_shard():
    check_batch_size(400, 1600, shards=4)
    with pytest.raises(ConfigError) as info:
        check_batch_size(401, 1600, shards=4)
    assert "400" in str(info.value) and "4" in str(info.value)
