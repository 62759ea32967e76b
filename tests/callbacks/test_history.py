"""History: one row per epoch, in memory (Keras-style) and in history.json/.csv/.png."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from PIL import Image

from callbacks import History, LossMonitor
from tests.cbkit import (
    STEPS_PER_EPOCH,
    EpochWeights,
    Recorder,
    ScriptedStats,
    digits,
    drive_epochs,
    fake_context,
    lr_array,
    make_run,
)

EPOCHS = 2
COLUMNS = ["epoch", "loss", "accuracy", "val_loss", "val_accuracy", "lr", "epoch_time"]


def _no_constants(name):
    raise ValueError(f"{name} is not JSON")


@pytest.fixture(scope="module")
def recorded(tmp_path_factory, digits_dir):
    folder = tmp_path_factory.mktemp("history")
    rates = lr_array(EPOCHS * STEPS_PER_EPOCH)
    run = make_run(rates, kind="step")
    losses: dict[int, float] = {}

    def record(hook, cb_params):
        losses[cb_params.cur_step_num] = float(cb_params.net_outputs.asnumpy())

    history = History(folder)
    evals = EpochWeights(run.net)
    train, valid = digits(digits_dir)
    run.model.fit(EPOCHS, train, valid, callbacks=[Recorder(record, ["on_train_step_end"]),
                                                   evals, history], dataset_sink_mode=False)
    return {"history": history, "folder": folder, "losses": losses, "rates": rates,
            "evals": evals.eval_results}


def test_rows_hold_one_epoch_each_with_the_keras_names(recorded):
    history = recorded["history"]
    assert history.epochs == list(range(1, EPOCHS + 1))
    assert list(history.history) == COLUMNS
    assert all(len(values) == EPOCHS for values in history.history.values())
    for row in history.rows:
        assert sorted(row) == sorted(COLUMNS)


def test_values_match_the_run(recorded):
    history, losses = recorded["history"].history, recorded["losses"]
    for epoch in range(1, EPOCHS + 1):
        steps = range((epoch - 1) * STEPS_PER_EPOCH + 1, epoch * STEPS_PER_EPOCH + 1)
        i = epoch - 1
        assert history["loss"][i] == pytest.approx(np.mean([losses[s] for s in steps]), rel=1e-5)
        assert 0.0 <= history["accuracy"][i] <= 1.0
        evals = recorded["evals"][epoch]
        assert history["val_accuracy"][i] == pytest.approx(evals["accuracy"])
        assert history["val_loss"][i] == pytest.approx(evals["loss"])
        # The rate of the next step, i.e. the schedule's entry at the global step.
        assert history["lr"][i] == pytest.approx(float(recorded["rates"][epoch * STEPS_PER_EPOCH]))
        assert history["epoch_time"][i] > 0
    assert history["loss"][-1] < history["loss"][0]  # the digits are learnable


def test_json_file_is_strict_json_and_matches(recorded):
    text = (recorded["folder"] / "history.json").read_text()
    data = json.loads(text, parse_constant=_no_constants)
    assert data["history"] == recorded["history"].history
    assert data["rows"] == recorded["history"].rows


def test_csv_file_has_a_header_and_a_row_per_epoch(recorded):
    with open(recorded["folder"] / "history.csv", newline="") as handle:
        reader = csv.DictReader(handle)
        rows = list(reader)
    assert reader.fieldnames == COLUMNS
    assert len(rows) == EPOCHS
    for saved, row in zip(rows, recorded["history"].rows):
        assert int(saved["epoch"]) == row["epoch"]
        for key in COLUMNS[1:]:
            assert float(saved[key]) == pytest.approx(row[key]), key


def test_png_is_drawn_at_the_default_size(recorded):
    with Image.open(recorded["folder"] / "history.png") as image:
        assert image.format == "PNG"
        assert image.size == (1000, 400)


def test_no_temporary_files_are_left(recorded):
    assert sorted(p.name for p in recorded["folder"].iterdir()) == [
        "history.csv", "history.json", "history.png"]


def test_plain_model_without_validation(tmp_path, digits_dir):
    """Model.train (no validation) with a plain network: loss, lr and time, no val_* columns."""
    run = make_run(0.05, kind="plain")
    history = History(tmp_path, plot=False)
    train, _ = digits(digits_dir)
    run.model.train(1, train, callbacks=[history], dataset_sink_mode=False)
    assert list(history.history) == ["epoch", "loss", "lr", "epoch_time"]
    assert np.isfinite(history.history["loss"][0])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["history.csv", "history.json"]


def test_in_memory_only_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    history = History(stats=ScriptedStats([{"loss": 1.0}, {"loss": 0.5}]))
    drive_epochs(history, 2)
    assert history.history == {"epoch": [1, 2], "loss": [1.0, 0.5]}
    assert list(tmp_path.iterdir()) == []


def test_a_resumed_epoch_replaces_the_rows_from_it_on(tmp_path):
    history = History(tmp_path, plot=False, stats=ScriptedStats([{}, {"loss": 0.25}]))
    history.load_state_dict({"rows": [{"epoch": 1, "loss": 1.0}, {"epoch": 2, "loss": 9.0},
                                      {"epoch": 3, "loss": 9.0}]})
    history.on_train_epoch_end(fake_context(cur_epoch_num=2))
    assert history.history == {"epoch": [1, 2], "loss": [1.0, 0.25]}
    assert json.loads((tmp_path / "history.json").read_text())["history"]["loss"] == [1.0, 0.25]


def test_columns_missing_in_some_epochs_are_none():
    history = History(stats=ScriptedStats([{"loss": 1.0}, {"loss": 0.5, "val_loss": 0.7}]))
    drive_epochs(history, 2)
    assert history.history["val_loss"] == [None, 0.7]


@pytest.mark.parametrize("kind", ["step", "plain"])
def test_reused_for_another_train_call_it_measures_that_call(digits_dir, kind):
    """model.train(1, ...) twice with the same callbacks: each epoch 1 is its own call's mean."""
    run = make_run(0.05, kind=kind)
    history = History()
    lines: list[str] = []
    monitor = LossMonitor(0, printer=lines.append)
    train, _ = digits(digits_dir)
    means = []
    for _ in range(2):
        losses: list[float] = []
        recorder = Recorder(lambda hook, p, out=losses: out.append(float(p.net_outputs.asnumpy())),
                            ["on_train_step_end"])
        run.model.train(1, train, callbacks=[history, monitor, recorder], dataset_sink_mode=False)
        assert len(losses) == STEPS_PER_EPOCH
        means.append(np.mean(losses))
        assert history.history["loss"] == [pytest.approx(means[-1], rel=1e-5)]
    assert means[1] < means[0]
    assert [float(line.rsplit(" ", 1)[1]) for line in lines] == pytest.approx(means, abs=1e-3)


