"""MonitorCallback: settings checked up front, improvements decided by mode and min_delta."""

from __future__ import annotations

import math

import pytest

from callbacks import EarlyStopping, ModelCheckpoint, MonitorCallback, ReduceLROnPlateau
from tests.cbkit import digits, make_run
from trainer.errors import ConfigError

SUBCLASSES = [MonitorCallback, EarlyStopping, ReduceLROnPlateau,
              lambda **kw: ModelCheckpoint("unused-folder", **kw)]


@pytest.mark.parametrize("make", SUBCLASSES)
@pytest.mark.parametrize("kwargs, match", [
    ({"mode": "mean"}, r"'mode' is 'mean'.*'min' or 'max'"),
    ({"mode": "MIN"}, r"'mode' is 'MIN'"),
    ({"mode": None}, r"'mode' is None"),
    ({"min_delta": -0.1}, r"'min_delta' is -0\.1.*>= 0"),
    ({"min_delta": "0.1"}, r"'min_delta' is '0\.1'"),
    ({"min_delta": None}, r"'min_delta' is None"),
    ({"monitor": ""}, r"'monitor' is ''"),
    ({"monitor": None}, r"'monitor' is None"),
])
def test_bad_settings_raise_config_error(make, kwargs, match):
    with pytest.raises(ConfigError, match=match):
        make(**kwargs)


@pytest.mark.parametrize("mode, min_delta, best, value, better", [
    ("min", 0.0, 1.0, 0.9, True),
    ("min", 0.0, 1.0, 1.0, False),
    ("min", 0.0, 1.0, 1.1, False),
    ("min", 0.1, 1.0, 0.95, False),
    ("min", 0.1, 1.0, 0.85, True),
    ("max", 0.0, 0.5, 0.6, True),
    ("max", 0.0, 0.5, 0.5, False),
    ("max", 0.0, 0.5, 0.4, False),
    ("max", 0.05, 0.5, 0.54, False),
    ("max", 0.05, 0.5, 0.56, True),
    ("min", 0.0, math.inf, 1e30, True),
    ("max", 0.0, -math.inf, -1e30, True),
    ("min", 0.0, 1.0, math.nan, False),
    ("max", 0.0, 0.5, math.nan, False),
    ("min", 0.0, 1.0, None, False),
])
def test_is_improvement(mode, min_delta, best, value, better):
    cb = MonitorCallback(mode=mode, min_delta=min_delta)
    cb.best = best
    assert cb.is_improvement(value) is better


@pytest.mark.parametrize("mode, worst", [("min", math.inf), ("max", -math.inf)])
def test_best_starts_at_the_worst_value_and_resets(mode, worst):
    cb = MonitorCallback(mode=mode)
    assert cb.best == worst
    cb.best = 0.5
    cb.reset_best()
    assert cb.best == worst


def test_monitor_value_is_read_as_a_float():
    cb = MonitorCallback(monitor="val_accuracy")
    assert cb.get_monitor_value({"val_accuracy": 1}) == 1.0
    assert isinstance(cb.get_monitor_value({"val_accuracy": 1}), float)


def test_missing_metric_lists_the_available_ones():
    cb = MonitorCallback(monitor="val_accuracy")
    logs = {"epoch": 3, "loss": 0.2, "accuracy": 0.9, "lr": 0.01, "epoch_time": 1.0}
    with pytest.raises(ConfigError) as info:
        cb.get_monitor_value(logs)
    message = str(info.value)
    assert "'val_accuracy'" in message
    assert "accuracy, epoch_time, loss, lr." in message  # sorted, without 'epoch'
    assert "only when the run validates" in message


def test_missing_metric_without_any_metrics():
    with pytest.raises(ConfigError, match=r"metrics are: none\.") as info:
        MonitorCallback(monitor="loss").get_monitor_value({"epoch": 1})
    assert "validates" not in str(info.value)  # the hint is for val_* names only


def test_missing_metric_in_a_real_run_names_what_there_is(digits_dir):
    """No validation, so no val_accuracy: the run stops with the list of metrics it has."""
    run = make_run(0.05, kind="step")
    train, _ = digits(digits_dir)
    stop = EarlyStopping(monitor="val_accuracy", mode="max")
    with pytest.raises(ConfigError, match=r"accuracy, epoch_time, loss, lr\."):
        run.model.train(1, train, callbacks=[stop], dataset_sink_mode=False)


def test_monitor_state_round_trip_only_for_the_same_metric():
    cb = MonitorCallback(monitor="val_loss", mode="min")
    cb.best = 0.25
    same = MonitorCallback(monitor="val_loss", mode="min")
    same.load_state_dict(cb.state_dict())
    assert same.best == 0.25
    other = MonitorCallback(monitor="val_accuracy", mode="max")
    other.load_state_dict(cb.state_dict())  # another metric's best means nothing here
    assert other.best == -math.inf
    flipped = MonitorCallback(monitor="val_loss", mode="max")
    flipped.load_state_dict(cb.state_dict())
    assert flipped.best == -math.inf


def test_the_advice_names_how_the_metric_is_chosen_where_the_callback_was_made():
    logs = {"epoch": 1, "loss": 0.2}
    with pytest.raises(ConfigError) as alone:
        EarlyStopping().get_monitor_value(logs)  # made by hand, for a plain Model
    assert "EarlyStopping(monitor=...)" in str(alone.value)
    assert "--monitor" not in str(alone.value)
    with pytest.raises(ConfigError) as built:
        EarlyStopping(hint="--monitor METRIC").get_monitor_value(logs)  # as Trainer makes it
    assert "--monitor METRIC" in str(built.value)
