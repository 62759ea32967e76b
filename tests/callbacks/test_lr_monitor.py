"""The rate a step applies is the schedule's entry for that step; LearningRateMonitor records it."""

from __future__ import annotations

import numpy as np
import pytest

from callbacks import History, LearningRateMonitor, LossMonitor
from tests.cbkit import STEPS_PER_EPOCH, Recorder, digits, lr_array, make_run, weights
from trainer.engine.schedules import build_schedule
from trainer.errors import ConfigError

EPOCHS = 2


@pytest.fixture(scope="module")
def scheduled(digits_dir):
    """Two epochs under a warm-up + multistep schedule, as Trainer builds it (one extra entry)."""
    schedule = build_schedule("multistep", base_lr=0.05, epochs=EPOCHS,
                              steps_per_epoch=STEPS_PER_EPOCH, warmup_epochs=0.4, milestones=[1],
                              gamma=0.1)
    schedule = [*schedule, schedule[-1]]
    run = make_run(schedule, kind="step")
    at_step_begin: dict[int, float] = {}

    def record(hook, cb_params):
        at_step_begin[cb_params.cur_step_num] = float(run.opt.get_lr().asnumpy())

    monitor = LearningRateMonitor(every_n_steps=5)
    epoch_ends = LearningRateMonitor()
    train, _ = digits(digits_dir)
    run.model.train(EPOCHS, train, callbacks=[Recorder(record, ["on_train_step_begin"]),
                                              monitor, epoch_ends], dataset_sink_mode=False)
    return schedule, at_step_begin, monitor, epoch_ends, run


def test_rate_at_each_step_is_the_schedules_entry(scheduled):
    schedule, at_step_begin, *_ = scheduled
    total = EPOCHS * STEPS_PER_EPOCH
    assert sorted(at_step_begin) == list(range(1, total + 1))
    applied = [at_step_begin[k] for k in range(1, total + 1)]
    np.testing.assert_allclose(applied, np.float32(schedule[:total]), rtol=1e-6)
    assert len(set(np.round(applied, 8))) > 3  # warm-up, base and decayed rates all appear


def test_monitor_records_every_n_steps_and_at_epoch_ends(scheduled):
    schedule, _, monitor, epoch_ends, run = scheduled
    total = EPOCHS * STEPS_PER_EPOCH
    steps = sorted(set(range(5, total + 1, 5)) | {STEPS_PER_EPOCH * e for e in (1, 2)})
    assert [r["step"] for r in monitor.records] == steps
    for record in monitor.records:
        assert record["lr"] == pytest.approx(float(np.float32(schedule[record["step"]])))
        assert record["epoch"] == (record["step"] - 1) // STEPS_PER_EPOCH + 1
    assert [r["step"] for r in epoch_ends.records] == [STEPS_PER_EPOCH, total]
    assert epoch_ends.records[-1]["lr"] == pytest.approx(float(run.opt.get_lr().asnumpy()))


def test_monitor_works_with_a_plain_model(digits_dir):
    rates = lr_array(STEPS_PER_EPOCH)
    run = make_run(rates, kind="plain")
    monitor = LearningRateMonitor(every_n_steps=10)
    train, _ = digits(digits_dir)
    run.model.train(1, train, callbacks=[monitor], dataset_sink_mode=False)
    assert [r["step"] for r in monitor.records] == [10, 20, STEPS_PER_EPOCH]
    for record in monitor.records:
        assert record["lr"] == pytest.approx(float(rates[record["step"]]))


def test_a_zero_rate_step_leaves_the_weights_alone(digits_dir):
    """The rate is really applied at its step: plain SGD moves nothing where it is zero."""
    rates = lr_array(STEPS_PER_EPOCH)
    frozen = set(range(8, 13))  # 1-based steps with rate 0
    for step in frozen:
        rates[step - 1] = 0.0
    run = make_run(rates, kind="step", optimizer="sgd")
    before: dict[int, dict] = {}
    moved: dict[int, bool] = {}

    def record(hook, cb_params):
        step = cb_params.cur_step_num
        if hook == "on_train_step_begin":
            before[step] = weights(run.net)
        else:
            after = weights(run.net)
            moved[step] = any(not np.array_equal(before[step][k], after[k]) for k in after)

    train, _ = digits(digits_dir)
    run.model.train(1, train, callbacks=[Recorder(record, ["on_train_step_begin",
                                                           "on_train_step_end"])],
                    dataset_sink_mode=False)
    assert {step for step, changed in moved.items() if not changed} == frozen


@pytest.mark.parametrize("value", [-1, 1.5, "5"])
def test_rejects_bad_interval(value):
    with pytest.raises(ConfigError, match="every_n_steps"):
        LearningRateMonitor(every_n_steps=value)


@pytest.mark.parametrize("kind", ["plain", "step"])
def test_one_rate_per_step_schedule_reports_its_last_rate_at_the_end(digits_dir, kind):
    """MindSpore's usual per-step list has no entry past the last step: nothing breaks there."""
    schedule = build_schedule("cosine", base_lr=0.05, epochs=1, steps_per_epoch=STEPS_PER_EPOCH,
                              min_lr=0.001)
    run = make_run(schedule, kind=kind)
    lines: list[str] = []
    history, monitor = History(), LearningRateMonitor(every_n_steps=STEPS_PER_EPOCH - 1)
    train, _ = digits(digits_dir)
    run.model.train(1, train, callbacks=[LossMonitor(STEPS_PER_EPOCH, printer=lines.append),
                                         history, monitor], dataset_sink_mode=False)
    last = float(np.float32(schedule[-1]))
    assert run.global_step() == len(schedule)
    assert history.history["lr"] == [pytest.approx(last)]
    assert [r["step"] for r in monitor.records] == [STEPS_PER_EPOCH - 1, STEPS_PER_EPOCH]
    before_last = float(np.float32(schedule[STEPS_PER_EPOCH - 1]))
    assert monitor.records[0]["lr"] == pytest.approx(before_last)
    assert monitor.records[1]["lr"] == pytest.approx(last)
    assert lines[0].endswith(f"lr:{last:.5f}")
