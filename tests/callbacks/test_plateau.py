"""ReduceLROnPlateau: scales the optimizer's remaining per-step rates, with cooldown and a floor."""

from __future__ import annotations

import mindspore as ms
import numpy as np
import pytest
from mindspore import nn

from callbacks import LearningRateMonitor, ReduceLROnPlateau
from callbacks.stats import lr_parameter
from tests.cbkit import (
    STEPS_PER_EPOCH,
    Recorder,
    ScriptedStats,
    Tiny,
    digits,
    drive_epochs,
    lr_array,
    make_run,
)
from trainer.errors import ConfigError


def optimizer(lr, global_step: int = 0) -> nn.Optimizer:
    if isinstance(lr, np.ndarray):
        lr = ms.Tensor(lr)
    opt = nn.Momentum(Tiny().trainable_params(), lr, 0.9)
    opt.global_step.set_data(ms.Tensor(np.array([global_step], np.int32)))
    return opt


def plateau(values, **kwargs) -> ReduceLROnPlateau:
    return ReduceLROnPlateau(monitor="val_loss", stats=ScriptedStats(values), **kwargs)


def rates_of(opt) -> np.ndarray:
    return np.asarray(lr_parameter(opt).asnumpy())


def test_cut_scales_the_remaining_steps_only():
    rates = lr_array(100)
    opt = optimizer(rates, global_step=30)
    cb = plateau([1.0, 1.0, 1.0], patience=2, factor=0.5)
    drive_epochs(cb, 3, optimizer=opt)
    new = rates_of(opt)
    np.testing.assert_array_equal(new[:30], rates[:30])
    np.testing.assert_allclose(new[30:], rates[30:] * np.float32(0.5), rtol=1e-6)
    assert float(opt.get_lr().asnumpy()) == pytest.approx(float(rates[30]) * 0.5, rel=1e-6)
    assert [r["epoch"] for r in cb.reductions] == [3]
    assert cb.reductions[0]["from"] == pytest.approx(float(rates[30]))
    assert cb.reductions[0]["to"] == pytest.approx(float(rates[30]) * 0.5)


@pytest.mark.parametrize("values, kwargs, cut_epochs", [
    # patience 2: the third flat epoch cuts, and the counter starts again.
    ([1.0] * 7, {"patience": 2}, [3, 5, 7]),
    ([1.0] * 6, {"patience": 1}, [2, 3, 4, 5, 6]),
    # cooldown: after a cut the next epochs are not counted.
    ([1.0] * 8, {"patience": 1, "cooldown": 2}, [2, 4, 6, 8]),
    ([1.0] * 8, {"patience": 2, "cooldown": 1}, [3, 5, 7]),
    # Improvements reset the counter.
    ([1.0, 1.0, 0.9, 1.0, 0.8, 0.9, 0.9], {"patience": 2}, [7]),
    # min_delta: 0.95 is not better than 1.0 by more than 0.1.
    ([1.0, 0.95, 0.95], {"patience": 2, "min_delta": 0.1}, [3]),
    # max mode.
    ([0.5, 0.6, 0.6, 0.55], {"patience": 2, "mode": "max"}, [4]),
])
def test_cuts_after_patience_epochs_without_improvement(values, kwargs, cut_epochs):
    opt = optimizer(np.full(50, 0.1, np.float32), global_step=10)
    cb = plateau(values, factor=0.5, **kwargs)
    epochs_run, _ = drive_epochs(cb, len(values), optimizer=opt)
    assert epochs_run == len(values)  # it never stops training
    assert [r["epoch"] for r in cb.reductions] == cut_epochs
    expected = 0.1 * 0.5 ** len(cut_epochs)
    assert float(opt.get_lr().asnumpy()) == pytest.approx(expected, rel=1e-5)


