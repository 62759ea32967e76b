"""Tests for the synthetic MNIST look-alike."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from trainer.data import synthetic
from trainer.data.idx import SPLIT_FILES, find_split, read_idx, validate_split
from trainer.data.synthetic import generate_digits, main, render_digit
from trainer.errors import DataError

REPO = Path(__file__).resolve().parents[2]


def all_files(root: Path, suffix: str = "") -> list[Path]:
    return [root / split / (name + suffix) for split, names in SPLIT_FILES.items()
            for name in names]


def load(root: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    paths = find_split(root / split, split)
    assert paths is not None
    return read_idx(paths[0]), read_idx(paths[1])


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_digits(tmp_path_factory.mktemp("small"), train_size=120, test_size=40, seed=0)


def test_writes_mnist_layout(small: Path) -> None:
    assert sorted(p for p in small.rglob("*") if p.is_file()) == sorted(all_files(small))
    assert validate_split(*all_files(small)[:2]) == 120
    assert validate_split(*all_files(small)[2:]) == 40


@pytest.mark.parametrize(("split", "count"), [("train", 120), ("test", 40)])
def test_shapes_dtypes_and_labels(small: Path, split: str, count: int) -> None:
    images, labels = load(small, split)
    assert images.shape == (count, 28, 28)
    assert images.dtype == np.uint8 and labels.dtype == np.uint8
    assert set(np.unique(labels)) == set(range(10))
    # Shuffled, not cycling 0..9.
    assert not np.array_equal(labels, np.arange(count) % 10)


def test_white_digit_on_black_background(small: Path) -> None:
    images, _ = load(small, "train")
    border = np.concatenate([images[:, :2].ravel(), images[:, -2:].ravel(),
                             images[:, :, :2].ravel(), images[:, :, -2:].ravel()])
    assert border.mean() < 15
    assert images[:, 8:20, 8:20].mean() > 3 * border.mean() + 20
    assert (images.reshape(len(images), -1).max(axis=1) > 150).all()


@pytest.mark.parametrize(("count", "low", "high"), [(120, 12, 12), (25, 2, 3), (7, 0, 1)])
def test_class_balance(tmp_path: Path, count: int, low: int, high: int) -> None:
    generate_digits(tmp_path, train_size=count, test_size=1, seed=3)
    _, labels = load(tmp_path, "train")
    counts = np.bincount(labels, minlength=10)
    assert counts.min() >= low and counts.max() <= high


def test_same_seed_same_bytes(tmp_path: Path, small: Path) -> None:
    again = generate_digits(tmp_path, train_size=120, test_size=40, seed=0)
    for first, second in zip(all_files(small), all_files(again)):
        assert first.read_bytes() == second.read_bytes()


def test_different_seed_different_bytes(tmp_path: Path, small: Path) -> None:
    other = generate_digits(tmp_path, train_size=120, test_size=40, seed=1)
    for first, second in zip(all_files(small), all_files(other)):
        assert first.read_bytes() != second.read_bytes()


def test_train_and_test_use_different_streams(tmp_path: Path) -> None:
    generate_digits(tmp_path, train_size=20, test_size=20, seed=0)
    train_images, train_labels = load(tmp_path, "train")
    test_images, test_labels = load(tmp_path, "test")
    assert not np.array_equal(train_labels, test_labels)
    assert not np.array_equal(train_images, test_images)


def test_gzip_option(tmp_path: Path, small: Path) -> None:
    generate_digits(tmp_path, train_size=120, test_size=40, seed=0, compress=True)
    assert sorted(p for p in tmp_path.rglob("*") if p.is_file()) == sorted(
        all_files(tmp_path, ".gz"))
    for raw, gz in zip(all_files(small), all_files(tmp_path, ".gz")):
        np.testing.assert_array_equal(read_idx(raw), read_idx(gz))


@pytest.mark.parametrize("first_compress", [False, True])
def test_rerun_replaces_other_kind(tmp_path: Path, first_compress: bool) -> None:
    generate_digits(tmp_path, train_size=10, test_size=10, seed=0, compress=first_compress)
    generate_digits(tmp_path, train_size=20, test_size=10, seed=0, compress=not first_compress)
    suffix = "" if first_compress else ".gz"
    assert sorted(p for p in tmp_path.rglob("*") if p.is_file()) == sorted(
        all_files(tmp_path, suffix))
    assert load(tmp_path, "train")[1].shape == (20,)


@pytest.mark.parametrize(("train_size", "test_size"), [(0, 5), (5, 0), (-1, 5)])
def test_rejects_empty_split(tmp_path: Path, train_size: int, test_size: int) -> None:
    with pytest.raises(DataError, match="at least 1 image"):
        generate_digits(tmp_path, train_size=train_size, test_size=test_size)


def test_unwritable_output_is_data_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(DataError, match="Cannot create the folder"):
        generate_digits(blocker, train_size=2, test_size=2)


def test_render_digit_shape_and_determinism() -> None:
    first = render_digit(4, np.random.default_rng(5))
    second = render_digit(4, np.random.default_rng(5))
    assert first.shape == (28, 28) and first.dtype == np.uint8
    np.testing.assert_array_equal(first, second)
    assert not np.array_equal(first, render_digit(4, np.random.default_rng(6)))
    assert render_digit(8, np.random.default_rng(0), size=40).shape == (40, 40)


@pytest.mark.parametrize("digit", [-1, 10])
def test_render_digit_rejects_non_digit(digit: int) -> None:
    with pytest.raises(ValueError, match="digit must be in 0-9"):
        render_digit(digit, np.random.default_rng(0))


@pytest.mark.parametrize("digit", range(10))
def test_stroke_drawings_without_font(monkeypatch: pytest.MonkeyPatch, digit: int) -> None:
    monkeypatch.setattr(synthetic, "_font", lambda: None)
    image = render_digit(digit, np.random.default_rng(digit))
    assert image.max() > 150
    assert image[8:20, 8:20].mean() > image[:3].mean() + 10
    np.testing.assert_array_equal(image, render_digit(digit, np.random.default_rng(digit)))


def test_main_writes_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "data"
    assert main([str(out), "--train-size", "30", "--test-size", "10", "--seed", "4",
                 "--gzip"]) == 0
    printed = capsys.readouterr().out
    for path in all_files(out, ".gz"):
        assert path.is_file()
        assert str(path) in printed
    assert validate_split(*all_files(out, ".gz")[:2]) == 30
    assert validate_split(*all_files(out, ".gz")[2:]) == 10


@pytest.mark.parametrize(
    "bad", [["--train-size", "0"], ["--test-size", "x"], ["--seed", "-1"], ["--test-size", "1.5"]])
def test_main_rejects_bad_sizes(tmp_path: Path, bad: list[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([str(tmp_path), *bad])
    assert exit_info.value.code == 2
    assert list(tmp_path.iterdir()) == []


def test_main_reports_user_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main([str(blocker), "--train-size", "2", "--test-size", "2"]) == 2
    assert capsys.readouterr().err.startswith("error: Cannot create the folder")


def test_module_runs_and_avoids_mindspore(tmp_path: Path) -> None:
    code = ("import runpy, sys; sys.argv = ['synthetic', sys.argv[1], '--train-size', '10', "
            "'--test-size', '10']; "
            "import trainer.data.idx, trainer.data.synthetic; "
            "assert 'mindspore' not in sys.modules; "
            "runpy.run_module('trainer.data.synthetic', run_name='__main__')")
    result = subprocess.run([sys.executable, "-c", code, str(tmp_path)], cwd=REPO,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "wrote 10 training and 10 test images" in result.stdout


def softmax_regression_accuracy(train: tuple[np.ndarray, np.ndarray],
                                test: tuple[np.ndarray, np.ndarray], steps: int = 150) -> float:
    """Test accuracy of multinomial logistic regression on raw pixels, by gradient descent."""
    def features(images: np.ndarray) -> np.ndarray:
        flat = images.reshape(len(images), -1).astype(np.float32) / 255.0
        return np.hstack([flat, np.ones((len(flat), 1), np.float32)])

    x, x_test = features(train[0]), features(test[0])
    targets = np.eye(10, dtype=np.float32)[train[1]]
    weights = np.zeros((x.shape[1], 10), np.float32)
    for _ in range(steps):
        logits = x @ weights
        logits -= logits.max(axis=1, keepdims=True)
        probs = np.exp(logits)
        probs /= probs.sum(axis=1, keepdims=True)
        weights -= 0.5 * (x.T @ (probs - targets) / len(x) + 1e-3 * weights)
    return float(np.mean(np.argmax(x_test @ weights, axis=1) == test[1]))


def nearest_centroid_accuracy(train: tuple[np.ndarray, np.ndarray],
                              test: tuple[np.ndarray, np.ndarray]) -> float:
    x = train[0].reshape(len(train[0]), -1).astype(np.float32)
    x_test = test[0].reshape(len(test[0]), -1).astype(np.float32)
    centroids = np.stack([x[train[1] == k].mean(axis=0) for k in range(10)])
    distances = ((x_test[:, None, :] - centroids[None]) ** 2).sum(axis=2)
    return float(np.mean(distances.argmin(axis=1) == test[1]))


def test_classes_are_learnable_but_not_trivial(tmp_path: Path) -> None:
    generate_digits(tmp_path, train_size=1000, test_size=300, seed=11)
    train, test = load(tmp_path, "train"), load(tmp_path, "test")
    assert softmax_regression_accuracy(train, test) > 0.8
    # Real variation within each class: a per-class mean image must not classify perfectly.
    assert nearest_centroid_accuracy(train, test) < 0.97
