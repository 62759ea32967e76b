"""EarlyStopping: stops when a scripted metric sequence says so; restores the best weights."""

from __future__ import annotations

from types import SimpleNamespace

import mindspore as ms
import pytest

from callbacks import EarlyStopping
from tests.cbkit import (
    EpochWeights,
    ScriptedStats,
    digits,
    drive_epochs,
    fake_context,
    make_run,
    same_weights,
)
from trainer.errors import ConfigError


def stopper(values, metric="val_loss", **kwargs) -> EarlyStopping:
    return EarlyStopping(monitor=metric, stats=ScriptedStats(values, metric), **kwargs)


@pytest.mark.parametrize("values, kwargs, stopped_epoch, best_epoch, waits", [
    # min: best at epoch 2, then two epochs without improvement.
    ([1.0, 0.9, 0.95, 0.93, 0.5], {"patience": 2}, 4, 2, [0, 0, 1, 2]),
    # An equal value is not an improvement.
    ([1.0, 0.9, 0.9, 0.9], {"patience": 2}, 4, 2, [0, 0, 1, 2]),
    # Improvements reset the counter, so it never reaches the patience.
    ([1.0, 1.1, 0.9, 1.0, 0.8, 0.85], {"patience": 2}, 0, 5, [0, 1, 0, 1, 0, 1]),
    # min_delta: none of these beats the best (1.0) by more than 0.1.
    ([1.0, 0.95, 0.92, 0.91], {"patience": 3, "min_delta": 0.1}, 4, 1, [0, 1, 2, 3]),
    # ...while a step beyond it does.
    ([1.0, 0.95, 0.85, 0.84], {"patience": 2, "min_delta": 0.1}, 0, 3, [0, 1, 0, 1]),
    # max mode: higher is better.
    ([0.5, 0.6, 0.6, 0.59, 0.7], {"patience": 2, "mode": "max"}, 4, 2, [0, 0, 1, 2]),
    ([0.5, 0.4, 0.3], {"patience": 1, "mode": "max"}, 2, 1, [0, 1]),
    # NaN never improves.
    ([1.0, float("nan"), float("nan")], {"patience": 2}, 3, 1, [0, 1, 2]),
])
def test_stops_at_the_epoch_the_sequence_demands(values, kwargs, stopped_epoch, best_epoch,
                                                  waits):
    cb = stopper(values, **kwargs)
    epochs_run, trace = drive_epochs(cb, len(values))
    assert cb.stopped_epoch == stopped_epoch
    assert epochs_run == (stopped_epoch or len(values))
    assert cb.best_epoch == best_epoch
    assert cb.best == values[best_epoch - 1]
    assert [t["wait"] for t in trace] == waits


def test_incomplete_epochs_are_ignored():
    cb = EarlyStopping(patience=2, stats=ScriptedStats([1.0, 2.0, 3.0, 4.0], incomplete=[2, 3]))
    epochs_run, trace = drive_epochs(cb, 4)
    assert [t["wait"] for t in trace] == [0, 0, 0, 1]
    assert cb.stopped_epoch == 0 and epochs_run == 4


def test_a_new_run_starts_clean_but_a_restored_one_continues():
    cb = stopper([1.0, 2.0, 3.0], patience=3)
    drive_epochs(cb, 3)
    assert cb.wait == 2
    drive_epochs(cb, 3)  # a second fit with the same callback: counters start again
    assert cb.wait == 2 and cb.best == 1.0

    resumed = stopper([9.0, 9.0, 9.0, 9.0], patience=3)
    resumed.load_state_dict(cb.state_dict())
    # What a resumed fit calls first; it starts at the bundle's step.
    resumed.on_train_begin(fake_context(optimizer=SimpleNamespace(
        global_step=ms.Tensor([30], ms.int32))))
    assert resumed.wait == 2 and resumed.best == 1.0 and resumed.best_epoch == 1


def test_missing_metric_names_the_available_ones():
    cb = stopper([{"loss": 1.0, "accuracy": 0.5}], metric="val_accuracy")
    with pytest.raises(ConfigError, match=r"val_accuracy.*accuracy, loss"):
        drive_epochs(cb, 1)


@pytest.mark.parametrize("patience", [0, -1, 1.5])
def test_rejects_bad_patience(patience):
    with pytest.raises(ConfigError, match="patience"):
        EarlyStopping(patience=patience)


@pytest.mark.parametrize("kind", ["step", "plain"])
def test_restore_best_weights_returns_to_the_best_epoch(digits_dir, kind):
    """A real network: after the stop its weights are the ones it had at the best epoch."""
    values = [1.0, 0.5, 0.7, 0.8]  # best at epoch 2, stop at epoch 4 with patience 2
    run = make_run(0.05, kind=kind)
    snapshots = EpochWeights(run.net)
    cb = EarlyStopping(patience=2, restore_best_weights=True, stats=ScriptedStats(values))
    train, _ = digits(digits_dir)
    run.model.train(6, train, callbacks=[snapshots, cb], dataset_sink_mode=False)
    assert cb.stopped_epoch == 4 and cb.best_epoch == 2
    assert sorted(snapshots.by_epoch) == [1, 2, 3, 4]
    assert not same_weights(snapshots.by_epoch[2], snapshots.by_epoch[4])
    assert same_weights(snapshots.by_epoch[2], {p.name: p.asnumpy()
                                               for p in run.net.trainable_params()})


def test_without_restore_the_last_weights_stay(digits_dir):
    run = make_run(0.05, kind="step")
    snapshots = EpochWeights(run.net)
    cb = EarlyStopping(patience=1, stats=ScriptedStats([1.0, 2.0]))
    train, _ = digits(digits_dir)
    run.model.train(3, train, callbacks=[snapshots, cb], dataset_sink_mode=False)
    assert cb.stopped_epoch == 2
    assert same_weights(snapshots.by_epoch[2], {p.name: p.asnumpy()
                                               for p in run.net.trainable_params()})
