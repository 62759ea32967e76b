"""CSVLogger: appends a row per completed epoch; one header across resumed runs."""

from __future__ import annotations

import csv

import pytest

from callbacks import CSVLogger
from tests.cbkit import Recorder, ScriptedStats, digits, drive_epochs, make_run


def read(path):
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle)
        return reader.fieldnames, list(reader)


def test_two_runs_append_under_one_header(tmp_path, digits_dir):
    path = tmp_path / "logs" / "log.csv"
    run = make_run(0.05, kind="step")
    train, valid = digits(digits_dir)
    seen_during_run: list[int] = []

    def look(hook, cb_params):
        seen_during_run.append(len(read(path)[1]))  # flushed as soon as the epoch ends

    run.model.fit(1, train, valid, callbacks=[CSVLogger(path),
                                              Recorder(look, ["on_train_epoch_end"])],
                  dataset_sink_mode=False)
    header, rows = read(path)
    assert seen_during_run == [1]
    assert [r["epoch"] for r in rows] == ["1"]

    # A new process resuming the run: a fresh logger on the same file.
    run.model.fit(2, train, valid, callbacks=[CSVLogger(path)], initial_epoch=1,
                  dataset_sink_mode=False)
    header2, rows = read(path)
    assert header2 == header
    assert header[:2] == ["epoch", "loss"]
    assert {"accuracy", "val_loss", "val_accuracy", "lr", "epoch_time"} <= set(header)
    assert [r["epoch"] for r in rows] == ["1", "2"]
    assert path.read_text().count("epoch,") == 1
    for row in rows:
        assert all(row[k] != "" for k in header)
        assert float(row["loss"]) > 0 and 0 <= float(row["val_accuracy"]) <= 1


def test_new_columns_widen_the_header_once(tmp_path):
    path = tmp_path / "log.csv"
    CSVLogger(path).append({"epoch": 1, "loss": 1.0})
    logger = CSVLogger(path)
    logger.append({"epoch": 2, "loss": 0.5, "val_loss": 0.7})
    logger.append({"epoch": 3, "loss": 0.4, "val_loss": 0.6})
    header, rows = read(path)
    assert header == ["epoch", "loss", "val_loss"]
    assert rows == [{"epoch": "1", "loss": "1.0", "val_loss": ""},
                    {"epoch": "2", "loss": "0.5", "val_loss": "0.7"},
                    {"epoch": "3", "loss": "0.4", "val_loss": "0.6"}]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["log.csv"]


def test_columns_a_row_lacks_stay_empty(tmp_path):
    path = tmp_path / "log.csv"
    logger = CSVLogger(path)
    logger.append({"epoch": 1, "loss": 1.0, "val_loss": 0.9})
    logger.append({"epoch": 2, "loss": 0.5})
    assert read(path)[1][1] == {"epoch": "2", "loss": "0.5", "val_loss": ""}


@pytest.mark.parametrize("incomplete, logged", [((), ["1", "2", "3"]), ((2,), ["1", "3"])])
def test_only_completed_epochs_are_logged(tmp_path, incomplete, logged):
    path = tmp_path / "log.csv"
    stats = ScriptedStats([{"loss": 1.0}, {"loss": 0.9}, {"loss": 0.8}], incomplete=incomplete)
    drive_epochs(CSVLogger(path, stats=stats), 3)
    assert [r["epoch"] for r in read(path)[1]] == logged
