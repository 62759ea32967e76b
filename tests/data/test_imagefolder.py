"""A folder of images as a data source: train/<class>/ and test/<class>/ (or a seeded, stratified
test split), PNG and JPEG, grayscale and colour, mixed sizes resized and said once, decoded once
into the cache; trained until it learns and resumed exactly; every bad folder one paragraph,
exit 2, nothing cached."""

from __future__ import annotations

import json
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import run_train, train_here

CLASSES = ("bottom", "middle", "top")


def picture(label: int, rng, side: int = 20, colour: bool = True) -> Image.Image:
    """A learnable picture: a bright band at the class's height, in a colour of its own."""
    pixels = rng.integers(0, 70, (side, side, 3)).astype(np.uint8)
    rows = slice(side * (2 - label) // 3, side * (3 - label) // 3)
    pixels[rows, :, label] = 230
    image = Image.fromarray(pixels)
    return image if colour else image.convert("L")


def make_folder(root: Path, *, per_class: int = 40, test: int = 0, suffix: str = ".png",
                colour: bool = True, odd_size: int = 0, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    for split, count in (("train", per_class), ("test", test)):
        for label, name in enumerate(CLASSES if count else ()):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                side = 24 if i < odd_size else 20
                picture(label, rng, side, colour).save(folder / f"{i:03d}{suffix}")
    return root


def _common(data: Path, *extra: str) -> list[str]:
    return ["--data-source", "imagefolder", "--data-dir", str(data), "--net", "mlp",
            "--output-dir", "runs", "--batch-size", "12", "--optimizer", "adam", "--lr", "0.003",
            "--no-progress", "--no-plot", "--log-every", "0", *extra]


def _weights(run_dir: Path) -> dict[str, np.ndarray]:
    from trainer.checkpoint import load_bundle

    folder = run_dir / "checkpoints"
    bundle = load_bundle(folder / json.loads((folder / "latest.json").read_text())["file"])
    return {k: v.asnumpy() for k, v in bundle.params.items() if not isinstance(v, str)}


def test_colour_pngs_without_a_test_folder_learn_and_resume_exactly(tmp_path):
    data = make_folder(tmp_path / "photos", odd_size=3)
    before = sorted(p.relative_to(data) for p in data.rglob("*"))
    straight = train_here(_common(data, "--augment", "--epochs", "2", "--run-name", "a"),
                          tmp_path)
    assert straight.returncode == 0, straight.stderr
    out = straight.stdout
    assert out.count("9 of the 120 images in") == 1 and "are not 20x20 pixels" in out
    assert "Decoding the train split of imagefolder once" in out
    history = json.loads((tmp_path / "runs/a/history.json").read_text())
    assert history["history"]["val_accuracy"][-1] >= 0.8
    assert history["test"]["final"]["test_accuracy"] >= 0.8
    first = train_here(_common(data, "--augment", "--epochs", "1", "--run-name", "b"), tmp_path)
    assert first.returncode == 0, first.stderr
    assert "Decoding" not in first.stdout  # decoded once, read from the cache since
    resumed = train_here(_common(data, "--augment", "--epochs", "2", "--run-name", "b",
                                 "--resume", "auto"), tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    a, b = _weights(tmp_path / "runs/a"), _weights(tmp_path / "runs/b")
    assert a.keys() == b.keys() and [k for k in a if not np.array_equal(a[k], b[k])] == []
    from trainer.checkpoint import load_bundle

    record = load_bundle(tmp_path / "runs/a/checkpoints/best.ckpt").meta.run.data
    assert record["class_names"] == list(CLASSES)
    assert (record["channels"], record["image_size"]) == (3, 20)
    # The seeded, stratified test split: a fifth of each class, the same for every run.
    assert "the test split's 24 are scored once" in straight.stdout
    assert sorted(p.relative_to(data) for p in data.rglob("*")) == before  # nothing written


def test_grayscale_jpegs_with_a_test_folder_train_on_one_channel(tmp_path):
    data = make_folder(tmp_path / "scans", per_class=30, test=8, suffix=".jpg", colour=False)
    result = train_here(_common(data, "--epochs", "2", "--val-split", "0", "--run-name", "g",
                                "--image-size", "16"), tmp_path)
    assert result.returncode == 0, result.stderr
    assert "validating on the test split's 24 images" in result.stdout
    history = json.loads((tmp_path / "runs/g/history.json").read_text())
    assert history["history"]["val_accuracy"][-1] >= 0.8
    from trainer.checkpoint import load_bundle

    record = load_bundle(tmp_path / "runs/g/checkpoints/best.ckpt").meta.run.data
    assert (record["channels"], record["image_size"]) == (1, 16)


def _png_header(path: Path, width: int, height: int) -> None:
    """A PNG whose header declares ``width`` x ``height`` and holds no pixels."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(
            ">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b""))


def _empty_class(data: Path) -> None:
    for path in (data / "train" / "top").iterdir():
        path.unlink()


def _one_class(data: Path) -> None:
    for name in CLASSES[1:]:
        for path in (data / "train" / name).iterdir():
            path.unlink()
        (data / "train" / name).rmdir()


def _link_out(data: Path) -> None:
    outside = data.parent / "elsewhere.png"
    picture(0, np.random.default_rng(1)).save(outside)
    os.symlink(outside, data / "train" / "top" / "zz-link.png")


@pytest.mark.parametrize("damage, first", [
    (_empty_class, "Class folder {data}/train/top holds no images"),
    (_one_class, "Image folder {data}/train holds one class folder only ('bottom')"),
    (lambda d: (d / "train" / "top" / "zz.png").write_text("not a picture"),
     "Image {data}/train/top/zz.png cannot be read"),
    (lambda d: (d / "train" / "top" / "notes.txt").write_text("hi"),
     "File {data}/train/top/notes.txt is not a PNG, JPEG or BMP image"),
    (lambda d: _png_header(d / "train" / "top" / "zz.png", 0, 5),
     "Image {data}/train/top/zz.png cannot be read"),
    (lambda d: _png_header(d / "train" / "top" / "zz.png", 10_000, 10_000),
     "Image {data}/train/top/zz.png is 10000x10000 pixels, more than the limit of 40,000,000"),
    (_link_out, "Image {data}/train/top/zz-link.png is a link to"),
    (lambda d: (d / "test" / "extra").mkdir(parents=True),
     "Image folder {data}/test has the class folder 'extra', which {data}/train does not have"),
])
def test_a_bad_folder_is_one_paragraph_and_caches_nothing(tmp_path, damage, first):
    data = make_folder(tmp_path / "data", per_class=6)
    damage(data)
    result = train_here(_common(data, "--epochs", "1"), tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    message = " ".join(result.stderr.split())
    assert message.startswith("error: " + first.format(data=data)), message
    assert "Traceback" not in result.stderr and "Warning" not in result.stderr
    decoded = tmp_path / ".cache" / "mstrain" / "decoded"
    assert not decoded.exists() or not any(decoded.iterdir())


def test_a_folder_is_named_or_refused_as_a_user_runs_it(tmp_path):
    result = run_train(["--data-source", "imagefolder", "--epochs", "1"], cwd=tmp_path,
                       timeout=120)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "pass --data-dir DIR" in " ".join(result.stderr.split())
