"""CIFAR-10 from its binary archive: downloaded MD5-checked (here from 127.0.0.1, a generated
archive of the same layout with its own sum), every member checked before any is read, class names
from batches.meta.txt, 3 channels; trained with crops and flips until it learns, resumed exactly;
a hostile or broken archive is one paragraph and leaves nothing cached."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import train_here
from tests.data.conftest import serving
from trainer.config import TrainConfig
from trainer.data.augment import crop_and_flip
from trainer.data.sources import make_source
from trainer.data.sources.cifar10 import ARCHIVE, BATCHES, FOLDER, META, RECORD, Cifar10

CLASSES = ("plane", "car", "bird", "cat", "deer")


def _batch(count: int, seed: int, classes: int = len(CLASSES)) -> bytes:
    """Records of learnable photos: class k lights plane k % 3 in the top or bottom half."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, count)
    images = rng.integers(0, 90, (count, 3, 32, 32)).astype(np.uint8)
    for k in range(classes):
        rows = slice(0, 16) if k < 3 else slice(16, 32)
        images[labels == k, k % 3, rows] += 140
    return np.concatenate([labels[:, None].astype(np.uint8), images.reshape(count, -1)],
                          axis=1).tobytes()


def _members(per_batch: int = 80) -> dict[str, bytes]:
    files = {META: ("\n".join(CLASSES) + "\n\n").encode()}
    for i, name in enumerate(BATCHES["train"]):
        files[name] = _batch(per_batch, i)
    files[BATCHES["test"][0]] = _batch(100, 99)
    return files


