"""``train.py --eval-only``: per-class table, confusion matrix, plots and evaluation.json."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import run_train
from trainer.evaluation import Evaluation, confusion_matrix, softmax
from trainer.serving.evaluate import format_report, output_folder

pytest_plugins = ["tests.trained"]

ACCURACY_LINE = re.compile(r"test accuracy (\d\.\d+) \((\d+)/(\d+)\), test loss (\d+\.\d+)")
TABLE_ROW = re.compile(r"^\s*(\d+)\s+(\d+)\s+(\d+)\s+(\d\.\d{4}|-)\s+(\d\.\d{4}|-)$")


# ------------------------------------------------------------------------------- unit tests
def test_confusion_matrix_counts_pairs():
    matrix = confusion_matrix(np.array([0, 0, 1, 2, 2, 2]), np.array([0, 1, 1, 2, 0, 2]), 3)
    assert matrix.tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 2]]


def test_per_class_rows_follow_the_matrix():
    ev = Evaluation(matrix=np.array([[3, 1, 0], [0, 0, 0], [2, 0, 4]]), loss=0.5, mistakes=[])
    assert (ev.count, ev.correct, ev.accuracy) == (10, 7, 0.7)
    rows = ev.per_class()
    assert [r["count"] for r in rows] == [4, 0, 6]
    assert [r["correct"] for r in rows] == [3, 0, 4]
    assert rows[0]["accuracy"] == 0.75 and rows[2]["accuracy"] == pytest.approx(4 / 6)
    assert rows[1]["accuracy"] is None  # no samples of class 1
    assert rows[0]["precision"] == pytest.approx(3 / 5) and rows[1]["precision"] == 0.0
    text = format_report(ev)
    assert ["1", "0", "0", "-", "0.0000"] in [line.split() for line in text.splitlines()]
    assert text.splitlines()[-1].split() == ["2", "2", "0", "4"]


def test_softmax_is_stable_and_normalised():
    probs = softmax(np.array([[1000.0, 1000.0, -1000.0], [0.0, 0.0, 0.0]]))
    assert np.allclose(probs.sum(axis=1), 1.0)
    assert np.allclose(probs[0], [0.5, 0.5, 0.0]) and np.allclose(probs[1], 1 / 3)


def test_output_folder_is_the_run_directory_or_beside_the_checkpoint(tmp_path):
    assert output_folder(tmp_path / "run" / "checkpoints" / "best.ckpt") == tmp_path / "run"
    assert output_folder(tmp_path / "models" / "lenet.ckpt") == tmp_path / "models"


# --------------------------------------------------------------------------- end to end
@pytest.fixture(scope="module")
def evaluated(trained_lenet):
    result = run_train(["--eval-only", "--ckpt", str(trained_lenet.run_dir), "--data-dir",
                        str(trained_lenet.data_dir)], cwd=trained_lenet.work)
    assert result.returncode == 0, result.stderr
    return result


def test_report_agrees_with_itself_and_with_training(trained_lenet, evaluated):
    report = json.loads((trained_lenet.run_dir / "evaluation.json").read_text())
    count = trained_lenet.test_count
    matrix = np.array(report["confusion_matrix"])
    assert matrix.shape == (10, 10) and matrix.sum() == count == report["count"]
    assert report["correct"] == np.trace(matrix)
    assert report["accuracy"] == pytest.approx(np.trace(matrix) / count)
    for k, row in enumerate(report["per_class"]):
        assert (row["class"], row["count"], row["correct"]) == (k, matrix[k].sum(), matrix[k, k])
        assert row["accuracy"] == pytest.approx(matrix[k, k] / matrix[k].sum())
        assert row["precision"] == pytest.approx(matrix[k, k] / matrix[:, k].sum())
    # The run directory names its best bundle, whose test score training recorded at its end.
    assert report["accuracy"] == pytest.approx(trained_lenet.test("best")["test_accuracy"],
                                               abs=1e-9)
    assert report["accuracy"] > 0.8  # it learned, so the matrix is mostly diagonal
    shown = report["mistakes_shown"]
    assert len(shown) == min(36, count - report["correct"])
    assert all(m["label"] != m["predicted"] for m in shown)
    assert [m["probability"] for m in shown] == sorted((m["probability"] for m in shown),
                                                       reverse=True)
    assert Path(report["checkpoint"]) == trained_lenet.best
    assert f"Using {trained_lenet.best}" in evaluated.stdout  # the log says which file


def test_printed_table_matches_the_json(trained_lenet, evaluated):
    report = json.loads((trained_lenet.run_dir / "evaluation.json").read_text())
    out = evaluated.stdout
    match = ACCURACY_LINE.search(out)
    assert match, out
    assert (int(match.group(2)), int(match.group(3))) == (report["correct"], report["count"])
    assert report["count"] == trained_lenet.test_count
    assert float(match.group(4)) == pytest.approx(report["loss"], abs=1e-4)
    rows = [TABLE_ROW.match(line) for line in out.splitlines()]
    rows = [m for m in rows if m]
    assert [int(m.group(1)) for m in rows] == list(range(10))
    assert [int(m.group(3)) for m in rows] == [r["correct"] for r in report["per_class"]]
    lines = out.splitlines()
    start = lines.index("Confusion matrix (rows: true class, columns: predicted class):")
    printed = [[int(v) for v in line.split()[1:]] for line in lines[start + 2:start + 12]]
    assert printed == report["confusion_matrix"]


def test_plots_are_valid_pngs_and_nothing_half_written(trained_lenet, evaluated):
    for name in ("confusion.png", "mistakes.png"):
        path = trained_lenet.run_dir / name
        with Image.open(path) as image:
            assert image.format == "PNG" and min(image.size) > 200
            image.verify()
    leftovers = [p for p in trained_lenet.run_dir.rglob("*") if ".tmp" in p.name]
    assert leftovers == []


def test_matrix_and_loss_match_a_forward_pass_done_here(trained_lenet, evaluated):
    import mindspore as ms

    from trainer.data.idx import read_idx
    from trainer.serving.loading import load_network
    from trainer.serving.predict import network_inputs

    report = json.loads((trained_lenet.run_dir / "evaluation.json").read_text())
    test = trained_lenet.data_dir / "test"
    images, labels = (read_idx(test / name) for name in ("t10k-images-idx3-ubyte",
                                                         "t10k-labels-idx1-ubyte"))
    loaded = load_network(trained_lenet.run_dir)
    logits = loaded.cell(ms.Tensor(network_inputs(images, 32))).asnumpy().astype(np.float64)
    log_probs = np.log(softmax(logits))
    loss = -log_probs[np.arange(len(labels)), labels].mean()
    assert report["loss"] == pytest.approx(loss, abs=1e-5)
    expected = confusion_matrix(labels, logits.argmax(axis=1), 10)
    assert report["confusion_matrix"] == expected.tolist()
