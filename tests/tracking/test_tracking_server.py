"""A real ``mlflow server`` on 127.0.0.1, started by the test as the README shows: a run killed
with SIGKILL and resumed records each step once in the server's run."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import mindspore  # noqa: F401  (before mlflow: it picks the protobuf backend it needs)
import pytest
from mlflow import MlflowClient

from tests.conftest import run_train, train_here
from tests.tracking.test_tracking_e2e import (
    STEPS,
    TESTS,
    check_mlflow_run,
    common,
    free_port,
    ok,
    only_run,
    signal_at,
)

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    """``mlflow server`` on 127.0.0.1 with a SQLite store, as the README shows; its URI."""
    folder = tmp_path_factory.mktemp("mlflow-server")
    port = free_port()
    log = open(folder / "server.log", "w")
    mlflow_bin = Path(sys.executable).parent / "mlflow"
    server = subprocess.Popen(
        [str(mlflow_bin), "server", "--backend-store-uri", f"sqlite:///{folder / 'store.db'}",
         "--artifacts-destination", str(folder / "artifacts"), "--host", "127.0.0.1",
         "--port", str(port), "--workers", "1"], stdout=log, stderr=subprocess.STDOUT,
        cwd=folder, start_new_session=True,
        # MLflow 3 also starts four job-runner processes for features a training run never
        # uses; on 2 cores they would take the CPU the runs under test need.
        env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"})
    uri = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            with urllib.request.urlopen(f"{uri}/health", timeout=2) as answer:
                if answer.status == 200:
                    break
        except OSError:
            pass
        if server.poll() is not None or time.monotonic() > deadline:
            server.kill()
            pytest.fail("mlflow server did not start:\n" + (folder / "server.log").read_text())
        time.sleep(0.3)
    yield uri
    os.killpg(server.pid, 15)
    try:
        server.wait(20)
    except subprocess.TimeoutExpired:
        os.killpg(server.pid, 9)
    log.close()


def test_a_tracking_server_gets_each_step_once_after_sigkill_and_resume(tmp_path, digits_dir,
                                                                         mlflow_server):
    env = {"MLFLOW_TRACKING_URI": mlflow_server, "PYTHONPATH": str(TESTS)}
    args = common(digits_dir, "served", "--report-to", "mlflow")
    # Killed in epoch 2 after points 55, 65 and 75 went out; the last bundle is epoch 1's.
    killed = run_train([*args, *signal_at("on_train_step_end", 2, STEPS + 35, "SIGKILL")],
                       cwd=tmp_path, env=env)
    assert killed.returncode == -9, killed.stdout + killed.stderr
    ok(train_here([*args, "--resume", "auto"], cwd=tmp_path, env=env))
    client = MlflowClient(mlflow_server)
    run = only_run(client, "served")
    assert run.info.status == "FINISHED"
    check_mlflow_run(client, run.info.run_id, tmp_path / "runs" / "served")
    assert not (tmp_path / "runs" / "mlflow.db").exists()  # the server's store, not the default