def test_floor_is_min_lr():
    opt = optimizer(np.full(50, 0.01, np.float32), global_step=5)
    cb = plateau([1.0] * 4, patience=1, factor=0.1, min_lr=0.004)
    drive_epochs(cb, 4, optimizer=opt)
    np.testing.assert_allclose(rates_of(opt)[5:], 0.004, rtol=1e-6)
    np.testing.assert_allclose(rates_of(opt)[:5], 0.01, rtol=1e-6)
    assert [r["to"] for r in cb.reductions] == pytest.approx([0.004] * 3)


def test_rates_already_below_the_floor_are_not_raised():
    """A schedule that decays to zero keeps its tail: a cut never increases a rate."""
    rates = np.linspace(0.01, 0.0, 60, dtype=np.float32)
    opt = optimizer(rates, global_step=10)
    cb = plateau([1.0, 1.0], patience=1, factor=0.5, min_lr=0.002)
    drive_epochs(cb, 2, optimizer=opt)
    new = rates_of(opt)
    assert (new <= rates).all()
    low = rates <= 0.002
    np.testing.assert_array_equal(new[low], rates[low])
    high = ~low
    high[:10] = False
    np.testing.assert_allclose(new[high], np.maximum(rates[high] * 0.5, 0.002), rtol=1e-6)


def test_a_scalar_rate_is_scaled_in_place():
    opt = optimizer(0.1)
    cb = plateau([1.0, 1.0], patience=1, factor=0.3)
    drive_epochs(cb, 2, optimizer=opt)
    assert float(rates_of(opt)) == pytest.approx(0.03)
    assert float(opt.get_lr().asnumpy()) == pytest.approx(0.03)


def test_incomplete_epochs_do_not_count():
    opt = optimizer(np.full(50, 0.1, np.float32))
    cb = ReduceLROnPlateau(patience=1, stats=ScriptedStats([1.0, 1.0, 1.0], incomplete=[2]))
    drive_epochs(cb, 3, optimizer=opt)
    assert [r["epoch"] for r in cb.reductions] == [3]


def test_a_real_run_applies_the_cut_from_the_next_step(digits_dir):
    """In training: after the cut at the end of epoch 2, epoch 3 runs at half the rates."""
    epochs = 3
    rates = lr_array(epochs * STEPS_PER_EPOCH)
    run = make_run(rates, kind="step")
    applied: dict[int, float] = {}

    def record(hook, cb_params):
        applied[cb_params.cur_step_num] = float(run.opt.get_lr().asnumpy())

    cb = ReduceLROnPlateau(patience=1, factor=0.5, stats=ScriptedStats([1.0, 1.0, 0.5]))
    monitor = LearningRateMonitor()
    train, _ = digits(digits_dir)
    run.model.train(epochs, train, callbacks=[Recorder(record, ["on_train_step_begin"]), cb,
                                              monitor], dataset_sink_mode=False)
    cut_at = 2 * STEPS_PER_EPOCH
    assert [r["epoch"] for r in cb.reductions] == [2]
    np.testing.assert_allclose([applied[k] for k in range(1, cut_at + 1)], rates[:cut_at],
                               rtol=1e-6)
    np.testing.assert_allclose([applied[k] for k in range(cut_at + 1, epochs * STEPS_PER_EPOCH
                                                          + 1)],
                               rates[cut_at:-1] * 0.5, rtol=1e-6)
    np.testing.assert_allclose(run.lr_values()[cut_at:], rates[cut_at:] * 0.5, rtol=1e-6)
    # The monitor, run after the cut in the same epoch end, already sees the lower rate.
    assert monitor.records[1]["lr"] == pytest.approx(float(rates[cut_at]) * 0.5, rel=1e-6)


@pytest.mark.parametrize("kwargs, key", [({"factor": 1.0}, "factor"), ({"factor": 0.0}, "factor"),
                                         ({"factor": 1.5}, "factor"), ({"patience": 0}, "patience"),
                                         ({"patience": 2.5}, "patience")])
def test_rejects_bad_settings(kwargs, key):
    with pytest.raises(ConfigError, match=key):
        ReduceLROnPlateau(**kwargs)
