"""``--report-to`` as a user runs it: train.py records the run in TensorBoard and MLflow, a stop
and ``--resume auto`` continue the same record (each step once), evaluation adds to it, a real
``mlflow server`` on 127.0.0.1 works the same, and a dead one never stops training."""

from __future__ import annotations

import json
import os
import socket
import subprocess
from pathlib import Path

import mindspore  # noqa: F401  (before tensorboard: it picks the protobuf backend it needs)
import pytest
from mlflow import MlflowClient

from callbacks.tracking import metric_name
from tests.conftest import ROOT, run_train, train_here
from tests.tracking.test_loggers import read_events
from trainer.checkpoint import load_bundle

pytestmark = pytest.mark.e2e

EPOCHS, LOG_EVERY = 3, 10
STEPS = 45  # 1,600 digits less the 10% held out, in batches of 32
STEP_POINTS = [e * STEPS + s for e in range(EPOCHS) for s in (10, 20, 30, 40)]
EPOCH_POINTS = [STEPS * e for e in range(1, EPOCHS + 1)]
# Timings differ between an interrupted and an uninterrupted epoch; everything else must not.
TIMINGS = ("train/epoch_time", "train/samples_per_second")
TESTS = Path(__file__).resolve().parents[1]  # userpkg, the signalling callback


def common(digits_dir: Path, name: str, *extra: str) -> list[str]:
    return ["--data-dir", str(digits_dir), "--output-dir", "runs", "--run-name", name,
            "--epochs", str(EPOCHS), "--log-every", str(LOG_EVERY), "--lr", "0.05",
            "--no-progress", *extra]


def signal_at(hook: str, epoch: int, step: int, signal: str) -> list[str]:
    """A callback sending ``signal`` at the first step end of ``epoch`` from global step
    ``step`` on (``Model``'s ``cur_step_num``)."""
    spec = f"hook='{hook}', epoch={epoch}, step={step}, signals=['{signal}']"
    return ["--callback", f"userpkg.signals:SelfSignal({spec})"]


