"""Tests for reading, writing and validating MNIST's IDX files."""

from __future__ import annotations

import gzip
import re
import struct
from pathlib import Path

import numpy as np
import pytest

from trainer.data import idx
from trainer.data.idx import (
    SPLIT_FILES,
    find_split,
    missing_files,
    read_idx,
    validate_split,
    write_idx,
)
from trainer.errors import DataError


def idx_bytes(dims: tuple[int, ...], payload: bytes, type_code: int = 0x08) -> bytes:
    """A hand-built IDX file, so faults can be injected anywhere."""
    return bytes([0, 0, type_code, len(dims)]) + struct.pack(f">{len(dims)}I", *dims) + payload


def write_split(folder: Path, split: str, images: np.ndarray, labels: np.ndarray,
                suffix: str = "") -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = tuple(folder / (name + suffix) for name in SPLIT_FILES[split])
    write_idx(paths[0], images)
    write_idx(paths[1], labels)
    return paths


def in_message(path: Path) -> str:
    """A regex matching ``path`` literally, for ``pytest.raises(match=...)``."""
    return re.escape(str(path))


@pytest.fixture
def images() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, size=(5, 28, 28), dtype=np.uint8)


@pytest.fixture
def labels() -> np.ndarray:
    return np.array([0, 3, 9, 1, 7], dtype=np.uint8)


@pytest.mark.parametrize("suffix", ["", ".gz"])
@pytest.mark.parametrize("shape", [(7,), (3, 28, 28), (2, 4, 5), (0,)])
def test_round_trip(tmp_path: Path, suffix: str, shape: tuple[int, ...]) -> None:
    array = np.random.default_rng(1).integers(0, 256, size=shape, dtype=np.uint8)
    path = tmp_path / f"data{suffix}"
    write_idx(path, array)
    back = read_idx(path)
    assert back.dtype == np.uint8
    assert back.shape == shape
    np.testing.assert_array_equal(back, array)
    assert back.flags.writeable


def test_raw_file_layout_matches_idx_format(tmp_path: Path) -> None:
    path = tmp_path / "labels"
    write_idx(path, np.array([1, 2, 3], dtype=np.uint8))
    assert path.read_bytes() == idx_bytes((3,), b"\x01\x02\x03")


def test_gz_file_is_real_gzip_and_reproducible(tmp_path: Path, images: np.ndarray) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first, second = tmp_path / "a" / "images.gz", tmp_path / "b" / "images.gz"
    write_idx(first, images)
    write_idx(second, images)
    assert gzip.decompress(first.read_bytes()) == idx_bytes(images.shape, images.tobytes())
    assert first.read_bytes() == second.read_bytes()


