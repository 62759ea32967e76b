"""ModelCheckpoint: best and periodic bundles, retention, latest pointer, metadata, integrity."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import mindspore as ms
import numpy as np
import pytest

from callbacks import EpochStats, History, LearningRateMonitor, ModelCheckpoint
from tests.cbkit import (
    STEPS_PER_EPOCH,
    EpochWeights,
    Recorder,
    digits,
    lr_array,
    make_run,
    same_weights,
)
from trainer.checkpoint import BEST, LATEST, CheckpointStore, load_bundle
from trainer.checkpoint.states import collect_states
from trainer.errors import CheckpointError, ConfigError

EPOCHS = 3
TOTAL = EPOCHS * STEPS_PER_EPOCH
KEEP = 2
EVERY_STEPS = 10


def global_steps(folder: Path) -> list[int]:
    """Global steps of the periodic bundles in ``folder``, read from their names."""
    return sorted(int(m.group(1)) for p in folder.iterdir()
                  if (m := re.match(r"^(?:epoch|step)-\d+-gs(\d+)\.ckpt$", p.name)))


@pytest.fixture(scope="module")
def saved(tmp_path_factory, digits_dir):
    """One three-epoch run (TrainStep, validation) watched by several checkpoint callbacks."""
    root = tmp_path_factory.mktemp("ckpt")
    run = make_run(lr_array(TOTAL), kind="step")
    stats = EpochStats()
    history = History(stats=stats)
    rates = LearningRateMonitor()
    folders = {name: root / name for name in ("main", "max", "steps")}
    main = ModelCheckpoint(folders["main"], keep_last=KEEP, save_best=True, monitor="val_loss",
                           states=lambda: collect_states([history, rates, main]),
                           meta=lambda: {"note": "extra"}, stats=stats)
    # The same metric with the opposite preference, so one of the two bests is not the last.
    worst = ModelCheckpoint(folders["max"], every_n_epochs=0, save_best=True,
                            monitor="val_loss", mode="max", stats=stats)
    steps = ModelCheckpoint(folders["steps"], every_n_epochs=0, every_n_steps=EVERY_STEPS,
                            keep_last=0, stats=stats)
    snapshots = EpochWeights(run.net)
    train, valid = digits(digits_dir)
    run.model.fit(EPOCHS, train, valid, callbacks=[snapshots, history, rates, main, worst, steps],
                  dataset_sink_mode=False)
    return {"run": run, "history": history, "snapshots": snapshots, "folders": folders,
            "callbacks": {"main": main, "max": worst, "steps": steps}}


@pytest.mark.parametrize("folder, pick", [("main", np.argmin), ("max", np.argmax)])
def test_best_bundle_holds_the_best_epochs_weights(saved, folder, pick):
    history = saved["history"].history
    best_epoch = int(pick(history["val_loss"])) + 1
    bundle = load_bundle(saved["folders"][folder] / BEST)
    assert bundle.epoch == best_epoch
    assert bundle.meta.metrics["val_loss"] == pytest.approx(history["val_loss"][best_epoch - 1])
    expected = saved["snapshots"].by_epoch[best_epoch]
    assert same_weights(expected, {k: bundle.params[k].asnumpy() for k in expected})
    assert saved["callbacks"][folder].best_path == saved["folders"][folder] / BEST


def test_the_two_bests_differ(saved):
    """Guards the test above: with val_loss not constant, min and max pick different epochs."""
    main = load_bundle(saved["folders"]["main"] / BEST)
    worst = load_bundle(saved["folders"]["max"] / BEST)
    assert main.epoch != worst.epoch
    assert not same_weights(saved["snapshots"].by_epoch[main.epoch],
                            saved["snapshots"].by_epoch[worst.epoch])


def test_retention_keeps_exactly_the_newest_k(saved):
    steps = global_steps(saved["folders"]["main"])
    assert steps == [STEPS_PER_EPOCH * e for e in range(EPOCHS - KEEP + 1, EPOCHS + 1)]


def test_every_n_steps_saves_at_each_multiple_and_at_the_end(saved):
    folder = saved["folders"]["steps"]
    assert global_steps(folder) == [*range(EVERY_STEPS, TOTAL + 1, EVERY_STEPS), TOTAL]
    for path in CheckpointStore(folder).periodic():
        meta = load_bundle(path).meta
        assert f"gs{meta.global_step:08d}" in path.name
        # Completed epochs plus steps into the next one always add up to the global step.
        assert meta.epoch * STEPS_PER_EPOCH + meta.step_in_epoch == meta.global_step
        assert meta.steps_per_epoch == STEPS_PER_EPOCH


@pytest.mark.parametrize("folder", ["main", "max", "steps"])
def test_latest_points_to_the_newest_bundle(saved, folder):
    folder = saved["folders"][folder]
    pointer = json.loads((folder / LATEST).read_text())
    newest = CheckpointStore(folder).periodic()[-1]
    assert pointer["file"] == newest.name
    bundle = load_bundle(folder / pointer["file"])
    assert (pointer["epoch"], pointer["global_step"]) == (bundle.epoch, bundle.global_step)
    assert bundle.global_step == TOTAL
    assert CheckpointStore(folder).latest()[0].path == folder / pointer["file"]


def test_bundle_metadata(saved):
    run, history = saved["run"], saved["history"]
    folder = saved["folders"]["main"]
    bundle = load_bundle(folder / json.loads((folder / LATEST).read_text())["file"])
    meta = bundle.meta
    assert meta.epoch == EPOCHS and meta.global_step == TOTAL
    assert meta.step_in_epoch == 0 and meta.steps_per_epoch == STEPS_PER_EPOCH
    assert meta.extra["note"] == "extra"
    last = history.rows[-1]
    for key in ("loss", "accuracy", "val_loss", "val_accuracy", "lr"):
        assert meta.metrics[key] == pytest.approx(last[key]), key
    states = meta.callbacks
    assert len(states["History"]["rows"]) == EPOCHS
    assert [r["step"] for r in states["LearningRateMonitor"]["records"]] == [
        STEPS_PER_EPOCH * e for e in range(1, EPOCHS + 1)]
    assert states["ModelCheckpoint"]["monitor"] == "val_loss"
    assert meta.epoch_stats["epoch"] == EPOCHS
    # The optimizer travels with the weights: step counter and the whole per-step rate array.
    assert int(bundle.params["global_step"].asnumpy().reshape(-1)[0]) == TOTAL
    np.testing.assert_array_equal(bundle.params["learning_rate"].asnumpy(), run.lr_values())


def test_no_temporary_files_are_left(saved):
    for folder in saved["folders"].values():
        names = [p.name for p in folder.iterdir()]
        assert names and not [n for n in names if n.startswith(".") or ".tmp" in n], names


def _flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle:middle + 4] = bytes(b ^ 0xFF for b in data[middle:middle + 4])
    path.write_bytes(bytes(data))


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _empty(path: Path) -> None:
    path.write_bytes(b"")


def _plain(path: Path) -> None:
    ms.save_checkpoint([{"name": "w", "data": ms.Tensor(np.ones(3, np.float32))}], str(path))


@pytest.mark.parametrize("damage, message", [(_flip, "checksum|cannot be read"),
                                             (_truncate, "cannot be read|checksum"),
                                             (_empty, "cannot be read"),
                                             (_plain, "without this tool's metadata")])
def test_damaged_bundle_is_refused(saved, tmp_path, damage, message):
    copy = tmp_path / "epoch-0003-gs00000075.ckpt"
    shutil.copy(saved["folders"]["main"] / BEST, copy)
    load_bundle(copy)  # intact
    damage(copy)
    with pytest.raises(CheckpointError, match=message):
        load_bundle(copy)


def test_missing_bundle_is_refused(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_bundle(tmp_path / "nothing.ckpt")


def test_retention_counts_bundles_of_an_earlier_process(saved, tmp_path, digits_dir):
    """A resumed process prunes the files the earlier one left, keeping the newest K overall."""
    earlier = saved["folders"]["steps"]
    resumed_at = 2 * STEPS_PER_EPOCH
    for path in CheckpointStore(earlier).periodic():
        if load_bundle(path).global_step <= resumed_at:
            shutil.copy(path, tmp_path / path.name)
    left = CheckpointStore(tmp_path).periodic()
    (tmp_path / LATEST).write_text(json.dumps({"file": left[-1].name, "epoch": 2,
                                               "global_step": resumed_at}))
    assert len(left) == resumed_at // EVERY_STEPS

    run = make_run(lr_array(TOTAL), kind="step")
    run.opt.global_step.set_data(ms.Tensor(np.array([resumed_at], np.int32)))
    run.train_network.stat_steps.set_data(ms.Tensor(resumed_at, ms.int64))  # as restored
    keep = 3
    ckpt = ModelCheckpoint(tmp_path, every_n_steps=EVERY_STEPS, keep_last=keep)
    after_first_save: list[list[int]] = []

    def look(hook, cb_params):
        if ckpt.last_saved_step > resumed_at and not after_first_save:
            after_first_save.append(global_steps(tmp_path))

    train, _ = digits(digits_dir)
    run.model.train(EPOCHS, train, callbacks=[ckpt, Recorder(look, ["on_train_step_end"])],
                    initial_epoch=2, dataset_sink_mode=False)
    assert after_first_save == [[resumed_at - EVERY_STEPS, resumed_at, resumed_at + EVERY_STEPS]]
    assert global_steps(tmp_path) == [resumed_at + 10, resumed_at + 20, TOTAL]
    assert json.loads((tmp_path / LATEST).read_text())["global_step"] == TOTAL


def test_keep_zero_keeps_everything(tmp_path, digits_dir):
    run = make_run(0.05, kind="plain")
    ckpt = ModelCheckpoint(tmp_path, every_n_steps=5, every_n_epochs=0, keep_last=0)
    train, _ = digits(digits_dir)
    run.model.train(1, train, callbacks=[ckpt], dataset_sink_mode=False)
    assert global_steps(tmp_path) == list(range(5, STEPS_PER_EPOCH + 1, 5))
    bundle = load_bundle(CheckpointStore(tmp_path).periodic()[-1])
    assert bundle.epoch == 1 and bundle.global_step == STEPS_PER_EPOCH
    assert np.isfinite(bundle.meta.metrics["loss"])  # host-side mean with a plain Model


@pytest.mark.parametrize("key", ["every_n_epochs", "every_n_steps", "keep_last"])
@pytest.mark.parametrize("value", [-1, 1.5])
def test_rejects_bad_counts(tmp_path, key, value):
    with pytest.raises(ConfigError, match=key):
        ModelCheckpoint(tmp_path, **{key: value})
