"""TerminateOnNaN stops a diverged run, and ModelCheckpoint keeps nothing from after the NaN."""

from __future__ import annotations

import json

import mindspore as ms
import numpy as np
import pytest
from mindspore import Parameter, Tensor

from callbacks import EpochStats, History, ModelCheckpoint, TerminateOnNaN
from tests.cbkit import STEPS_PER_EPOCH, Recorder, Tiny, digits, fake_context, make_run
from trainer.checkpoint import BEST, LATEST, load_bundle
from trainer.errors import ConfigError

NAN_STEP = STEPS_PER_EPOCH + 3  # the third step of epoch 2


def _reject_constant(name):
    raise ValueError(f"{name} is not JSON")


class Poisonable(Tiny):
    """Tiny, plus a term added to the logits that a test can turn into NaN mid-run."""

    def __init__(self) -> None:
        super().__init__()
        self.poison = Parameter(Tensor(0.0, ms.float32), name="poison", requires_grad=False)

    def construct(self, x):
        return self.fc(self.flatten(x)) + self.poison


@pytest.mark.parametrize("kind, check_every", [("step", 1), ("step", 0), ("plain", 1),
                                                ("plain", 0)])
def test_nan_stops_training_and_nothing_after_it_is_saved(tmp_path, digits_dir, kind,
                                                          check_every):
    net = Poisonable()
    run = make_run(0.05, kind=kind, net=net)
    steps_run: list[int] = []

    def poison(hook, cb_params):
        steps_run.append(cb_params.cur_step_num)
        if cb_params.cur_step_num == NAN_STEP:
            net.poison.set_data(Tensor(np.nan, ms.float32))

    stats = EpochStats()
    guard = TerminateOnNaN(check_every, stats=stats)
    history = History(tmp_path / "history", plot=False, stats=stats)
    # val_accuracy with mode "min": the diverged network's worse accuracy looks like a new best,
    # so only the finiteness check stands between it and best.ckpt.
    ckpt = ModelCheckpoint(tmp_path, every_n_steps=2, keep_last=0, save_best=True,
                           monitor="val_accuracy", mode="min", stats=stats)
    train, valid = digits(digits_dir)
    run.model.fit(3, train, valid, callbacks=[Recorder(poison, ["on_train_step_begin"]), guard,
                                              history, ckpt], dataset_sink_mode=False)

    assert guard.stopped and "epoch 2" in guard.stopped
    stop_step = NAN_STEP if check_every else 2 * STEPS_PER_EPOCH
    assert max(steps_run) == stop_step  # stopped at once (or at the epoch end), epoch 3 never ran
    assert not np.isfinite(net.fc.weight.asnumpy()).all()  # the weights really diverged
    # A stop at the epoch end still records that epoch, NaN and all; the files stay strict JSON.
    assert history.epochs == ([1] if check_every else [1, 2])
    assert not np.isnan(history.history["loss"][0])
    if not check_every:
        assert np.isnan(history.history["loss"][1])
    text = (tmp_path / "history" / "history.json").read_text()
    saved_history = json.loads(text, parse_constant=_reject_constant)
    assert saved_history["history"]["loss"][1:] == ([] if check_every else [None])

    saved = sorted(tmp_path.glob("*.ckpt"))
    assert saved and (tmp_path / BEST) in saved
    for path in saved:
        bundle = load_bundle(path)
        assert bundle.global_step < NAN_STEP, path.name
        for name, value in bundle.params.items():
            assert np.isfinite(value.asnumpy()).all(), f"{path.name}: {name}"
    best = load_bundle(tmp_path / BEST)
    assert best.epoch == 1 and best.global_step == STEPS_PER_EPOCH
    pointer = json.loads((tmp_path / LATEST).read_text())
    assert load_bundle(tmp_path / pointer["file"]).global_step == max(
        load_bundle(p).global_step for p in saved if p.name != BEST)
    assert not [p for p in tmp_path.iterdir() if ".tmp" in p.name]


def test_stopped_is_reset_by_a_new_run():
    guard = TerminateOnNaN()
    guard.stopped = "earlier"
    guard.on_train_begin(fake_context())
    assert guard.stopped is None


@pytest.mark.parametrize("value", [-1, 0.5, "1"])
def test_rejects_bad_interval(value):
    with pytest.raises(ConfigError, match="check_every"):
        TerminateOnNaN(value)
