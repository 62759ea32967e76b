"""ProgressBar: off without a terminal; when on, loss lines through the logger stay whole."""

from __future__ import annotations

import io
import logging
import re
import sys

import numpy as np
import pytest

from callbacks import EpochStats, LossMonitor, ProgressBar
from tests.cbkit import EPOCH_LINE, STEP_LINE, STEPS_PER_EPOCH, Recorder, digits, make_run
from trainer.logs import TqdmHandler, setup_logging


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def clean_logger():
    """Lets a test call setup_logging() and puts the ``mstrain`` logger back afterwards."""
    logger = logging.getLogger("mstrain")
    saved = (list(logger.handlers), logger.level, logger.propagate)
    for handler in saved[0]:
        if isinstance(handler, TqdmHandler):
            logger.removeHandler(handler)
    yield logger
    logger.handlers[:] = saved[0]
    logger.setLevel(saved[1])
    logger.propagate = saved[2]


def test_off_when_stderr_is_not_a_terminal(monkeypatch, digits_dir):
    stderr = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stderr)
    bar = ProgressBar()
    assert bar.enabled is False
    bars: list[object] = []
    run = make_run(0.05, kind="step")
    train, _ = digits(digits_dir)
    run.model.train(1, train, callbacks=[bar, Recorder(lambda hook, p: bars.append(bar._bar),
                                                       ["on_train_step_end"])],
                    dataset_sink_mode=False)
    assert bars and all(b is None for b in bars)
    assert "step" not in stderr.getvalue()


def test_on_by_default_on_a_terminal(monkeypatch):
    monkeypatch.setattr(sys, "stderr", _Terminal())
    assert ProgressBar().enabled is True
    assert ProgressBar(enabled=False).enabled is False


def test_enabled_bar_and_logged_loss_lines(capsys, clean_logger, digits_dir):
    """A resumed run (epochs 2 and 3 of 3): bar on stderr, whole loss lines on stdout."""
    setup_logging()
    stats = EpochStats()
    bar = ProgressBar(refresh_seconds=0.0, enabled=True, stats=stats)
    bars: list[object] = []
    run = make_run(0.05, kind="step")
    train, _ = digits(digits_dir)
    run.model.train(3, train, callbacks=[bar, LossMonitor(5, stats=stats),
                                         Recorder(lambda hook, p: bars.append(bar._bar),
                                                  ["on_train_step_end"])],
                    initial_epoch=1, dataset_sink_mode=False)
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert len(lines) == 2 * (STEPS_PER_EPOCH // 5 + 1)
    for line in lines:
        assert re.match(STEP_LINE, line) or re.match(EPOCH_LINE, line), repr(line)
    assert [m["epochs"] for m in map(re.compile(STEP_LINE).match, lines) if m] == ["3"] * 10
    assert "epoch 2/3" in err and "epoch 3/3" in err
    assert "loss=" in err and "acc=" in err
    assert len(bars) == 2 * STEPS_PER_EPOCH and all(b is not None for b in bars)
    assert bar._bar is None  # closed at the end


def test_samples_per_second_counts_samples_not_feed_elements(monkeypatch, tmp_path):
    """The cached feed yields whole batches, so the dataset reports a batch size of 1; the rate
    must still count the samples each step trained on."""
    from mindspore.train import Model

    from tests.cbkit import Tiny, graph_mode, loss_fn
    from trainer.data import BatchFeed, feed_dataset
    from trainer.engine.step import TrainStep

    monkeypatch.setattr(sys, "stderr", _Terminal())
    graph_mode()
    rng = np.random.default_rng(0)
    images = rng.normal(size=(640, 1, 28, 28)).astype(np.float32)
    labels = rng.integers(0, 10, 640).astype(np.int32)
    train = feed_dataset(BatchFeed(images, labels, 32, training=True))
    assert train.get_batch_size() == 1
    net = Tiny()
    import mindspore.nn as nn
    step = TrainStep(net, loss_fn(), nn.Momentum(net.trainable_params(), 0.01, 0.9))
    bar = ProgressBar(refresh_seconds=0.0, enabled=True)
    shown: list[tuple[float, float]] = []

    def record(hook, params):
        if bar._bar is not None and "samples/s" in bar._bar.postfix:
            rate = bar._bar.format_dict["rate"] or 0.0
            shown.append((rate, float(bar._bar.postfix.split("samples/s=")[1].split(",")[0])))

    Model(step).train(1, train, callbacks=[bar, Recorder(record, ["on_train_step_end"])],
                      dataset_sink_mode=False)
    assert shown
    for steps_per_second, samples_per_second in shown:
        assert samples_per_second == pytest.approx(steps_per_second * 32, rel=0.02, abs=1)
