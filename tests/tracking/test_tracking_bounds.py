"""Trackers bounded and honest: a tracking server's reply is read within a limit by the MLflow
process (measured over the whole process tree), a TensorBoard rewind reads a sparse gigabyte in
constant memory, a tracker added on resume records the earlier epochs, and a tracking URI's
credentials are never shown."""

from __future__ import annotations

import json
import logging
import os
import shutil
import socketserver
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import mindspore  # noqa: F401  (before tensorboard: it picks the protobuf backend it needs)
import pytest
from mlflow import MlflowClient

from callbacks.mlflow_logger import MLflowLogger, _ask
from callbacks.tensorboard_logger import TensorBoardLogger, event_files, read_records
from callbacks.tracking import flat_params
from tests.conftest import ROOT
from tests.e2e.test_faults import TRAINING, run_measured
from tests.tracking.test_loggers import read_events
from trainer.errors import redact
from trainer.limits import TENSORBOARD_RECORD_MAX_BYTES

pytest_plugins = ["tests.trained"]

STEPS = 45  # the digits_dir fixture: 1,600 digits less the 10% held out, in batches of 32
TREE_PEAK = Path(__file__).with_name("tree_peak.py")
SPARSE = 1000 << 20  # the sparse event file: 1,000 MiB, 4 KB on disk
PASSWORD = "pa55-w0rd"


# ------------------------------------------------------------------ hostile servers
class _Hostile(socketserver.BaseRequestHandler):
    """Answers any request with 200 and a body without end, either undeclared (``endless``)
    or under a Content-Length of a terabyte (``declared``)."""

    def handle(self) -> None:
        head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
        if self.server.mode == "declared":
            head += b"Content-Length: 1000000000000\r\n"
        chunk = b'{"experiment": "' + b"a" * (1 << 16)
        try:
            self.request.recv(1 << 16)
            self.request.sendall(head + b"\r\n")
            while True:  # until the client hangs up
                self.request.sendall(chunk)
        except OSError:
            pass


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


@pytest.fixture(scope="module")
def hostile():
    """``{"endless": uri, "declared": uri}``: servers on 127.0.0.1, started here."""
    servers = {}
    for mode in ("endless", "declared"):
        server = _Server(("127.0.0.1", 0), _Hostile)
        server.mode = mode
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers[mode] = server
    yield {mode: f"http://127.0.0.1:{s.server_address[1]}" for mode, s in servers.items()}
    for server in servers.values():
        server.shutdown()
        server.server_close()


def _with_password(uri: str) -> str:
    return uri.replace("http://", f"http://trainer:{PASSWORD}@")


def _peak_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmHWM for {pid}")


# ---------------------------------------------------------- the MLflow process's reads
def test_a_reply_declaring_a_terabyte_is_refused_before_its_body_warning_once(hostile, caplog):
    logger = MLflowLogger(_with_password(hostile["declared"]), "exp", hparams={"lr": 0.1})
    with caplog.at_level(logging.WARNING, logger="mstrain"):
        logger.log_hparams(logger.hparams, [])
        for step in range(1, 4):
            logger.log_metrics({"step/loss": 0.5}, step)
        deadline = time.monotonic() + 60
        while not logger.warnings and time.monotonic() < deadline:
            time.sleep(0.1)
        child_peak = _peak_mb(logger._child.pid)  # it has read all it will read
        logger.finalize("FINISHED")
    assert len(logger.warnings) == 1, logger.warnings
    assert "ReplyTooLarge: the server declared a reply" in logger.warnings[0]
    assert "16 MiB" in logger.warnings[0] and "TRACKING_REPLY_MAX_BYTES" in logger.warnings[0]
    shown = [r.getMessage() for r in caplog.records]
    assert len(shown) == 1 and shown[0].startswith(
        f"MLflow ({hostile['declared'].replace('http://', 'http://trainer:***@')}): ")
    assert PASSWORD not in shown[0]
    assert child_peak < 400, f"the MLflow process peaked at {child_peak:.0f} MB"