@pytest.mark.parametrize("budget, background", [(0.05, 0), (1e9, 3)])
def test_the_plot_is_drawn_within_its_budget_and_never_twice_for_the_same_epochs(
        tmp_path, monkeypatch, budget, background):
    """A short run (these epochs take no time) draws once, at the end; a budget that allows
    a drawing after every epoch leaves nothing to draw at the end. The test split's scores
    rewrite the JSON, not the plot, which shows epochs only."""
    drawn: list[list[int]] = []
    monkeypatch.setattr("callbacks.history.plot_history",
                        lambda rows, path: drawn.append([row["epoch"] for row in rows]))
    history = History(tmp_path, stats=ScriptedStats([{"loss": 1.0}, {"loss": 0.5},
                                                     {"loss": 0.25}]), plot_budget=budget)
    drive_epochs(history, 3)
    history.wait()
    expected = [[1], [1, 2], [1, 2, 3]][-background:] if background else [[1, 2, 3]]
    assert drawn == expected
    history.add_test({"final": {"test_accuracy": 0.9}})
    assert drawn == expected
    saved = json.loads((tmp_path / "history.json").read_text())
    assert saved["rows"][-1]["test_accuracy"] == 0.9


def _no_drawing_here(rows, path):
    raise AssertionError("drawn in the training process")


@pytest.mark.parametrize("in_background", [True, False], ids=["background", "at-train-end"])
def test_a_plot_process_draws_the_png_and_ends_with_the_run(tmp_path, monkeypatch,
                                                            in_background):
    """With plot_process, history.png comes from a child process (nothing is drawn in this
    one); the last plot is there after finish() (in the background) or when training ends,
    and the process has ended by then."""
    monkeypatch.setattr("callbacks.history.plot_history", _no_drawing_here)
    history = History(tmp_path, stats=ScriptedStats([{"loss": 1.0, "val_loss": 1.2},
                                                     {"loss": 0.5, "val_loss": 0.7}]),
                      plot_process=True, last_plot_in_background=in_background)
    drive_epochs(history, 2)
    if in_background:
        process = history._process.proc
        history.finish()
    assert history._process is None
    with Image.open(tmp_path / "history.png") as image:
        assert image.size == (1000, 400)
    if in_background:
        assert process.returncode == 0
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_a_drawing_that_fails_in_the_plot_process_is_a_warning(tmp_path, caplog):
    """The child reports a drawing it could not make; training goes on with one warning and
    the JSON and CSV files written."""
    (tmp_path / "history.png").mkdir()  # nothing can be renamed onto a folder
    history = History(tmp_path, stats=ScriptedStats([{"loss": 1.0}]), plot_process=True)
    with caplog.at_level("WARNING", logger="mstrain"):
        drive_epochs(history, 1)
    assert history._process is None
    assert [r.message for r in caplog.records if "history.png" in r.message]
    assert json.loads((tmp_path / "history.json").read_text())["rows"][0]["loss"] == 1.0
