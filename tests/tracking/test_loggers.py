"""The tracking loggers on their own: the interface with a plain Model, TensorBoard's rewind,
MLflow's continuity, and the checks before a run (the option, the extra, saved states)."""

from __future__ import annotations

import sys

import mindspore  # noqa: F401  (before tensorboard: it picks the protobuf backend it needs)
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from callbacks import EpochStats, History
from callbacks.mlflow_logger import MLflowLogger
from callbacks.tensorboard_logger import TensorBoardLogger, event_files, png_size, rewind_events
from callbacks.tracking import TrackingLogger, metric_name
from tests.cbkit import STEPS_PER_EPOCH, digits, make_run
from tests.conftest import config_error
from trainer.config import TrainConfig
from trainer.extras import check_tracking


def read_events(folder) -> EventAccumulator:
    """TensorBoard's own reader over a folder, keeping every value."""
    acc = EventAccumulator(str(folder), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    acc.Reload()
    return acc


class ListLogger(TrackingLogger):
    """A user's backend: the four methods of the interface, recording every call."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.calls: list[tuple] = []

    def log_hparams(self, params, metrics):
        self.calls.append(("hparams", dict(params), list(metrics)))

    def log_metrics(self, metrics, step):
        self.calls.append(("metrics", dict(metrics), step))

    def log_artifact(self, path, kind="file"):
        self.calls.append(("artifact", path, kind))

    def finalize(self, status):
        self.calls.append(("finalize", status))


# ---------------------------------------------------------------------- the interface
def test_a_users_logger_gets_steps_epochs_and_one_end_from_a_plain_model(digits_dir):
    run = make_run()
    train, valid = digits(digits_dir)
    stats = EpochStats()  # shared, as Trainer shares it
    history = History(stats=stats)
    user = ListLogger(log_every=10, hparams={"lr": 0.05, "milestones": [5, 8]}, stats=stats)
    run.model.fit(2, train, valid, callbacks=[history, user], dataset_sink_mode=False)

    kinds = [c[0] for c in user.calls]
    assert kinds[0] == "hparams" and kinds[-1] == "finalize" and kinds.count("finalize") == 1
    assert user.calls[0][1] == {"lr": 0.05, "milestones": "[5, 8]"}  # scalars only
    assert user.calls[-1] == ("finalize", "FINISHED")
    steps = [(c[2], c[1]) for c in user.calls if c[0] == "metrics"]
    step_points = [s for s, m in steps if "step/loss" in m]
    per_epoch = [10, 20][: STEPS_PER_EPOCH // 10]
    assert step_points == per_epoch + [STEPS_PER_EPOCH + s for s in per_epoch]
    epoch_points = [(s, m) for s, m in steps if "epoch" in m]
    assert [s for s, _ in epoch_points] == [STEPS_PER_EPOCH, 2 * STEPS_PER_EPOCH]
    for (_, logged), row in zip(epoch_points, history.rows):
        for column, value in row.items():
            assert logged[metric_name(column)] == pytest.approx(value)
        assert logged["train/samples_per_second"] > 0


def test_metric_names_follow_the_history_columns():
    assert [metric_name(c) for c in ("epoch", "loss", "val_accuracy", "test_loss", "lr")] == [
        "epoch", "train/loss", "val/accuracy", "test/loss", "train/lr"]


# ------------------------------------------------------------------------- TensorBoard
def test_tensorboard_files_read_back_equal_to_the_history(tmp_path, digits_dir):
    run = make_run()
    train, valid = digits(digits_dir)
    stats = EpochStats()
    history = History(tmp_path, stats=stats)
    tb = TensorBoardLogger(tmp_path / "tb", log_every=10, hparams={"lr": 0.05, "net": "tiny"},
                           stats=stats)
    run.model.fit(2, train, valid, callbacks=[history, tb], dataset_sink_mode=False)
    assert tb.last_step == 2 * STEPS_PER_EPOCH  # where the image goes
    tb.log_artifact(tmp_path / "history.png", "image")
    tb.close()

    acc = read_events(tmp_path / "tb")
    for column, values in history.history.items():
        points = acc.Scalars(metric_name(column))
        assert [p.step for p in points] == [STEPS_PER_EPOCH, 2 * STEPS_PER_EPOCH]
        assert [p.value for p in points] == pytest.approx(values, rel=1e-6)  # float32 in files
    assert [p.step for p in acc.Scalars("step/loss")] == [10, 20, 35, 45]
    image = acc.Images("images/history")[0]
    assert (image.width, image.height) == png_size((tmp_path / "history.png").read_bytes())
    assert {"_hparams_/experiment", "_hparams_/session_start_info",
            "_hparams_/session_end_info"} <= set(acc.Tags()["tensors"])


def _write_steps(folder, steps, value=1.0, end=False):
    tb = TensorBoardLogger(folder, hparams={"a": 1}, step=max(steps))  # where the end goes
    for step in steps:
        tb.log_metrics({"step/loss": value * step}, step)
    if end:
        tb.finalize("FINISHED")
    tb.close()


def test_rewind_keeps_each_step_once_up_to_the_resume_step(tmp_path):
    _write_steps(tmp_path, range(1, 9), end=True)          # a run that went to step 8 and ended
    _write_steps(tmp_path, range(4, 12), value=2.0)       # a later process that repeated 4..11
    assert len(event_files(tmp_path)) == 2

    dropped = rewind_events(tmp_path, 6)
    assert len(event_files(tmp_path)) == 1 and dropped > 0
    points = read_events(tmp_path).Scalars("step/loss")
    assert [(p.step, p.value) for p in points] == [(s, float(s)) for s in range(1, 7)]
    assert "_hparams_/session_end_info" not in read_events(tmp_path).Tags()["tensors"]
    assert rewind_events(tmp_path, 6) == 0  # a second rewind (a crash in between) is harmless
    assert not list(tmp_path.glob(".*rewind"))


def test_png_size_refuses_other_files():
    with pytest.raises(ValueError):
        png_size(b"GIF89a" + b"\0" * 30)


# ------------------------------------------------------------------------------ MLflow
def _history(client, run_id, key):
    return sorted((m.step, m.value) for m in client.get_metric_history(run_id, key))


def test_mlflow_resume_sends_what_the_server_lacks_and_nothing_twice(tmp_path):
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    first = MLflowLogger(uri, "exp", run_name="demo", hparams={"lr": 0.1},
                         artifact_location=(tmp_path / "art").as_uri())
    first.log_hparams(first.hparams, [])
    for step in range(1, 11):
        first.log_metrics({"step/loss": step / 10}, step)
    saved = first.state_dict()  # what a bundle at step 8 would hold: the server has 1..10 later
    saved["unsent"] = [["step/loss", s / 10, 0, s] for s in (7, 8)] + [["train/loss", 0.5, 0, 8]]
    first.finalize("KILLED")
    assert first.run_id and not first.warnings

    second = MLflowLogger(uri, "exp", run_name="demo")
    second.load_state_dict(saved)
    second.rewind(8)
    for step in range(9, 15):  # the resumed run repeats 9 and 10, exactly as before
        second.log_metrics({"step/loss": step / 10}, step)
    second.finalize("FINISHED")

    client = MlflowClient(uri)
    run = client.get_run(first.run_id)
    assert second.run_id == first.run_id and run.info.status == "FINISHED"
    assert _history(client, run.info.run_id, "step/loss") == [(s, s / 10) for s in range(1, 15)]
    assert _history(client, run.info.run_id, "train/loss") == [(8, 0.5)]  # only in the bundle
    assert run.data.params == {"lr": "0.1"}
    assert run.data.tags["mstrain.run_uid"] == saved["run_uid"]


def test_mlflow_finds_its_run_by_tag_when_the_bundle_predates_the_run_id(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    first = MLflowLogger(uri, "exp")
    early = {"run_id": None, "run_uid": first.run_uid, "unsent": []}  # saved before the server
    first.log_hparams({}, [])                                          # had answered
    first.finalize("KILLED")
    second = MLflowLogger(uri, "exp")
    second.load_state_dict(early)
    second.rewind(5)
    second.finalize("FINISHED")
    assert second.run_id == first.run_id


@pytest.mark.parametrize("state, fault", [
    ({"run_id": "../../etc"}, "'run_id'"),
    ({"run_uid": 7}, "'run_uid'"),
    ({"unsent": [["loss", "high", 0, 1]]}, "'unsent'"),
    ({"unsent": "all"}, "'unsent'"),
])
def test_mlflow_refuses_a_damaged_saved_state(state, fault):
    with pytest.raises(ValueError, match=fault):
        MLflowLogger.check_state(state)


# ----------------------------------------------------------------- option and extra
@pytest.mark.parametrize("given, plain", [
    ("none", "none"), ("TensorBoard", "tensorboard"), ("mlflow, tensorboard", "mlflow,tensorboard"),
    ("tensorboard,tensorboard", "tensorboard"),
])
def test_report_to_takes_trackers_separated_by_commas(given, plain):
    assert TrainConfig(report_to=given).validate().report_to == plain


@pytest.mark.parametrize("given", ["wandb", "none,mlflow", "", ","])
def test_report_to_refuses_what_it_cannot_report_to(given):
    message = config_error(TrainConfig(report_to=given).validate)
    assert "'report_to'" in message and "tensorboard, mlflow" in message


def test_a_missing_tracker_names_the_extra_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "mlflow", None)
    check_tracking(["tensorboard"])
    message = config_error(check_tracking, ["tensorboard", "mlflow"])
    assert "--report-to mlflow needs the package mlflow" in message
    assert 'pip install -e ".[tracking]"' in message


def test_a_tensorboard_folder_that_cannot_be_written_warns_once_and_training_goes_on(
        tmp_path, caplog):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    tb = TensorBoardLogger(blocker / "tensorboard", hparams={"a": 1})
    with caplog.at_level("WARNING", logger="mstrain"):
        tb.log_hparams(tb.hparams, [])
        for step in (1, 2, 3):
            tb.log_metrics({"step/loss": 0.5}, step)
        tb.finalize("FINISHED")
    warnings = [r.getMessage() for r in caplog.records if "TensorBoard" in r.getMessage()]
    assert len(warnings) == 1 and "Not a directory" in warnings[0]
    assert "the run goes on" in warnings[0]


def test_rewind_keeps_what_precedes_a_torn_record(tmp_path):
    _write_steps(tmp_path, range(1, 6))
    path = event_files(tmp_path)[0]
    with open(path, "ab") as handle:  # a crash in the middle of writing the next record
        handle.write(b"\x40\x00\x00\x00\x00\x00\x00\x00garbage")
    rewind_events(tmp_path, 10)
    assert [p.step for p in read_events(tmp_path).Scalars("step/loss")] == [1, 2, 3, 4, 5]
