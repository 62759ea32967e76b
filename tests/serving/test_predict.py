"""``predict.py``: MNIST-style preprocessing of pictures, and predictions from a checkpoint."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from trainer.cli.predict import main
from trainer.data.synthetic import render_digit
from trainer.serving.predict import collect_inputs, fit_digit, to_mnist

pytest_plugins = ["tests.trained"]

MIN_ACCURACY = 0.8  # the shared model scores 0.95-0.97 on MNIST-style digits
TEXT_LINE = re.compile(r"^(.+): (\d) \((\d\.\d{3})\)  (\d) \((\d\.\d{3})\)  (\d) \((\d\.\d{3})\)$")


def _picture(digit: int, rng: np.random.Generator, kind: int) -> Image.Image:
    """A generated digit as a person would save it: dark ink on light paper, in several forms."""
    ink = 255 - render_digit(digit, rng)  # dark digit on white, 28x28
    big = Image.fromarray(ink).resize((84, 84), Image.Resampling.BILINEAR)
    if kind == 0:
        return Image.fromarray(ink)  # MNIST-sized, grayscale
    if kind == 1:  # dark blue ink on cream paper, 100 wide and 140 tall, off-centre
        page = Image.new("RGB", (100, 140), (250, 246, 232))
        blue = Image.merge("RGB", [big, big, big.point(lambda v: min(255, v + 60))])
        page.paste(blue, (6, 40))
        return page
    if kind == 2:  # transparent background, black ink in the alpha channel
        alpha = Image.fromarray(255 - np.asarray(big))
        return Image.merge("RGBA", [Image.new("L", big.size, 0)] * 3 + [alpha])
    return big.convert("RGB")  # an upscaled RGB picture


@pytest.fixture(scope="module")
def pictures(tmp_path_factory) -> tuple[Path, dict[str, int]]:
    """Forty generated digits (four per class) saved as PNG and JPEG files of various kinds."""
    folder = tmp_path_factory.mktemp("pictures")
    rng = np.random.default_rng(7)
    truth = {}
    for i in range(40):
        digit, kind = i % 10, (i // 10) % 4
        suffix = ".jpg" if kind == 3 else ".png"
        path = folder / f"{i:02d}-{digit}{suffix}"
        _picture(digit, rng, kind).save(path, **({"quality": 92} if suffix == ".jpg" else {}))
        truth[str(path)] = digit
    (folder / "notes.txt").write_text("not an image, and not picked up from a folder")
    return folder, truth


# ------------------------------------------------------------------------ preprocessing
def _bbox(image: np.ndarray) -> tuple[int, int]:
    rows, cols = np.flatnonzero(image.any(axis=1)), np.flatnonzero(image.any(axis=0))
    return rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1


def _centre(image: np.ndarray) -> tuple[float, float]:
    ys, xs = np.indices(image.shape)
    total = image.sum(dtype=np.float64)
    return (ys * image).sum() / total, (xs * image).sum() / total


def test_fit_digit_follows_the_mnist_convention():
    page = np.full((140, 100), 255.0)  # white paper, 100 wide and 140 tall
    page[20:80, 60:80] = 0.0  # a dark bar 60 tall and 20 wide, far from the centre
    out = fit_digit(page)
    assert out.shape == (28, 28) and out.dtype == np.uint8
    assert out[0].max() == out[-1].max() == out[:, 0].max() == out[:, -1].max() == 0
    height, width = _bbox(out > 0)
    assert height == 20 and 6 <= width <= 8  # fits 20x20, aspect ratio kept
    cy, cx = _centre(out.astype(np.float64))
    assert abs(cy - 14) <= 0.5 and abs(cx - 14) <= 0.5
    assert out.max() == 255


def test_fit_digit_detects_the_background_either_way():
    rng = np.random.default_rng(0)
    light_digit = render_digit(3, rng, size=56).astype(np.float64)  # white on black
    assert np.array_equal(fit_digit(light_digit), fit_digit(255.0 - light_digit))


def test_blank_picture_gives_an_empty_digit():
    assert not fit_digit(np.full((50, 40), 200.0)).any()


def test_transparent_background_counts_as_paper():
    rng = np.random.default_rng(1)
    on_paper = _picture(5, rng, 1).convert("L")  # any picture of dark ink on light paper
    ink = 255 - np.asarray(on_paper)
    clear = Image.merge("RGBA", [Image.new("L", on_paper.size, 0)] * 3 + [Image.fromarray(ink)])
    gray = Image.fromarray(255 - ink)  # the same ink on pure white
    assert np.abs(to_mnist(clear).astype(int) - to_mnist(gray).astype(int)).max() <= 1


def test_folder_inputs_skip_other_files(pictures):
    folder, truth = pictures
    inputs = collect_inputs([folder])
    assert inputs.names == sorted(truth) and inputs.images.shape == (40, 28, 28)
    assert inputs.labels is None


# ---------------------------------------------------------------------------- end to end
def test_predicts_pictures_of_any_size_and_colour(trained_lenet, pictures, predict_cli):
    folder, truth = pictures
    single = sorted(truth)[0]
    result = predict_cli("--ckpt", str(trained_lenet.run_dir), str(folder), single, "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    rows = report["predictions"]
    assert [r["input"] for r in rows] == [*sorted(truth), single]
    assert report["net"] == "lenet" and Path(report["checkpoint"]) == trained_lenet.best
    for row in rows:
        probs = [t["probability"] for t in row["top"]]
        assert len(row["top"]) == 3 and len({t["class"] for t in row["top"]}) == 3
        assert probs == sorted(probs, reverse=True) and 0 <= probs[-1] and sum(probs) <= 1 + 1e-9
    right = [row["top"][0]["class"] == truth[row["input"]] for row in rows[:-1]]
    assert np.mean(right) >= MIN_ACCURACY, rows
    assert rows[-1]["top"] == rows[0]["top"]  # the same file, alone or in a folder


def test_text_output(trained_lenet, pictures, capsys):
    folder, truth = pictures
    files = sorted(truth)[:3]
    assert main(["--ckpt", str(trained_lenet.checkpoint), *files]) == 0
    lines = capsys.readouterr().out.splitlines()
    matches = [TEXT_LINE.match(line) for line in lines]
    assert all(matches), lines
    assert [m.group(1) for m in matches] == files


def test_idx_file_with_labels_scores_like_the_recorded_test_score(trained_lenet, predict_cli):
    test = trained_lenet.data_dir / "test"
    result = predict_cli("--ckpt", str(trained_lenet.run_dir), "--json",
                         str(test / "t10k-images-idx3-ubyte"),
                         "--labels", str(test / "t10k-labels-idx1-ubyte"))
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    count = trained_lenet.test_count
    assert report["count"] == count and len(report["predictions"]) == count
    assert report["predictions"][5]["input"].endswith("t10k-images-idx3-ubyte[5]")
    assert report["accuracy"] == report["correct"] / count
    assert sum(row["top"][0]["class"] == row["label"] for row in report["predictions"]) == \
        report["correct"]
    # Like with like: the run directory stands for best.ckpt, whose score on these same test
    # digits training recorded at its end. Predict batches them in other shapes, and the CPU's
    # kernels may round those sums otherwise, so only a digit whose two most likely classes are
    # within rounding of each other may be decided differently.
    scored = round(trained_lenet.test("best")["test_accuracy"] * count)
    near_ties = sum(row["top"][0]["probability"] - row["top"][1]["probability"] < 1e-4
                    for row in report["predictions"])
    assert abs(report["correct"] - scored) <= near_ties, (report["correct"], scored)


# --------------------------------------------------------------------------------- mistakes
def _error(capsys, argv: list[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "error: " in err and "Traceback" not in err
    # The error paragraph comes last; the log may say first which checkpoint was read.
    return " ".join(err[err.index("error: "):].split())


def test_text_file_named_png(tmp_path, capsys):
    fake = tmp_path / "digit.png"
    fake.write_text("this is not a picture")
    message = _error(capsys, ["--ckpt", "unused.ckpt", str(fake)])
    assert str(fake) in message and "cannot be read" in message


def test_truncated_png(tmp_path, capsys):
    good, cut = tmp_path / "good.png", tmp_path / "cut.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (60, 60), dtype=np.uint8)).save(good)
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    message = _error(capsys, ["--ckpt", "unused.ckpt", str(tmp_path / "good.png"), str(cut)])
    assert str(cut) in message and "truncated" in message


@pytest.mark.parametrize("make, expected", [
    (lambda d: d / "missing.png", "does not exist"),
    (lambda d: (d / "empty").mkdir() or d / "empty", "holds no images"),
])
def test_missing_inputs(tmp_path, capsys, make, expected):
    path = make(tmp_path)
    message = _error(capsys, ["--ckpt", "unused.ckpt", str(path)])
    assert str(path) in message and expected in message


def test_labels_need_an_idx_input(tmp_path, capsys, pictures):
    folder, truth = pictures
    message = _error(capsys, ["--ckpt", "x", sorted(truth)[0], "--labels", str(tmp_path / "l")])
    assert "--labels" in message and "IDX" in message


def test_checkpoint_of_another_network(trained_lenet, pictures, capsys):
    folder, truth = pictures
    message = _error(capsys, ["--ckpt", str(trained_lenet.run_dir), "--net", "mlp",
                              sorted(truth)[0]])
    assert "does not match the network" in message
    assert "conv1.weight" in message and "dense_relu_sequential.0.weight" in message
    assert "trained with --net lenet" in message


# ------------------------------------------------------------- no silent wrong answers
def test_a_16_bit_png_gives_the_digit_of_its_8_bit_copy(tmp_path):
    rng = np.random.default_rng(3)
    eight = 255 - render_digit(7, rng)  # dark ink on white, uint8
    Image.fromarray(eight).save(tmp_path / "eight.png")
    Image.fromarray(eight.astype(np.uint16) * 257).save(tmp_path / "sixteen.png")
    with Image.open(tmp_path / "sixteen.png") as check:
        assert check.mode.startswith("I")  # really 16 bits on disk
    inputs = collect_inputs([tmp_path / "eight.png", tmp_path / "sixteen.png"])
    assert inputs.images[0].any()
    assert np.abs(inputs.images[0].astype(int) - inputs.images[1].astype(int)).max() <= 1


def test_blank_pictures_are_flagged_not_silently_classified(trained_lenet, tmp_path,
                                                            predict_cli):
    Image.new("L", (40, 40), 255).save(tmp_path / "white.png")
    Image.new("L", (40, 40), 0).save(tmp_path / "black.png")
    Image.new("RGBA", (40, 40), (0, 0, 0, 0)).save(tmp_path / "clear.png")
    noisy = np.clip(np.random.default_rng(0).normal(240, 3, (40, 40)), 0, 255).astype(np.uint8)
    Image.fromarray(noisy).save(tmp_path / "paper.png")  # paper texture, no ink
    digit = tmp_path / "digit.png"
    Image.fromarray(255 - render_digit(2, np.random.default_rng(1))).save(digit)
    names = ["white.png", "black.png", "clear.png", "paper.png"]
    result = predict_cli("--ckpt", str(trained_lenet.run_dir), "--json",
                         *(str(tmp_path / n) for n in names), str(digit))
    assert result.returncode == 0, result.stderr
    rows = {Path(r["input"]).name: r for r in json.loads(result.stdout)["predictions"]}
    assert all(rows[n].get("blank") is True for n in names)
    assert "blank" not in rows["digit.png"]
    for name in names:
        assert f"{name} holds no digit" in result.stderr


def test_an_idx_file_named_without_gz_is_found_gzipped(trained_lenet, tmp_path, predict_cli):
    """The README's example names t10k-images-idx3-ubyte; only the .gz may be there."""
    import shutil

    source = trained_lenet.data_dir / "test"
    for name in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        with open(source / name, "rb") as raw, open(tmp_path / f"{name}.gz", "wb") as out:
            import gzip

            with gzip.GzipFile(fileobj=out, mode="wb") as packed:
                shutil.copyfileobj(raw, packed)
    result = predict_cli("--ckpt", str(trained_lenet.run_dir), str(tmp_path /
                                                                  "t10k-images-idx3-ubyte"),
                         "--labels", str(tmp_path / "t10k-labels-idx1-ubyte"))
    assert result.returncode == 0, result.stderr
    assert re.search(r"Accuracy: 0\.\d+ \(\d+/400\)", result.stdout), result.stdout