def write_archive(path: Path, members: dict[str, bytes] | None = None,
                  extra: dict[str, bytes] | None = None) -> Path:
    """A gzipped tar of ``members`` under cifar-10-batches-bin/, and ``extra`` as named."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tarred:
        for name, data in [*((f"{FOLDER}/{n}", d) for n, d in (members or _members()).items()),
                           *(extra or {}).items()]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tarred.addfile(info, io.BytesIO(data))
    return path


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> Iterator[tuple[str, str]]:
    """A generated archive on 127.0.0.1: (its URL, its MD5)."""
    www = tmp_path_factory.mktemp("www")
    archive = write_archive(www / ARCHIVE)
    with serving(www) as url:
        yield f"{url}{ARCHIVE}", hashlib.md5(archive.read_bytes()).hexdigest()


def _common(*extra: str) -> list[str]:
    return ["--data-source", "cifar10", "--net", "mlp", "--output-dir", "runs", "--batch-size",
            "20", "--optimizer", "adam", "--lr", "0.002", "--val-split", "0", "--no-progress",
            "--no-plot", "--log-every", "0", *extra]


def _weights(run_dir: Path) -> dict[str, np.ndarray]:
    from trainer.checkpoint import load_bundle

    folder = run_dir / "checkpoints"
    bundle = load_bundle(folder / json.loads((folder / "latest.json").read_text())["file"])
    return {k: v.asnumpy() for k, v in bundle.params.items() if not isinstance(v, str)}


def test_the_authors_archive_and_sum_are_the_sources_own():
    assert Cifar10.urls == ("https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz",)
    assert Cifar10.md5 == "c32a1d4ab5d03f1284b67883e8d87530"
    assert RECORD == 3073


def test_cifar10_downloads_learns_with_crops_and_flips_and_resumes_exactly(
        served, tmp_path, monkeypatch):
    url, md5 = served
    monkeypatch.setattr(Cifar10, "urls", (url,))
    monkeypatch.setattr(Cifar10, "md5", md5)
    straight = train_here(_common("--augment", "--epochs", "2", "--run-name", "straight"),
                          tmp_path)
    assert straight.returncode == 0, straight.stderr
    assert [p.name for p in (tmp_path / "data" / "cifar10").iterdir()] == [ARCHIVE]
    history = json.loads((tmp_path / "runs/straight/history.json").read_text())
    assert history["history"]["val_accuracy"][-1] >= 0.6
    first = train_here(_common("--augment", "--epochs", "1", "--run-name", "resumed"), tmp_path)
    assert first.returncode == 0, first.stderr
    resumed = train_here(_common("--augment", "--epochs", "2", "--run-name", "resumed",
                                 "--resume", "auto"), tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    a, b = _weights(tmp_path / "runs/straight"), _weights(tmp_path / "runs/resumed")
    assert a.keys() == b.keys() and [k for k in a if not np.array_equal(a[k], b[k])] == []
    from trainer.checkpoint import load_bundle

    record = load_bundle(tmp_path / "runs/straight/checkpoints/best.ckpt").meta.run.data
    assert record["class_names"] == list(CLASSES) and record["channels"] == 3
    assert record["kind"] == "natural" and record["image_size"] == 32


def test_the_extracted_folder_is_read_as_the_archive(tmp_path):
    folder = tmp_path / FOLDER
    folder.mkdir()
    for name, data in _members(per_batch=10).items():
        (folder / name).write_bytes(data)
    source = make_source(TrainConfig(data_source="cifar10", data_dir=str(tmp_path)).validate())
    info = source.prepare(fetch=False)
    assert info.class_names == CLASSES and (info.channels, info.image_size) == (3, 32)
    assert info.counts == {"train": 50, "test": 100}
    images, labels = source.load("train")
    assert images.shape == (50, 3, 32, 32) and images.dtype == np.uint8
    first = np.frombuffer(_members(per_batch=10)[BATCHES["train"][0]][:RECORD], np.uint8)
    assert labels[0] == first[0] and np.array_equal(images[0].reshape(-1), first[1:])


@pytest.mark.parametrize("case, first", [
    ("dotdot", "holds a member named '../x' ('..' path component); nothing of it was read"),
    ("link", "holds a member named 'cifar-10-batches-bin/escape' (a link or a special file)"),
    ("length", "holds 3,074 bytes, not a whole number of 3,073-byte records"),
    ("labels", "has label 4, but batches.meta.txt names 3 classes (0-2)"),
])
def test_a_broken_or_hostile_archive_is_one_paragraph_and_caches_nothing(tmp_path, case,
                                                                        first):
    members, extra = _members(per_batch=10), {}
    if case == "dotdot":
        extra = {"../x": b"x"}
    elif case == "length":
        members["data_batch_3.bin"] = b"\0" * (RECORD + 1)
    elif case == "labels":
        members[META] = b"a\nb\nc\n"
    path = write_archive(tmp_path / "data" / "cifar10" / ARCHIVE, members, extra)
    if case == "link":
        with tarfile.open(path, "w:gz") as tarred:
            info = tarfile.TarInfo(f"{FOLDER}/escape")
            info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
            tarred.addfile(info)
    result = train_here(_common("--epochs", "1"), tmp_path)
    assert result.returncode == 2, result.stderr
    message = " ".join(result.stderr.split())
    assert message.startswith("error: CIFAR-10 ") and first in message, message
    assert "Traceback" not in result.stderr and message.count("error:") == 1
    decoded = tmp_path / ".cache" / "mstrain" / "decoded"
    assert not decoded.exists() or not any(decoded.iterdir())
    assert not (tmp_path / "x").exists() and not (tmp_path / "data" / "x").exists()


def test_an_archive_that_does_not_match_its_sum_is_not_kept(served, tmp_path, monkeypatch):
    url, _ = served
    monkeypatch.setattr(Cifar10, "urls", (url,))
    monkeypatch.setattr(Cifar10, "md5", "0" * 32)
    result = train_here(_common("--epochs", "1"), tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith("error: Could not download CIFAR-10 into data/cifar10; "
                                    "every source failed")
    assert "md5 checksum mismatch" in result.stderr
    assert [p for p in (tmp_path / "data" / "cifar10").rglob("*") if p.is_file()] == []


def test_cifar10_does_not_stream(tmp_path):
    write_archive(tmp_path / "data" / "cifar10" / ARCHIVE, _members(per_batch=10))
    result = train_here(_common("--epochs", "1", "--no-data-cache"), tmp_path)
    assert result.returncode == 2
    assert "data source 'cifar10' has no reader that streams every epoch" in \
        " ".join(result.stderr.split())


def test_crops_and_flips_are_drawn_from_the_generator_and_keep_the_pixels():
    images = np.random.default_rng(0).normal(size=(6, 3, 8, 8)).astype(np.float32)
    fill = np.array([-1.0, -2.0, -3.0])
    once = crop_and_flip(images, np.random.default_rng((1, 2, 3, 0)), fill)
    again = crop_and_flip(images, np.random.default_rng((1, 2, 3, 0)), fill)
    other = crop_and_flip(images, np.random.default_rng((1, 2, 4, 0)), fill)
    assert np.array_equal(once, again) and not np.array_equal(once, other)
    assert once.shape == images.shape and once.dtype == np.float32
    for n in range(6):  # every pixel is the image's own (maybe mirrored) or the channel's fill
        for c in range(3):
            known = set(images[n, c].ravel()) | {np.float32(fill[c])}
            assert set(once[n, c].ravel()) <= known
