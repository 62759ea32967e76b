"""Trackers bounded and honest: a tracking server's reply is read within a limit by the MLflow
process (measured over the whole process tree), a TensorBoard rewind reads a sparse gigabyte in
constant memory, and a tracking URI's credentials are never shown."""

from __future__ import annotations

import logging
import os
import socketserver
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from callbacks.mlflow_logger import MLflowLogger, _ask
from callbacks.tensorboard_logger import read_records
from callbacks.tracking import flat_params, redact
from tests.conftest import ROOT
from tests.e2e.test_faults import TRAINING, run_measured
from trainer.limits import TENSORBOARD_RECORD_MAX_BYTES

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
