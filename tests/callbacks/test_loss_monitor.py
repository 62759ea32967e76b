"""LossMonitor: tutorial-format lines every N steps, the applied rate, and no idle copies."""

from __future__ import annotations

import logging
import re

import mindspore as ms
import numpy as np
import pytest

from callbacks import LossMonitor
from tests.cbkit import (
    EPOCH_LINE,
    STEP_LINE,
    STEPS_PER_EPOCH,
    TUTORIAL_LINE,
    Recorder,
    digits,
    fake_context,
    lr_array,
    make_run,
)
from trainer.errors import ConfigError

EPOCHS = 2
EVERY = 10


@pytest.fixture(scope="module")
def printed(digits_dir):
    """Two epochs of a plain Model with a distinct rate per step; the lines and the step losses."""
    rates = lr_array(EPOCHS * STEPS_PER_EPOCH)
    run = make_run(rates, kind="plain")
    lines: list[str] = []
    losses: dict[int, float] = {}

    def record(hook, cb_params):
        losses[cb_params.cur_step_num] = float(cb_params.net_outputs.asnumpy())

    train, _ = digits(digits_dir)
    run.model.train(EPOCHS, train, callbacks=[LossMonitor(EVERY, printer=lines.append),
                                              Recorder(record, ["on_train_step_end"])],
                    dataset_sink_mode=False)
    return lines, losses, rates


def step_lines(lines):
    return [m for m in (re.match(STEP_LINE, line) for line in lines) if m]


def test_tutorial_line_fits_the_pattern():
    match = re.match(STEP_LINE, TUTORIAL_LINE)
    assert match and match["lr"] == "0.01000"
    assert not re.match(STEP_LINE, TUTORIAL_LINE.replace("loss:[", "loss: ["))


def test_every_line_is_a_step_line_or_an_epoch_summary(printed):
    lines, _, _ = printed
    assert lines
    for line in lines:
        assert re.match(STEP_LINE, line) or re.match(EPOCH_LINE, line), line


def test_step_lines_come_every_n_steps_of_each_epoch(printed):
    lines, _, _ = printed
    found = [(int(m["epoch"]), int(m["step"])) for m in step_lines(lines)]
    expected = [(e, s) for e in range(EPOCHS) for s in range(EVERY, STEPS_PER_EPOCH + 1, EVERY)]
    assert found == expected
    for m in step_lines(lines):
        assert int(m["epochs"]) == EPOCHS
        assert int(m["steps"]) == STEPS_PER_EPOCH


def test_step_lines_show_the_step_loss_and_the_epoch_mean(printed):
    lines, losses, _ = printed
    for m in step_lines(lines):
        global_step = int(m["epoch"]) * STEPS_PER_EPOCH + int(m["step"])
        first = int(m["epoch"]) * STEPS_PER_EPOCH + 1
        mean = np.mean([losses[s] for s in range(first, global_step + 1)])
        assert float(m["loss"]) == pytest.approx(losses[global_step], abs=1.5e-3)
        assert float(m["mean"]) == pytest.approx(mean, abs=1.5e-3)


def test_printed_rate_is_the_optimizers_rate_at_the_global_step(printed):
    lines, _, rates = printed
    shown = step_lines(lines)
    assert len({m["lr"] for m in shown}) == len(shown)  # the schedule moves between lines
    for m in shown:
        global_step = int(m["epoch"]) * STEPS_PER_EPOCH + int(m["step"])
        assert m["lr"] == f"{rates[global_step]:.5f}"


def test_one_epoch_summary_per_epoch_with_the_epoch_mean(printed):
    lines, losses, _ = printed
    summaries = [(i, re.match(EPOCH_LINE, line)) for i, line in enumerate(lines)]
    summaries = [(i, m) for i, m in summaries if m]
    assert len(summaries) == EPOCHS
    per_epoch = STEPS_PER_EPOCH // EVERY + 1
    for epoch, (index, m) in enumerate(summaries):
        assert index == (epoch + 1) * per_epoch - 1  # after that epoch's step lines
        steps = range(epoch * STEPS_PER_EPOCH + 1, (epoch + 1) * STEPS_PER_EPOCH + 1)
        assert float(m["loss"]) == pytest.approx(np.mean([losses[s] for s in steps]), abs=1.5e-3)
        assert float(m["step_ms"]) == pytest.approx(float(m["ms"]) / STEPS_PER_EPOCH, abs=2e-3)


class _FakeOptimizer:
    learning_rate = ms.Tensor(np.float32(0.01))

    def get_lr(self):
        return self.learning_rate


class _FakeLoss:
    def __init__(self, value: float) -> None:
        self.value = value

    def asnumpy(self):
        return np.float32(self.value)


def test_line_layout_is_the_tutorials():
    """Widths and separators as in ``Epoch:[  0/ 10], step:[ 1875/ 1875], ...``."""
    lines: list[str] = []
    monitor = LossMonitor(1875, printer=lines.append)
    steps, last = 1875, 0.189
    other = (1.176 * steps - last) / (steps - 1)  # so the epoch mean prints as 1.176
    context = fake_context(epoch_num=10, batch_num=steps, optimizer=_FakeOptimizer())
    cb_params = context.original_args()
    monitor.on_train_epoch_begin(context)
    for step in range(1, steps + 1):
        cb_params.cur_step_num = step
        cb_params.net_outputs = _FakeLoss(last if step == steps else other)
        monitor.on_train_step_end(context)
    assert len(lines) == 1
    timeless = re.sub(r"time:\d+\.\d{3} ms", "time:T ms", lines[0])
    assert timeless == re.sub(r"time:\d+\.\d{3} ms", "time:T ms", TUTORIAL_LINE)


