"""After training on colour photos: evaluation's table and plots name the classes (mistakes shown
in colour), predict.py takes colour pictures for a 3-channel model and prints class names, and
export takes the input shape from the checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import train_here
from tests.data.test_imagefolder import CLASSES, make_folder, picture
from tests.trained import run_predict


@pytest.fixture(scope="module")
def photos_run(tmp_path_factory) -> Path:
    """An MLP trained for 2 epochs on a folder of colour photos (3 classes, 20x20)."""
    work = tmp_path_factory.mktemp("photos")
    make_folder(work / "photos")
    result = train_here(["--data-source", "imagefolder", "--data-dir", "photos", "--net", "mlp",
                         "--epochs", "2", "--batch-size", "12", "--optimizer", "adam", "--lr",
                         "0.003", "--output-dir", "runs", "--run-name", "mlp", "--no-progress",
                         "--no-plot", "--log-every", "0"], work)
    assert result.returncode == 0, result.stderr
    return work


def test_evaluation_names_the_classes(photos_run):
    result = train_here(["--eval-only", "--ckpt", "runs/mlp", "--data-source", "imagefolder",
                         "--data-dir", "photos"], photos_run)
    assert result.returncode == 0, result.stderr
    rows = [line.split() for line in result.stdout.splitlines()
            if line.strip().split(" ")[0] in CLASSES]
    assert [row[0] for row in rows] == list(CLASSES)
    assert "Classes: 0 bottom, 1 middle, 2 top" in result.stdout
    report = json.loads((photos_run / "runs/mlp/evaluation.json").read_text())
    assert [row["name"] for row in report["per_class"]] == list(CLASSES)
    with Image.open(photos_run / "runs/mlp/confusion.png") as image:
        assert image.format == "PNG"


def test_evaluating_on_other_data_is_refused(photos_run, digits_dir):
    result = train_here(["--eval-only", "--ckpt", "runs/mlp", "--data-dir", str(digits_dir)],
                        photos_run)
    assert result.returncode == 2
    assert "was trained on 3-channel images of 3 classes, but --data-source mnist" in \
        " ".join(result.stderr.split())


def test_mistakes_of_colour_images_are_drawn_in_colour(tmp_path):
    from trainer.evaluation import Evaluation, Mistake
    from trainer.serving.evaluate import plot_mistakes

    red = np.zeros((8, 8, 3), dtype=np.float32)
    red[..., 0] = 1.0
    ev = Evaluation(np.array([[3, 1], [0, 4]]), 0.5,
                    [Mistake(5, 0, 1, 0.9, red)], class_names=["cat", "dog"])
    plot_mistakes(ev, tmp_path / "m.png")
    with Image.open(tmp_path / "m.png") as image:
        pixels = np.asarray(image.convert("RGB")).astype(int)
    assert ((pixels[..., 0] - pixels[..., 1]) > 150).any()  # red pixels: drawn in colour


def test_predict_reads_colour_pictures_and_prints_class_names(photos_run, tmp_path):
    rng = np.random.default_rng(7)
    for label, name in enumerate(CLASSES):
        picture(label, rng, side=60).save(tmp_path / f"{name}.png")  # larger: resized
    result = run_predict(["--ckpt", str(photos_run / "runs/mlp"), str(tmp_path), "--json"],
                         cwd=photos_run)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    predicted = {Path(row["input"]).stem: row["top"][0]["name"] for row in report["predictions"]}
    assert predicted == {name: name for name in CLASSES}
    text = run_predict(["--ckpt", str(photos_run / "runs/mlp"), str(tmp_path / "top.png")],
                       cwd=photos_run)
    assert text.returncode == 0 and text.stdout.startswith(f"{tmp_path / 'top.png'}: top (")


def test_export_takes_the_input_shape_from_the_checkpoint(photos_run):
    result = train_here(["--export", "mindir", "--ckpt", "runs/mlp", "--data-source",
                         "imagefolder", "--data-dir", "photos"], photos_run)
    assert result.returncode == 0, result.stderr
    assert "input [N, 3, 20, 20] float32; outputs match the checkpoint on the first 24 test " \
           "images of the images in photos" in " ".join(result.stdout.split())
