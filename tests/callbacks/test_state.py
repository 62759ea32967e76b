"""state_dict()/load_state_dict() of every stateful callback, as a checkpoint carries them."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import mindspore as ms
import pytest

from callbacks import (
    EarlyStopping,
    EpochStats,
    History,
    LearningRateMonitor,
    ModelCheckpoint,
    ReduceLROnPlateau,
)
from tests.cbkit import Params, ScriptedStats, drive_epochs


def through_json(state):
    """What a bundle's metadata does to a state: JSON out and back in."""
    return json.loads(json.dumps(state, allow_nan=True))


def history(tmp_path):
    cb = History()
    cb.rows = [{"epoch": 1, "loss": 1.0, "val_loss": 0.9}, {"epoch": 2, "loss": 0.5}]
    return cb


def early_stopping(tmp_path):
    cb = EarlyStopping(monitor="val_accuracy", mode="max", patience=4)
    cb.best, cb.wait, cb.best_epoch, cb.stopped_epoch = 0.93, 2, 3, 0
    return cb


def plateau(tmp_path):
    cb = ReduceLROnPlateau(monitor="val_loss", cooldown=2)
    cb.best, cb.wait, cb.cooldown_left = 0.4, 1, 1
    cb.reductions = [{"epoch": 4, "from": 0.1, "to": 0.01}]
    return cb


def checkpoint(tmp_path):
    cb = ModelCheckpoint(tmp_path, monitor="val_accuracy", mode="max", save_best=True)
    cb.best, cb.best_path = 0.97, tmp_path / "best.ckpt"
    return cb


def lr_monitor(tmp_path):
    cb = LearningRateMonitor(every_n_steps=10)
    cb.records = [{"step": 10, "epoch": 1, "lr": 0.01}, {"step": 20, "epoch": 1, "lr": 0.005}]
    return cb


def epoch_stats(tmp_path):
    cb = EpochStats()
    cb._epoch, cb._start = 3, {"loss_sum": 12.5, "correct": 500.0, "samples": 640.0,
                               "steps": 10.0}
    return cb


FRESH = {
    history: lambda tmp_path: History(),
    early_stopping: lambda tmp_path: EarlyStopping(monitor="val_accuracy", mode="max",
                                                   patience=4),
    plateau: lambda tmp_path: ReduceLROnPlateau(monitor="val_loss", cooldown=2),
    checkpoint: lambda tmp_path: ModelCheckpoint(tmp_path, monitor="val_accuracy", mode="max",
                                                 save_best=True),
    lr_monitor: lambda tmp_path: LearningRateMonitor(every_n_steps=10),
    epoch_stats: lambda tmp_path: EpochStats(),
}


@pytest.mark.parametrize("used", [f for f in FRESH if f is not epoch_stats],
                         ids=lambda f: f.__name__)
def test_round_trip(tmp_path, used):
    state = used(tmp_path).state_dict()
    assert state != FRESH[used](tmp_path).state_dict()  # the used one has something to carry
    restored = FRESH[used](tmp_path)
    restored.load_state_dict(through_json(state))
    assert restored.state_dict() == state


@pytest.mark.parametrize("used", list(FRESH), ids=lambda f: f.__name__)
def test_empty_state_keeps_the_defaults(tmp_path, used):
    cb = FRESH[used](tmp_path)
    defaults = cb.state_dict()
    cb.load_state_dict({})
    assert cb.state_dict() == defaults


def test_restored_counters_survive_on_train_begin(tmp_path):
    for used in (early_stopping, checkpoint):
        state = used(tmp_path).state_dict()
        cb = FRESH[used](tmp_path)
        cb.load_state_dict(through_json(state))
        cb.on_train_begin(_train_begin_context(at_step=30))  # a resumed fit starts at its step
        assert cb.state_dict() == state
        cb.on_train_begin(_train_begin_context())  # the next fit is a new run again
        assert cb.best == -math.inf


def _train_begin_context(at_step: int = 0):
    """What on_train_begin sees: Model's step count at 0, the optimizer's at ``at_step`` (the
    bundle's step in a resumed fit)."""
    from mindspore.train import RunContext

    return RunContext(Params(cur_step_num=0, optimizer=_optimizer_at(at_step)))


def _optimizer_at(step: int) -> SimpleNamespace:
    """An optimizer's step count, which is where a fit starts counting global steps."""
    return SimpleNamespace(global_step=ms.Tensor([step], ms.int32))


def test_restored_plateau_continues_counting():
    """wait=1 of patience 2 restored: the next flat epoch cuts, as it would have."""
    cb = ReduceLROnPlateau(patience=2, stats=ScriptedStats([1.0, 1.0]))
    cb.load_state_dict({"best": 1.0, "monitor": "val_loss", "mode": "min", "wait": 1})
    cut = []
    cb._reduce = lambda cb_params: cut.append(cb_params.cur_epoch_num)
    drive_epochs(cb, 1, optimizer=_optimizer_at(20))  # the resumed fit starts at step 20
    assert cut == [1]


def _stats_params(epoch, loss_sum, correct, samples, steps, batch_num=10):
    net = SimpleNamespace(stat_loss_sum=ms.Tensor(loss_sum, ms.float64),
                          stat_correct=ms.Tensor(correct, ms.int64),
                          stat_samples=ms.Tensor(samples, ms.int64),
                          stat_steps=ms.Tensor(steps, ms.int64))
    return Params(cur_epoch_num=epoch, cur_step_num=steps, batch_num=batch_num,
                  train_network=net, optimizer=None)


def test_epoch_stats_resume_measures_from_the_epochs_real_start():
    before = EpochStats()
    before.begin_epoch(_stats_params(2, loss_sum=10.0, correct=50, samples=64, steps=10))
    state = through_json(before.state_dict())

    resumed = EpochStats()
    resumed.load_state_dict(state)
    # The new process starts in the middle of epoch 2, three steps after its start.
    params = _stats_params(2, loss_sum=13.0, correct=80, samples=160, steps=13)
    resumed.begin_epoch(params)
    summary = resumed.train_summary(params)
    assert summary["steps"] == 3
    assert summary["loss"] == pytest.approx(1.0)
    assert summary["accuracy"] == pytest.approx(30 / 96)

    fresh = EpochStats()
    fresh.begin_epoch(params)
    assert fresh.train_summary(params)["steps"] == 0


def test_epoch_stats_round_trip_once_the_epoch_begins_again(tmp_path):
    state = epoch_stats(tmp_path).state_dict()
    restored = EpochStats()
    restored.load_state_dict(through_json(state))
    restored.begin_epoch(_stats_params(3, loss_sum=20.0, correct=600, samples=768, steps=12))
    assert restored.state_dict() == state


def test_epoch_stats_state_of_another_epoch_is_not_applied():
    stats = EpochStats()
    stats.load_state_dict({"epoch": 1, "totals": {"loss_sum": 0.0, "correct": 0.0,
                                                  "samples": 0.0, "steps": 0.0}})
    params = _stats_params(2, loss_sum=5.0, correct=5, samples=10, steps=10)
    stats.begin_epoch(params)
    assert stats.train_summary(params)["steps"] == 0
