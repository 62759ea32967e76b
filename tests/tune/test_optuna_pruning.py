"""callbacks.OptunaPruning with a plain mindspore.train.Model and a real Optuna study."""

from __future__ import annotations

import optuna
import pytest

from callbacks import OptunaPruning
from tests.cbkit import digits, make_run
from trainer.errors import ConfigError

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _fit(digits_dir, pruner, epochs: int = 3, monitor: str = "val_accuracy"):
    study = optuna.create_study(direction="maximize", pruner=pruner)
    trial = study.ask()
    run = make_run(lr=0.05, kind="plain")
    train, valid = digits(digits_dir)
    pruning = OptunaPruning(trial, monitor=monitor)
    run.model.fit(epochs, train, valid, callbacks=[pruning], dataset_sink_mode=False)
    return study, trial, pruning


def test_reports_every_epoch_and_returns_the_best(digits_dir):
    study, trial, pruning = _fit(digits_dir, optuna.pruners.NopPruner())
    pruning.check_pruned()  # not pruned: nothing raised
    reported = study.get_trials()[0].intermediate_values
    assert sorted(reported) == [1, 2, 3] == sorted(pruning.reported)
    assert all(0.0 <= v <= 1.0 for v in reported.values())
    assert pruning.best == max(reported.values()) and pruning.best > 0.5  # it learns
    assert reported[pruning.best_epoch] == pruning.best
    assert not pruning.pruned


def test_a_pruned_trial_stops_after_that_epoch_and_raises_trial_pruned(digits_dir):
    # Every value is below 2, so the threshold pruner prunes at the first report.
    study, trial, pruning = _fit(digits_dir, optuna.pruners.ThresholdPruner(lower=2.0),
                                 epochs=4)
    assert pruning.pruned and pruning.pruned_epoch == 1
    assert list(study.get_trials()[0].intermediate_values) == [1]  # training stopped there
    with pytest.raises(optuna.TrialPruned, match="pruned at epoch 1: val_accuracy"):
        pruning.check_pruned()


def test_a_missing_metric_lists_the_ones_there_are(digits_dir):
    with pytest.raises(ConfigError, match=r"monitors 'val_top5'.*val_accuracy"):
        _fit(digits_dir, optuna.pruners.NopPruner(), epochs=1, monitor="val_top5")


def test_arguments_are_checked():
    with pytest.raises(ConfigError, match="not an optuna.trial.Trial"):
        OptunaPruning(object())
    study = optuna.create_study(directions=["maximize", "minimize"])
    with pytest.raises(ConfigError, match="2 objectives"):
        OptunaPruning(study.ask())


def test_the_direction_comes_from_the_study_and_the_state_round_trips():
    trial = optuna.create_study(direction="minimize").ask()
    pruning = OptunaPruning(trial, monitor="val_loss")
    assert pruning.mode == "min"
    pruning.best, pruning.best_epoch = 0.25, 3
    again = OptunaPruning(trial, monitor="val_loss")
    again.load_state_dict(pruning.state_dict())
    assert (again.best, again.best_epoch) == (0.25, 3)
    with pytest.raises(ValueError, match="best_epoch"):
        again.check_state({**pruning.state_dict(), "best_epoch": "three"})