def test_an_endless_reply_is_cut_and_training_goes_on_the_whole_tree_bounded(
        hostile, tmp_path, digits_dir):
    """The issue's case, as a user meets it: train.py reporting to a server on 127.0.0.1 that
    streams a body without end; the MLflow process's memory counts (tree_peak.py)."""
    uri = _with_password(hostile["endless"])
    seconds, megabytes = TRAINING
    tree_file = tmp_path / "tree-peak-kb"
    result = run_measured(
        [sys.executable, str(TREE_PEAK), str(tree_file), str(megabytes), sys.executable,
         str(ROOT / "train.py"), "--data-dir", str(digits_dir), "--output-dir", "runs",
         "--run-name", "endless", "--epochs", "1", "--no-progress", "--report-to", "mlflow",
         "--mlflow-uri", uri], tmp_path, timeout=seconds * 3)
    output = result.stdout + result.stderr
    assert result.status == 0, output[-3000:]
    assert "Traceback" not in output
    warnings = [line for line in output.splitlines() if line.startswith("MLflow (")]
    assert len(warnings) == 1, output[-3000:]
    assert warnings[0].startswith(
        f"MLflow ({hostile['endless'].replace('http://', 'http://trainer:***@')}): the tracking "
        "store failed (ReplyTooLarge: the server streamed a reply")
    assert "Training goes on" in warnings[0] and PASSWORD not in output
    assert "Test accuracy:" in output  # training and its scoring are unaffected
    assert (tmp_path / "runs" / "endless" / "history.json").is_file()
    tree_mb = int(tree_file.read_text()) / 1024
    assert result.seconds < seconds, f"took {result.seconds:.1f} s"
    assert tree_mb < megabytes, f"the largest process of the run peaked at {tree_mb:.0f} MB"


def test_an_answer_line_past_the_limit_from_the_mlflow_process_is_refused():
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.readline(); "
                              "print('x' * 200_000, flush=True)"],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        with pytest.raises(RuntimeError, match="more than 64 KiB in one line"):
            _ask(child, {"op": "config"})
    finally:
        child.kill()
        child.wait()


# ------------------------------------------------------------------------ redaction
@pytest.mark.parametrize("given, shown", [
    ("http://user:s3cret@host:5000", "http://user:***@host:5000"),
    ("https://TOKEN123@host/mlflow", "https://***@host/mlflow"),
    ("http://u:p@ss@host/a@b", "http://u:***@host/a@b"),
    ("postgresql://u:pw@db/mlflow?password=x&sslmode=on", "postgresql://u:***@db/mlflow"
     "?password=***&sslmode=on"),
    ("http://host/?token=abc&api_key=def&x=1", "http://host/?token=***&api_key=***&x=1"),
    ("failed: API request to http://a:b@h:1/api/2.0 failed", "failed: API request to "
     "http://a:***@h:1/api/2.0 failed"),
    ("sqlite:////tmp/x@y/mlflow.db", "sqlite:////tmp/x@y/mlflow.db"),
    ("http://127.0.0.1:5000", "http://127.0.0.1:5000"),
])
def test_redact_hides_uri_credentials_and_secret_parameters(given, shown):
    assert redact(given) == shown


def test_hyperparameters_a_tracker_records_show_no_credentials():
    uri = f"http://trainer:{PASSWORD}@host:5000"
    assert flat_params({"store": uri, "lr": 0.1, "milestones": [5, 8]}) == {
        "store": "http://trainer:***@host:5000", "lr": 0.1, "milestones": "[5, 8]"}


# ------------------------------------------------------------------ TensorBoard rewind
def _sparse_event_file(folder: Path, name: str = "events.out.tfevents.9999999999.sparse") -> Path:
    """A 1,000 MiB event file, 4 KB on disk: a valid record header that claims the rest."""
    from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c

    path = folder / name
    header = struct.pack("<Q", SPARSE - 16)
    path.write_bytes(header + struct.pack("<I", masked_crc32c(header)))
    os.truncate(path, SPARSE)
    return path


def test_read_records_stops_before_reading_a_record_longer_than_the_limit(tmp_path):
    path = _sparse_event_file(tmp_path)
    started = time.perf_counter()
    assert list(read_records(path)) == []
    assert time.perf_counter() - started < 1
    assert TENSORBOARD_RECORD_MAX_BYTES < SPARSE
    path.unlink()  # 4 KB on disk, but a gigabyte to whatever sums file sizes


class _Rows:
    def __init__(self, rows):
        self.rows = rows


def test_tensorboard_joining_a_run_backfills_once_skipping_what_the_folder_holds(tmp_path):
    rows = [{"epoch": e, "loss": 1.0 / e, "val_accuracy": 0.5 + e / 10, "epoch_time": 2.0}
            for e in (1, 2, 3)]
    earlier = TensorBoardLogger(tmp_path)  # a folder holding part of epoch 1's row
    earlier.log_metrics({"train/loss": 1.0, "epoch": 1.0}, 10)
    earlier.close()
    joined = []
    for _ in range(2):  # a crash before the first checkpoint: the next resume joins again
        tb = TensorBoardLogger(tmp_path, hparams={"lr": 0.1}, history=_Rows(rows))
        tb.rewind(25)
        joined.append(tb.backfill(25, steps_per_epoch=10))  # epoch 3 ends at 30, after 25
        tb.close()
    assert joined == [[1, 2], []]
    TensorBoardLogger(tmp_path).rewind(25)
    acc = read_events(tmp_path)
    assert [(p.step, p.value) for p in acc.Scalars("epoch")] == [(10, 1.0), (20, 2.0)]
    assert [(p.step, p.value) for p in acc.Scalars("train/loss")] == [(10, 1.0), (20, 0.5)]
    assert [p.step for p in acc.Scalars("val/accuracy")] == [10, 20]
    assert {"_hparams_/experiment", "_hparams_/session_start_info"} <= set(acc.Tags()["tensors"])
    assert len(event_files(tmp_path)) == 1


