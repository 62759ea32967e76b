"""What ``predict`` is given: paths that are not regular files are refused before they are
opened (a FIFO would wait forever, ``/dev/zero`` never ends), and long inputs are summarised.

Every case that could hang runs under a deadline, so a regression fails here within seconds
instead of blocking the suite.
"""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path

import numpy as np
import pytest

from trainer.cli.predict import LONG_INPUT, SHOWN_LINES, _print_text
from trainer.data.idx import write_idx
from trainer.errors import CheckpointError, DataError
from trainer.serving.predict import collect_inputs

DEADLINE = 10  # seconds: each refusal takes milliseconds; a hang is cut off here


@contextlib.contextmanager
def deadline(seconds: int = DEADLINE):
    """Raises TimeoutError in the test if the block has not finished in ``seconds`` (an open of
    a FIFO is interrupted by the signal)."""
    def expire(signum, frame):
        raise TimeoutError(f"still waiting after {seconds} s: the path was opened")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@pytest.fixture
def fifo(tmp_path) -> Path:
    path = tmp_path / "digit.png"
    os.mkfifo(path)
    return path


@pytest.fixture
def idx_images(tmp_path) -> Path:
    path = tmp_path / "images-idx3-ubyte"
    write_idx(path, np.zeros((3, 28, 28), dtype=np.uint8))
    return path


def _special(kind: str, fifo: Path) -> tuple[Path, str]:
    return (fifo, "is a FIFO (named pipe)") if kind == "fifo" else \
        (Path("/dev/zero"), "is a character device")


@pytest.mark.parametrize("kind", ["fifo", "dev-zero"])
def test_an_input_that_is_not_a_file_is_refused(fifo, kind):
    path, what = _special(kind, fifo)
    with deadline(), pytest.raises(DataError) as info:
        collect_inputs([path])
    message = " ".join(str(info.value).split())
    assert message.startswith(f"Input {path} {what}, not a regular file, so it is not read")


@pytest.mark.parametrize("kind", ["fifo", "dev-zero"])
def test_labels_that_are_not_a_file_are_refused(fifo, idx_images, kind):
    path, what = _special(kind, fifo)
    with deadline(), pytest.raises(DataError) as info:
        collect_inputs([idx_images], labels=path)
    message = " ".join(str(info.value).split())
    assert message.startswith(f"Labels file {path} {what}, not a regular file")
    assert "--labels" in message


def test_a_fifo_in_a_folder_of_images_is_passed_over(fifo, tmp_path):
    from PIL import Image

    Image.new("L", (28, 28), 0).save(tmp_path / "real.png")
    with deadline():
        inputs = collect_inputs([tmp_path])
    assert inputs.names == [str(tmp_path / "real.png")]


@pytest.mark.parametrize("kind", ["fifo", "dev-zero"])
def test_a_checkpoint_that_is_not_a_file_is_refused(fifo, kind):
    from trainer.checkpoint import read_checkpoint

    path, what = _special(kind, fifo)
    with deadline(), pytest.raises(CheckpointError) as info:
        read_checkpoint(path)
    assert " ".join(str(info.value).split()).startswith(
        f"Checkpoint {str(path)!r} {what}, not a regular file")


# ----------------------------------------------------------------------- long inputs summarised
def _report(count: int, labelled: bool = True) -> dict:
    rows = []
    for i in range(count):
        top = [{"class": i % 10, "probability": 0.9}, {"class": (i + 1) % 10, "probability": 0.1}]
        row = {"input": f"t10k-images-idx3-ubyte[{i}]", "top": top}
        if labelled:
            row["label"] = i % 10 if i % 7 else (i + 3) % 10  # every 7th is wrong
        rows.append(row)
    rows[4]["blank"] = True
    report = {"checkpoint": "x.ckpt", "net": "lenet", "count": count, "predictions": rows}
    if labelled:
        correct = sum(r["top"][0]["class"] == r["label"] for r in rows)
        report.update(correct=correct, accuracy=correct / count)
    return report


def test_a_long_input_prints_a_few_lines_and_a_summary(capsys):
    report = _report(10_000)
    _print_text(report)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) <= SHOWN_LINES + 5
    assert all(line.startswith("t10k-images-idx3-ubyte[") for line in lines[:SHOWN_LINES])
    assert lines[SHOWN_LINES] == ("... and 9,990 more images (--all prints a line for each; "
                                  "--json gives every prediction)")
    assert lines[SHOWN_LINES + 1] == "Predicted classes: " + ", ".join(
        f"{k}: 1,000" for k in range(10))
    assert "Blank images (no digit found): 1" in lines
    wrong = 10_000 - report["correct"]
    assert any(line.startswith(f"Wrong: {wrong:,} (t10k-images-idx3-ubyte[0], ") for line in lines)
    assert lines[-1] == f"Accuracy: {report['accuracy']:.4f} ({report['correct']}/10000)"


def test_every_line_with_all_and_short_inputs_whole(capsys):
    _print_text(_report(500), every=True)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 501 and lines[-1].startswith("Accuracy: ")
    _print_text(_report(LONG_INPUT, labelled=False))
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == LONG_INPUT and not any("more images" in line for line in lines)