def ok(result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    return result


def history(run_dir: Path) -> dict:
    return json.loads((run_dir / "history.json").read_text())


def check_mlflow_run(client: MlflowClient, run_id: str, run_dir: Path) -> None:
    """The MLflow run holds every step once, the history's values, and the run's files."""
    saved = history(run_dir)
    for key, steps in (("step/loss", STEP_POINTS), ("step/lr", STEP_POINTS),
                       ("epoch", EPOCH_POINTS)):
        assert sorted(m.step for m in client.get_metric_history(run_id, key)) == steps, key
    for column, values in saved["history"].items():
        key = metric_name(column)
        if key in TIMINGS or key.startswith("test/"):
            continue
        points = sorted((m.step, m.value) for m in client.get_metric_history(run_id, key))
        assert points == [pytest.approx((s, v)) for s, v in zip(EPOCH_POINTS, values)], key
    final = client.get_metric_history(run_id, "test/accuracy")
    assert [m.value for m in final] == [pytest.approx(saved["test"]["final"]["test_accuracy"])]
    files = {a.path for a in client.list_artifacts(run_id)}
    assert {"config.yaml", "history.json", "history.csv", "history.png", "checkpoints"} <= files
    assert [a.path for a in client.list_artifacts(run_id, "checkpoints")] == [
        "checkpoints/best.ckpt"]


def only_run(client: MlflowClient, name: str):
    runs = client.search_runs([client.get_experiment_by_name("mstrain").experiment_id],
                              filter_string=f"attributes.run_name = '{name}'")
    assert len(runs) == 1, [r.info.run_name for r in runs]
    return runs[0]


# ------------------------------------------------- the default store, through a stop
@pytest.fixture(scope="module")
def stopped_and_resumed(tmp_path_factory, digits_dir):
    """A run recorded in TensorBoard and MLflow's default store, stopped by SIGTERM in the
    middle of epoch 2, resumed with --resume auto, then evaluated and exported with
    --report-to."""
    work = tmp_path_factory.mktemp("tracking")
    args = common(digits_dir, "demo", "--report-to", "tensorboard,mlflow")
    first = run_train([*args, *signal_at("on_train_step_end", 2, STEPS + 25, "SIGTERM")],
                      cwd=work, env={"PYTHONPATH": str(TESTS)})
    assert first.returncode == 130, first.stdout + first.stderr
    # The stop is the user's command; the rest runs the same main in this process.
    second = ok(train_here([*args, "--resume", "auto"], cwd=work))
    evaluated = ok(train_here(["--eval-only", "--ckpt", "runs/demo", "--data-dir",
                               str(digits_dir), "--output-dir", "runs",
                               "--report-to", "tensorboard,mlflow"], cwd=work))
    ok(train_here(["--export", "mindir", "--ckpt", "runs/demo", "--output-dir", "runs",
                   "--report-to", "mlflow"], cwd=work))
    return work, first, second, evaluated


def test_tensorboard_record_continues_through_a_stop_equal_to_the_history(stopped_and_resumed):
    work, first, _, _ = stopped_and_resumed
    run_dir = work / "runs" / "demo"
    acc = read_events(run_dir / "tensorboard")
    assert [p.step for p in acc.Scalars("step/loss")] == STEP_POINTS
    saved = history(run_dir)
    for column, values in saved["history"].items():
        key = metric_name(column)
        if key in TIMINGS or key.startswith("test/"):
            continue
        points = acc.Scalars(key)
        assert [p.step for p in points] == EPOCH_POINTS, key
        assert [p.value for p in points] == pytest.approx(values, rel=1e-6), key
    assert [p.value for p in acc.Scalars("test/accuracy")] == pytest.approx(
        [saved["test"]["final"]["test_accuracy"]], rel=1e-6)
    val = [p.value for p in acc.Scalars("val/accuracy")]
    assert val[-1] > 0.6 and val[-1] > val[0]  # the model learns
    assert set(acc.Tags()["images"]) == {"images/history", "images/confusion",
                                         "images/mistakes"}
    assert {"_hparams_/experiment", "_hparams_/session_start_info",
            "_hparams_/session_end_info"} <= set(acc.Tags()["tensors"])
    assert "interrupted by SIGTERM" in first.stderr


def test_mlflow_default_store_holds_one_run_continued_through_the_stop(stopped_and_resumed):
    work, _, _, _ = stopped_and_resumed
    client = MlflowClient(f"sqlite:///{work / 'runs' / 'mlflow.db'}")
    run = only_run(client, "demo")
    assert run.info.status == "FINISHED"
    check_mlflow_run(client, run.info.run_id, work / "runs" / "demo")
    config = json.loads(json.dumps(run.data.params))
    assert config["net"] == "lenet" and config["epochs"] == str(EPOCHS)
    assert config["lr"] == "0.05" and "output_dir" not in config
    tags = run.data.tags
    assert tags["mstrain.network"] == "lenet" and tags["mstrain.data_source"] == "mnist"
    assert tags["mstrain.mindspore_version"] == "2.7.2"
    bundle = load_bundle(work / "runs" / "demo" / "checkpoints" / "best.ckpt")
    assert tags["mstrain.fingerprint"] == bundle.meta.run.fingerprint  # the checkpoints' own
    # --eval-only added its scores and files to the same run, at the best checkpoint's step.
    evaluated = client.get_metric_history(run.info.run_id, "eval/accuracy")
    report = json.loads((work / "runs" / "demo" / "evaluation.json").read_text())
    assert [m.value for m in evaluated] == [pytest.approx(report["accuracy"])]
    assert {"confusion.png", "evaluation.json"} <= {a.path for a in
                                                    client.list_artifacts(run.info.run_id)}
    # --export added the exported file.
    assert [a.path for a in client.list_artifacts(run.info.run_id, "export")] == [
        "export/lenet.mindir"]
    assert (work / "runs" / "mlartifacts").is_dir()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# ------------------------------------------------------------------ faults of a tracker
def test_a_closed_port_warns_once_and_training_is_unaffected(tmp_path, digits_dir):
    port = free_port()  # nothing listens there
    result = ok(train_here([*common(digits_dir, "closed", "--epochs", "1", "--report-to",
                                    "mlflow,tensorboard", "--mlflow-uri",
                                    f"http://127.0.0.1:{port}")], cwd=tmp_path,
                           env={"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0"}))  # fail at once
    output = result.stdout + result.stderr
    warnings = [line for line in output.splitlines()
                if line.startswith(f"MLflow (http://127.0.0.1:{port})")]
    assert len(warnings) == 1 and "Training goes on" in warnings[0], output
    run_dir = tmp_path / "runs" / "closed"
    assert [r["epoch"] for r in history(run_dir)["rows"]] == [1]
    assert "Test accuracy:" in output
    assert [p.step for p in read_events(run_dir / "tensorboard").Scalars("epoch")] == [STEPS]


def test_without_the_extra_the_run_stops_before_training_naming_it(tmp_path, digits_dir):
    shim = tmp_path / "shim"
    shim.mkdir()
    (shim / "sitecustomize.py").write_text("import sys\nsys.modules['mlflow'] = None\n")
    result = run_train(common(digits_dir, "bare", "--report-to", "mlflow"), cwd=tmp_path,
                       env={"PYTHONPATH": os.pathsep.join([str(shim), os.environ.get(
                           "PYTHONPATH", "")])})
    assert result.returncode == 2, result.stdout + result.stderr
    message = " ".join(result.stderr.split())
    assert message.startswith("error: --report-to mlflow needs the package mlflow")
    # Run from another folder: the hint names the checkout the tool runs from.
    assert f'pip install -e "{ROOT}[tracking]"' in message and "Traceback" not in message
    assert not (tmp_path / "runs").exists()  # nothing was started