def test_reads_file_written_by_plain_gzip(tmp_path: Path) -> None:
    path = tmp_path / "labels.gz"
    path.write_bytes(gzip.compress(idx_bytes((2,), b"\x04\x05")))
    np.testing.assert_array_equal(read_idx(path), [4, 5])


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"\x01\x00\x08\x01" + b"\x00\x00\x00\x01" + b"\x00", "IDX magic"),
        (gzip.compress(idx_bytes((1,), b"\x00")), "rename it to end in .gz"),
        (idx_bytes((1,), b"\x00\x00\x00\x00", type_code=0x0D), "type code 0x0d"),
        (idx_bytes((2, 2), b"\x00" * 4), "has 2 dimensions"),
        (idx_bytes((1, 1, 1, 1), b"\x00"), "has 4 dimensions"),
        (b"\x00\x00", "only 2 bytes long"),
        (b"\x00\x00\x08\x03\x00\x00\x00\x01", "too short for its 16-byte header"),
        (idx_bytes((4, 28, 28), b"\x00" * 3000), "truncated.*3136 bytes.*holds 3000"),
        (idx_bytes((3,), b"\x00" * 5), "trailing bytes.*3 bytes.*holds 5"),
    ],
    ids=["bad-magic", "gzip-without-suffix", "type-code", "ndim-2", "ndim-4", "tiny",
         "short-header", "truncated", "trailing"],
)
def test_read_rejects_malformed_file(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "broken-idx1-ubyte"
    path.write_bytes(content)
    with pytest.raises(DataError, match=in_message(path)):
        read_idx(path)
    with pytest.raises(DataError, match=message):
        read_idx(path)


@pytest.mark.parametrize(
    "damage",
    [
        lambda good: b"this is not gzip at all",
        lambda good: good[: len(good) // 2],
        lambda good: good[:20] + bytes(b ^ 0xFF for b in good[20:40]) + good[40:],
        lambda good: good[:-4] + b"\x00\x00\x00\x00",
    ],
    ids=["not-gzip", "cut-short", "flipped-bytes", "bad-size-trailer"],
)
def test_read_reports_corrupt_gzip_as_data_error(tmp_path: Path, images: np.ndarray,
                                                damage) -> None:
    good = gzip.compress(idx_bytes(images.shape, images.tobytes()))
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(damage(good))
    with pytest.raises(DataError, match=in_message(path) + ".*(gzip|truncated|IDX)"):
        read_idx(path)


def test_read_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "absent-idx1-ubyte"
    with pytest.raises(DataError, match=in_message(path) + " does not exist"):
        read_idx(path)


def test_read_directory_is_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="cannot be read"):
        read_idx(tmp_path)


@pytest.mark.parametrize(
    "array",
    [np.zeros((2, 2), dtype=np.uint8), np.zeros(3, dtype=np.int64), np.zeros((1, 1, 1, 1))],
    ids=["ndim-2", "int64", "ndim-4-float"],
)
def test_write_rejects_unsupported_arrays(tmp_path: Path, array: np.ndarray) -> None:
    with pytest.raises(ValueError, match="uint8 array of 1 or 3 dimensions"):
        write_idx(tmp_path / "x", array)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_write_leaves_no_temporary_files(tmp_path: Path, images: np.ndarray, suffix: str) -> None:
    path = tmp_path / f"train-images-idx3-ubyte{suffix}"
    write_idx(path, images)
    write_idx(path, images[:2])
    assert [p.name for p in tmp_path.iterdir()] == [path.name]
    assert read_idx(path).shape == (2, 28, 28)


def test_interrupted_write_keeps_old_file_and_no_temporary(tmp_path: Path, images: np.ndarray,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "train-images-idx3-ubyte"
    write_idx(path, images)
    before = path.read_bytes()

    def failing_fsync(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(idx.os, "fsync", failing_fsync)
    with pytest.raises(DataError, match=in_message(path) + ".*No space left on device"):
        write_idx(path, np.zeros((1, 28, 28), dtype=np.uint8))
    assert [p.name for p in tmp_path.iterdir()] == [path.name]
    assert path.read_bytes() == before


def test_interrupted_first_write_leaves_nothing(tmp_path: Path, images: np.ndarray,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    def failing_replace(src: str, dst: str) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(idx.os, "replace", failing_replace)
    with pytest.raises(KeyboardInterrupt):
        write_idx(tmp_path / "labels.gz", np.zeros(3, dtype=np.uint8))
    assert list(tmp_path.iterdir()) == []


def test_write_into_missing_folder_is_data_error(tmp_path: Path) -> None:
    path = tmp_path / "nowhere" / "labels"
    with pytest.raises(DataError, match=in_message(path)):
        write_idx(path, np.zeros(3, dtype=np.uint8))


@pytest.mark.parametrize("split", ["train", "test"])
@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_find_split(tmp_path: Path, images: np.ndarray, labels: np.ndarray, split: str,
                    suffix: str) -> None:
    written = write_split(tmp_path, split, images, labels, suffix)
    assert find_split(tmp_path, split) == written


def test_find_split_prefers_raw_over_gz(tmp_path: Path, images: np.ndarray,
                                        labels: np.ndarray) -> None:
    raw = write_split(tmp_path, "train", images, labels)
    write_split(tmp_path, "train", images, labels, ".gz")
    assert find_split(tmp_path, "train") == raw


def test_find_split_mixes_raw_and_gz(tmp_path: Path, images: np.ndarray,
                                     labels: np.ndarray) -> None:
    images_name, labels_name = SPLIT_FILES["test"]
    write_idx(tmp_path / images_name, images)
    write_idx(tmp_path / f"{labels_name}.gz", labels)
    assert find_split(tmp_path, "test") == (tmp_path / images_name,
                                            tmp_path / f"{labels_name}.gz")


@pytest.mark.parametrize("keep", [0, 1])
def test_find_split_missing_file(tmp_path: Path, images: np.ndarray, labels: np.ndarray,
                                 keep: int) -> None:
    paths = write_split(tmp_path, "train", images, labels)
    paths[1 - keep].unlink()
    assert find_split(tmp_path, "train") is None
    assert find_split(tmp_path / "absent", "train") is None


def test_find_split_rejects_unknown_split(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="split must be one of"):
        find_split(tmp_path, "validation")


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_validate_split_accepts_good_split(tmp_path: Path, images: np.ndarray,
                                           labels: np.ndarray, suffix: str) -> None:
    assert validate_split(*write_split(tmp_path, "train", images, labels, suffix)) == 5


def test_validate_split_count_mismatch(tmp_path: Path, images: np.ndarray,
                                       labels: np.ndarray) -> None:
    images_path, labels_path = write_split(tmp_path, "train", images, labels[:4])
    expected = (f"images file {in_message(images_path)} holds 5 images but labels file "
                f"{in_message(labels_path)} holds 4 labels")
    with pytest.raises(DataError, match="(?i)" + expected):
        validate_split(images_path, labels_path)


def test_validate_split_label_out_of_range(tmp_path: Path, images: np.ndarray,
                                           labels: np.ndarray) -> None:
    labels = labels.copy()
    labels[[1, 3]] = [10, 255]
    images_path, labels_path = write_split(tmp_path, "test", images, labels)
    with pytest.raises(DataError, match=in_message(labels_path)
                       + r" has 2 values outside 0-9 \(first: 10 at index 1\)"):
        validate_split(images_path, labels_path)


@pytest.mark.parametrize("shape", [(5, 32, 32), (5, 28, 27)])
def test_validate_split_wrong_image_size(tmp_path: Path, labels: np.ndarray,
                                         shape: tuple[int, int, int]) -> None:
    images_path, labels_path = write_split(tmp_path, "train", np.zeros(shape, np.uint8), labels)
    with pytest.raises(DataError, match=in_message(images_path)
                       + f" holds {shape[1]}x{shape[2]} images.*28x28"):
        validate_split(images_path, labels_path)


def test_validate_split_swapped_files(tmp_path: Path, images: np.ndarray,
                                      labels: np.ndarray) -> None:
    images_path, labels_path = write_split(tmp_path, "train", images, labels)
    with pytest.raises(DataError, match=in_message(labels_path) + ".*not swapped"):
        validate_split(labels_path, images_path)


def test_validate_split_labels_with_three_dims(tmp_path: Path, images: np.ndarray) -> None:
    images_path, labels_path = write_split(tmp_path, "train", images, images)
    with pytest.raises(DataError, match=in_message(labels_path) + " has 3 dimensions"):
        validate_split(images_path, labels_path)


def test_validate_split_empty(tmp_path: Path) -> None:
    images_path, labels_path = write_split(tmp_path, "train", np.zeros((0, 28, 28), np.uint8),
                                           np.zeros(0, np.uint8))
    with pytest.raises(DataError, match=in_message(images_path) + " holds no images"):
        validate_split(images_path, labels_path)


def test_validate_split_reports_corrupt_file(tmp_path: Path, images: np.ndarray,
                                             labels: np.ndarray) -> None:
    images_path, labels_path = write_split(tmp_path, "train", images, labels, ".gz")
    images_path.write_bytes(images_path.read_bytes()[:-10])
    with pytest.raises(DataError, match=in_message(images_path)):
        validate_split(images_path, labels_path)


def test_validate_split_is_fast_for_mnist_size(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    images = rng.integers(0, 256, size=(60_000, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, size=60_000, dtype=np.uint8)
    paths = write_split(tmp_path, "train", images, labels)
    assert validate_split(*paths) == 60_000


def test_missing_files_all(tmp_path: Path) -> None:
    expected = [f"{split}/{name}" for split, names in SPLIT_FILES.items() for name in names]
    assert missing_files(tmp_path) == expected
    assert missing_files(tmp_path / "absent") == expected


def test_missing_files_counts_raw_and_gz(tmp_path: Path, images: np.ndarray,
                                         labels: np.ndarray) -> None:
    write_split(tmp_path / "train", "train", images, labels, ".gz")
    (tmp_path / "test").mkdir()
    write_idx(tmp_path / "test" / SPLIT_FILES["test"][1], labels)
    assert missing_files(tmp_path) == ["test/t10k-images-idx3-ubyte"]
    write_idx(tmp_path / "test" / "t10k-images-idx3-ubyte", images)
    assert missing_files(tmp_path) == []


def test_missing_files_ignores_files_in_wrong_folder(tmp_path: Path, images: np.ndarray,
                                                     labels: np.ndarray) -> None:
    write_split(tmp_path, "train", images, labels)
    assert missing_files(tmp_path) == [
        f"{split}/{name}" for split, names in SPLIT_FILES.items() for name in names
    ]


def test_a_raw_name_reads_its_gzipped_twin(tmp_path):
    digits = np.arange(2 * 28 * 28, dtype=np.uint8).reshape(2, 28, 28)
    write_idx(tmp_path / "t10k-images-idx3-ubyte", digits)
    raw = tmp_path / "t10k-images-idx3-ubyte"
    with open(raw, "rb") as src, gzip.open(tmp_path / "t10k-images-idx3-ubyte.gz", "wb") as out:
        out.write(src.read())
    raw.unlink()  # as MNIST ships: only the .gz
    np.testing.assert_array_equal(read_idx(raw), digits)
    assert idx.read_idx_header(raw) == (2, 28, 28)