@pytest.fixture(scope="module")
def resumed_with_trackers(tmp_path_factory, trained_lenet):
    """A copy of a 3-epoch run made without trackers, a sparse 1,000 MiB event file put in its
    TensorBoard folder, then ``--resume auto`` to 4 epochs with ``--report-to
    tensorboard,mlflow`` (both join the run there), measured."""
    work = tmp_path_factory.mktemp("joined")
    shutil.copytree(trained_lenet.run_dir, work / "runs" / "joined")
    folder = work / "runs" / "joined" / "tensorboard"
    folder.mkdir()
    _sparse_event_file(folder)
    resumed = run_measured(
        [sys.executable, str(ROOT / "train.py"), "--net", "lenet", "--data-dir",
         str(trained_lenet.data_dir), "--epochs", "4", "--optimizer", "adam", "--lr", "0.005",
         "--no-plot", "--no-progress", "--log-every", "0", "--output-dir", "runs",
         "--run-name", "joined", "--resume", "auto", "--report-to", "tensorboard,mlflow"],
        work, timeout=TRAINING[0] * 3)
    return work, resumed


EPOCH_STEPS = [STEPS * e for e in range(1, 5)]


def _joined_line(name: str) -> str:
    return (f"{name}: joined the run at step {3 * STEPS}; recorded the hyperparameters and "
            "epochs 1-3 from the run's history (step/loss, step/lr and train/samples_per_second "
            f"before step {3 * STEPS} were not kept, so the record lacks them).")


def test_a_sparse_gigabyte_event_file_is_rewound_in_bounded_time_and_memory(
        resumed_with_trackers):
    work, resumed = resumed_with_trackers
    output = resumed.stdout + resumed.stderr
    assert resumed.status == 0 and "Traceback" not in output, output[-3000:]
    damaged = [line for line in output.splitlines() if "is damaged after a point" in line]
    assert damaged == [
        "TensorBoard: events.out.tfevents.9999999999.sparse is damaged after a point (a record "
        "claims 1,048,575,984 bytes, more than the 16 MiB a record may hold); the events before "
        "it are kept."], output[-3000:]
    seconds, megabytes = TRAINING
    assert resumed.seconds < seconds, f"took {resumed.seconds:.1f} s"
    assert resumed.peak_mb < megabytes, f"peak {resumed.peak_mb:.0f} MB"
    folder = work / "runs" / "joined" / "tensorboard"
    # The damaged file was the first: the rewound records (none) replaced it, 1,000 MiB no more.
    assert (folder / "events.out.tfevents.9999999999.sparse").stat().st_size == 0
    assert sum(p.stat().st_size for p in folder.iterdir()) < 1 << 20


def test_tensorboard_added_on_resume_holds_the_hyperparameters_and_every_epoch(
        resumed_with_trackers):
    work, resumed = resumed_with_trackers
    output = resumed.stdout + resumed.stderr
    assert _joined_line("TensorBoard") in output.splitlines(), output[-3000:]
    acc = read_events(work / "runs" / "joined" / "tensorboard")
    assert {"_hparams_/experiment", "_hparams_/session_start_info"} <= set(acc.Tags()["tensors"])
    history = json.loads((work / "runs" / "joined" / "history.json").read_text())["history"]
    for key, column in (("epoch", "epoch"), ("train/loss", "loss"),
                        ("val/accuracy", "val_accuracy")):
        points = acc.Scalars(key)
        assert [p.step for p in points] == EPOCH_STEPS, key
        assert [p.value for p in points] == pytest.approx(history[column], rel=1e-6), key


def test_mlflow_added_on_resume_holds_the_parameters_and_every_epoch(resumed_with_trackers):
    work, resumed = resumed_with_trackers
    output = resumed.stdout + resumed.stderr
    assert _joined_line("MLflow") in output.splitlines(), output[-3000:]
    client = MlflowClient(f"sqlite:///{work / 'runs' / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("mstrain").experiment_id])
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    run = runs[0]
    assert run.data.params["epochs"] == "4" and run.data.params["optimizer"] == "adam"
    history = json.loads((work / "runs" / "joined" / "history.json").read_text())["history"]
    for key, column in (("epoch", "epoch"), ("val/accuracy", "val_accuracy")):
        points = sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, key))
        assert points == [pytest.approx((s, v)) for s, v in zip(EPOCH_STEPS, history[column])]
