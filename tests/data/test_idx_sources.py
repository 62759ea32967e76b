"""Fashion-MNIST and KMNIST: their IDX files downloaded MD5-checked from their publishers' URLs
(here a server on 127.0.0.1 serving generated files in their place, with those files' sums),
trained until they learn with their class names, resumed exactly; a file that does not match its
sum keeps nothing."""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import train_here
from tests.data.conftest import serving
from trainer.data.download import IdxDataset, Source
from trainer.data.idx import SPLIT_FILES
from trainer.data.sources.fashion_mnist import CLASS_NAMES as FASHION_NAMES
from trainer.data.sources.fashion_mnist import FashionMnist
from trainer.data.sources.kmnist import KMNIST, Kmnist

NAMES = [name for names in SPLIT_FILES.values() for name in names]


@pytest.fixture(scope="module")
def served(tmp_path_factory, digits_gz_dir) -> Iterator[tuple[str, dict[str, str], Path]]:
    """Generated digits' gzipped IDX files on 127.0.0.1: (URL, their MD5 sums, the folder)."""
    www = tmp_path_factory.mktemp("www")
    for split, names in SPLIT_FILES.items():
        for name in names:
            shutil.copy(digits_gz_dir / split / f"{name}.gz", www / f"{name}.gz")
    sums = {f"{n}.gz": hashlib.md5((www / f"{n}.gz").read_bytes()).hexdigest() for n in NAMES}
    with serving(www) as url:
        yield url, sums, www


def _publish(monkeypatch, source_class, url: str, sums: dict[str, str]) -> None:
    """Points a source's download at the local server, with the served files' sums."""
    dataset = source_class.dataset
    monkeypatch.setattr(source_class, "dataset", IdxDataset(
        dataset.title, (Source("files", url, md5=sums),), dataset.hint))


def _common(*extra: str) -> list[str]:
    return ["--net", "mlp", "--output-dir", "runs", "--batch-size", "32", "--optimizer", "adam",
            "--lr", "0.003", "--no-progress", "--no-plot", "--log-every", "0", *extra]


def _weights(run_dir: Path) -> dict[str, np.ndarray]:
    from trainer.checkpoint import load_bundle

    folder = run_dir / "checkpoints"
    bundle = load_bundle(folder / json.loads((folder / "latest.json").read_text())["file"])
    return {k: v.asnumpy() for k, v in bundle.params.items() if not isinstance(v, str)}


def test_the_publishers_sums_and_urls_are_the_sources_own():
    assert FashionMnist.dataset.sources[0].url.startswith(
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/")
    assert KMNIST.sources[0].url.startswith("https://codh.rois.ac.jp/kmnist/")
    for source in (*FashionMnist.dataset.sources, *KMNIST.sources):
        assert sorted(source.md5) == sorted(f"{n}.gz" for n in NAMES)
    assert FASHION_NAMES[0] == "T-shirt/top" and len(FASHION_NAMES) == 10


def test_fashion_mnist_downloads_learns_names_its_classes_and_resumes_exactly(
        served, tmp_path, monkeypatch):
    url, sums, _ = served
    _publish(monkeypatch, FashionMnist, url, sums)
    spec = ["--data-source", "fashion-mnist"]
    straight = train_here(_common(*spec, "--epochs", "2", "--run-name", "straight"), tmp_path)
    assert straight.returncode == 0, straight.stderr
    assert sorted(p.name for p in (tmp_path / "data" / "fashion-mnist" / "train").iterdir()) == \
        sorted(f"{n}.gz" for n in SPLIT_FILES["train"])  # verified, then moved into place
    history = json.loads((tmp_path / "runs/straight/history.json").read_text())
    assert history["history"]["val_accuracy"][-1] >= 0.6
    first = train_here(_common(*spec, "--epochs", "1", "--run-name", "resumed"), tmp_path)
    assert first.returncode == 0, first.stderr
    resumed = train_here(_common(*spec, "--epochs", "2", "--run-name", "resumed", "--resume",
                                 "auto"), tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    a, b = _weights(tmp_path / "runs/straight"), _weights(tmp_path / "runs/resumed")
    assert a.keys() == b.keys() and [k for k in a if not np.array_equal(a[k], b[k])] == []
    evaluated = train_here(["--eval-only", "--ckpt", "runs/straight", *spec], tmp_path)
    assert evaluated.returncode == 0, evaluated.stderr
    assert "T-shirt/top" in evaluated.stdout and "Ankle boot" in evaluated.stdout
    report = json.loads((tmp_path / "runs/straight/evaluation.json").read_text())
    assert report["class_names"] == list(FASHION_NAMES)


def test_kmnist_downloads_and_learns(served, tmp_path, monkeypatch):
    url, sums, _ = served
    _publish(monkeypatch, Kmnist, url, sums)
    result = train_here(_common("--data-source", "kmnist", "--epochs", "2", "--run-name", "k"),
                        tmp_path)
    assert result.returncode == 0, result.stderr
    history = json.loads((tmp_path / "runs/k/history.json").read_text())
    assert history["history"]["val_accuracy"][-1] >= 0.6
    from trainer.checkpoint import load_bundle

    record = load_bundle(tmp_path / "runs/k/checkpoints/best.ckpt").meta.run.data
    assert record["class_names"][:3] == ["o", "ki", "su"] and record["kind"] == "digits"
    assert len(record["mean"]) == 1 and 0 < record["mean"][0] < 1  # computed from the images


def test_a_file_that_does_not_match_its_sum_keeps_nothing(served, tmp_path, monkeypatch):
    url, sums, _ = served
    wrong = {**sums, "t10k-labels-idx1-ubyte.gz": "0" * 32}
    _publish(monkeypatch, Kmnist, url, wrong)
    result = train_here(_common("--data-source", "kmnist", "--epochs", "1"), tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.startswith("error: Could not download KMNIST into data/kmnist; every "
                                    "source failed")
    assert "md5 checksum mismatch" in result.stderr and "t10k-labels-idx1-ubyte.gz" in \
        result.stderr
    folder = tmp_path / "data" / "kmnist"
    assert not [p for p in folder.rglob("*") if p.is_file()]  # nothing half a data set


def test_without_download_the_message_names_the_files_and_the_publisher(tmp_path):
    result = train_here(["--data-source", "fashion-mnist", "--no-download", "--epochs", "1"],
                        tmp_path)
    assert result.returncode == 2
    message = " ".join(result.stderr.split())
    assert message.startswith("error: Fashion-MNIST files are missing under "
                              "data/fashion-mnist: train/train-images-idx3-ubyte")
    assert "fashion-mnist.s3-website" in message and "Traceback" not in message