def test_zero_prints_only_epoch_summaries(digits_dir):
    run = make_run(0.05, kind="step")
    lines: list[str] = []
    train, _ = digits(digits_dir)
    run.model.train(1, train, callbacks=[LossMonitor(0, printer=lines.append)],
                    dataset_sink_mode=False)
    assert len(lines) == 1 and re.match(EPOCH_LINE, lines[0])


@pytest.mark.parametrize("value", [-1, 2.5, "10", None])
def test_rejects_bad_print_interval(value):
    with pytest.raises(ConfigError, match="per_print_times"):
        LossMonitor(value)


def _count_copies(monkeypatch, run):
    """Counts device-to-host copies: Tensor.asnumpy and every parameter's own asnumpy."""
    count = [0]
    original = ms.Tensor.asnumpy

    def tensor_asnumpy(self):
        count[0] += 1
        return original(self)

    monkeypatch.setattr(ms.Tensor, "asnumpy", tensor_asnumpy)
    network = run.train_network if run.train_network is not None else run.model.train_network
    for param in network.get_parameters():
        def param_asnumpy(_read=param.asnumpy):
            count[0] += 1
            return _read()

        monkeypatch.setattr(param, "asnumpy", param_asnumpy, raising=False)
    return count


@pytest.mark.parametrize("kind, quiet_copies", [("step", 0), ("plain", 1)])
def test_quiet_steps_copy_nothing_from_the_device(monkeypatch, digits_dir, kind, quiet_copies):
    """With TrainStep a step that prints nothing copies nothing; a plain Model copies its loss.

    Copies are counted over the whole step (the compiled step and every callback), except on
    the first step, whose graph compilation folds constants on the host: there only the
    monitor's own hook is counted.
    """
    every = 7
    run = make_run(lr_array(STEPS_PER_EPOCH), kind=kind)
    train, _ = digits(digits_dir)
    lines: list[str] = []
    count = _count_copies(monkeypatch, run)
    marks: dict[tuple[str, int], int] = {}
    copies: dict[int, tuple[int, int]] = {}

    def mark(hook, cb_params):
        marks[hook, cb_params.cur_step_num] = count[0]

    def after(hook, cb_params):
        step = cb_params.cur_step_num
        start = marks["on_train_step_end" if step == 1 else "on_train_step_begin", step]
        copies[step] = (count[0] - start, len(lines))

    run.model.train(1, train, callbacks=[Recorder(mark, ["on_train_step_begin",
                                                         "on_train_step_end"]),
                                         LossMonitor(every, printer=lines.append),
                                         Recorder(after, ["on_train_step_end"])],
                    dataset_sink_mode=False)
    assert sorted(copies) == list(range(1, STEPS_PER_EPOCH + 1))
    printed_before = 0
    for step in sorted(copies):
        delta, printed_now = copies[step]
        if step % every:
            assert printed_now == printed_before
            assert delta <= quiet_copies, f"step {step} copied {delta} tensors"
        else:
            assert printed_now == printed_before + 1
            assert 0 < delta <= 16  # the loss, the four totals, the step, the rates
        printed_before = printed_now


def test_resumed_run_counts_epochs_of_the_whole_run(digits_dir):
    """Model.train(3, initial_epoch=1): lines say epochs 1 and 2 (0-based) of 3, not of 2."""
    run = make_run(0.05, kind="step")
    lines: list[str] = []
    train, _ = digits(digits_dir)
    run.model.train(3, train, callbacks=[LossMonitor(STEPS_PER_EPOCH, printer=lines.append)],
                    initial_epoch=1, dataset_sink_mode=False)
    shown = [(m["epoch"], m["epochs"]) for m in step_lines(lines)]
    assert shown == [("1", "3"), ("2", "3")]


def _one_short_epoch(monitor: LossMonitor) -> None:
    context = fake_context(epoch_num=1, batch_num=4, optimizer=_FakeOptimizer())
    monitor.on_train_epoch_begin(context)
    for step in range(1, 5):
        context.original_args().cur_step_num = step
        context.original_args().net_outputs = _FakeLoss(0.5)
        monitor.on_train_step_end(context)
    monitor.on_train_epoch_end(context)


@pytest.fixture
def warning_root():
    """Logging as after ``logging.basicConfig()``: a root handler, level WARNING."""
    root, ours = logging.getLogger(), logging.getLogger("mstrain")
    saved = (root.handlers[:], root.level, ours.handlers[:], ours.level)
    root.handlers[:] = [logging.NullHandler()]
    root.setLevel(logging.WARNING)
    ours.handlers[:] = []
    ours.setLevel(logging.NOTSET)
    yield
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])
    ours.handlers[:] = saved[2]
    ours.setLevel(saved[3])


def test_default_printer_prints_when_logging_would_drop_the_lines(capsys, warning_root):
    """A root handler at WARNING (basicConfig(), pytest) must not swallow the lines."""
    _one_short_epoch(LossMonitor(2))
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 3 and re.match(STEP_LINE, out[0]) and re.match(EPOCH_LINE, out[2])


@pytest.fixture
def plain_logger():
    """The mstrain logger as a fresh process has it (a run in this process may have set it up)."""
    ours = logging.getLogger("mstrain")
    saved = (ours.handlers[:], ours.level, ours.propagate)
    ours.handlers[:], ours.propagate = [], True
    ours.setLevel(logging.NOTSET)
    yield
    ours.handlers[:], ours.propagate = saved[0], saved[2]
    ours.setLevel(saved[1])


def test_default_printer_uses_the_logger_when_it_is_set_up(capsys, caplog, plain_logger):
    with caplog.at_level(logging.INFO, logger="mstrain"):
        _one_short_epoch(LossMonitor(2))
    assert len([r for r in caplog.records if r.name == "mstrain"]) == 3
    assert capsys.readouterr().out == ""
