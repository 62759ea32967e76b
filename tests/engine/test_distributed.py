"""Data-parallel training under msrun: two workers on generated digits, one model, one writer.

The module's runs: a one-epoch single-process run, then two msrun workers that start from its
weights (``--init-from``) and train two epochs data-parallel, then a data-parallel resume that
one worker's SIGTERM interrupts. Measured here: the two workers lift validation accuracy from
about 0.31 to 0.80 (lr 0.05, seed 7); the threshold leaves a margin.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, config_error, train_here
from tests.userpkg.workers import weights_digest
from trainer.checkpoint import load_bundle
from trainer.cli import main, parse_args
from trainer.engine import distributed
from trainer.errors import ConfigError

pytestmark = pytest.mark.e2e

TESTS = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent  # msrun, and the 'python' it starts the workers with
MIN_ACCURACY = 0.6
LOSS_LINE = re.compile(r"^Epoch:\[\s*\d+/\s*\d+\], step:\[\s*\d+/\s*25\], loss:", re.M)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _env(work: Path) -> dict[str, str]:
    return {**os.environ, "GLOG_v": "3", "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(TESTS),
            "MSTRAIN_CACHE": str(work / ".cache"),
            "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}


def msrun(work: Path, logs: str, *args: str, workers: int = 2) -> subprocess.CompletedProcess:
    """Runs ``msrun ... train.py ARGS`` in ``work`` as the README says, logs in ``work/logs``."""
    cmd = [str(BIN / "msrun"), f"--worker_num={workers}", f"--local_worker_num={workers}",
           f"--master_port={free_port()}", "--join=True", f"--log_dir={logs}",
           "--cluster_time_out=120", str(ROOT / "train.py"), *args]
    return subprocess.run(cmd, cwd=work, capture_output=True, text=True, timeout=400,
                          env=_env(work))


def _common(data: Path) -> list[str]:
    return ["--data-dir", str(data), "--no-download", "--output-dir", "runs", "--lr", "0.05",
            "--seed", "7", "--no-progress", "--log-every", "5", "--val-split", "0"]


def _log(work: Path, logs: str, name: str) -> str:
    return (work / logs / f"{name}.log").read_text(errors="replace")


def _report(work: Path, rank: int) -> dict:
    return json.loads((work / "reports" / f"rank{rank}.json").read_text())


def _latest(run_dir: Path):
    pointer = json.loads((run_dir / "checkpoints" / "latest.json").read_text())
    return load_bundle(run_dir / "checkpoints" / pointer["file"])


@pytest.fixture(scope="module")
def work(tmp_path_factory, digits_dir) -> Path:
    """A single-process epoch, then two workers that continue from its weights for 2 epochs."""
    folder = tmp_path_factory.mktemp("distributed")
    single = train_here([*_common(digits_dir), "--epochs", "1", "--run-name", "single",
                         "--no-plot"], cwd=folder)
    assert single.returncode == 0, single.stdout + single.stderr
    result = msrun(folder, "logs", *_common(digits_dir), "--distributed", "--epochs", "2",
                   "--run-name", "dp", "--init-from", "runs/single", "--csv-log",
                   "--report-to", "tensorboard", "--callback",
                   "userpkg.workers:RankReport(folder='reports')")
    logs = "".join(p.read_text(errors="replace") for p in (folder / "logs").glob("*.log"))
    assert result.returncode == 0, result.stdout + result.stderr + logs
    return folder


def test_two_workers_train_one_model(work):
    ranks = [_report(work, 0), _report(work, 1)]
    assert [(r["rank"], r["size"], r["main"]) for r in ranks] == [(0, 2, True), (1, 2, False)]
    # Each worker reads half of the 1,600 digits: 800 / batch 32 = 25 steps an epoch.
    assert ranks[0]["steps_per_epoch"] == ranks[1]["steps_per_epoch"] == 25
    assert ranks[0]["digest"] == ranks[1]["digest"]
    # The loss each worker sees is the mean over both workers' batches.
    assert ranks[0]["last_loss"] == ranks[1]["last_loss"]
    start = json.loads((work / "runs" / "single" / "history.json").read_text())["rows"][-1]
    accuracy = ranks[0]["val_accuracy"]
    assert len(accuracy) == 2 and accuracy[-1] >= MIN_ACCURACY
    assert accuracy[-1] > start["val_accuracy"] + 0.1, (start, accuracy)
    # Rank 0's last checkpoint holds exactly the weights both workers ended with, under the
    # same names as a single-process checkpoint.
    bundle = _latest(work / "runs" / "dp")
    names = ranks[0]["weight_names"]
    assert weights_digest((n, bundle.params[n].asnumpy()) for n in names) == ranks[0]["digest"]
    single = _latest(work / "runs" / "single")
    assert sorted(bundle.params) == sorted(single.params)
    assert bundle.meta.run.workers == 2 and bundle.meta.steps_per_epoch == 25
    assert bundle.meta.run.config["distributed"] is True


def test_only_rank_zero_writes_and_prints(work):
    run_dir = work / "runs" / "dp"
    for name in ("config.yaml", "history.json", "history.csv", "history.png", "log.csv",
                 "checkpoints/best.ckpt", "checkpoints/latest.json"):
        assert (run_dir / name).is_file(), name
    assert sorted(p.name for p in (work / "runs").iterdir()) == ["dp", "single"]
    assert not [p for p in run_dir.rglob("*") if ".tmp" in p.name]
    rows = json.loads((run_dir / "history.json").read_text())["rows"]
    assert [r["epoch"] for r in rows] == [1, 2]
    first, second = _log(work, "logs", "worker_0"), _log(work, "logs", "worker_1")
    assert "Run directory: runs/dp" in first and "Test accuracy:" in first
    assert "batch 32 per worker x 2 workers = 64" in first
    assert len(LOSS_LINE.findall(first)) == 10  # steps 5..25 of 2 epochs
    for ours in ("Epoch", "Run directory", "Test accuracy", "error"):
        assert ours not in second
    callbacks = _report(work, 1)["callbacks"]
    assert "ModelCheckpoint" in _report(work, 0)["callbacks"]
    assert not {"ModelCheckpoint", "LossMonitor", "CSVLogger", "ProgressBar",
                "TensorBoardLogger"} & set(callbacks)
    assert "TensorBoardLogger" in _report(work, 0)["callbacks"]
    assert len(list((run_dir / "tensorboard").glob("events.out.tfevents.*"))) == 1
    # The deciding callbacks run everywhere, so every worker stops when the others do.
    assert {"TerminateOnNaN", "History", "StopOnRequest"} <= set(callbacks)


def test_validation_covers_the_whole_test_set(work, digits_dir):
    result = train_here(["--data-dir", str(digits_dir), "--eval-only", "--ckpt", "runs/dp"],
                        cwd=work)
    assert result.returncode == 0, result.stdout + result.stderr
    found = re.search(r"test accuracy (\d\.\d+) \((\d+)/(\d+)\)", result.stdout)
    assert found, result.stdout
    correct, count = int(found.group(2)), int(found.group(3))
    assert count == 400  # every test digit, not one worker's half
    for rank in (0, 1):
        assert _report(work, rank)["val_accuracy"][-1] == pytest.approx(correct / count)


def test_single_process_refuses_to_resume_a_distributed_run(work, digits_dir):
    result = train_here([*_common(digits_dir), "--epochs", "3", "--run-name", "dp",
                         "--resume", "auto"], cwd=work)
    message = " ".join(result.stderr.split())
    assert result.returncode == 2, result.stdout + result.stderr
    assert "2 data-parallel workers" in message and "one process" in message
    assert "--init-from runs/dp/checkpoints/epoch-0002-gs00000050.ckpt" in message
    assert "Traceback" not in result.stderr


def test_distributed_resume_and_a_signal_to_one_worker(work, digits_dir):
    # Resume the 2-epoch run for a third; worker 1 alone gets SIGTERM after its 12th step.
    # The workers share their stop flags every 10 steps, so both stop after step 20 of this
    # run (global step 70) and rank 0 saves there, instead of worker 0 waiting forever in the
    # next gradient all-reduce.
    result = msrun(work, "logs_resume", *_common(digits_dir), "--distributed", "--epochs", "3",
                   "--run-name", "dp", "--resume", "auto", "--no-plot", "--callback",
                   "userpkg.workers:SignalWorker(step=12)")
    first = _log(work, "logs_resume", "worker_0")
    second = _log(work, "logs_resume", "worker_1")
    assert result.returncode != 0  # msrun reports the workers' status 130
    assert "Resumed from runs/dp/checkpoints/epoch-0002-gs00000050.ckpt" in first
    assert "[worker 1] SIGTERM received" in second
    assert "Training interrupted by a signal to another worker after global step 70" in first
    assert "Training interrupted by SIGTERM" in second
    bundle = _latest(work / "runs" / "dp")
    assert bundle.path.name == "step-0003-gs00000070.ckpt"
    assert bundle.global_step == 70 and bundle.meta.run.workers == 2
    assert "Traceback" not in first + second


def test_distributed_without_msrun_is_refused(tmp_path, digits_dir, monkeypatch, capsys):
    for name in ("MS_ROLE", "MS_WORKER_NUM", "MS_SCHED_HOST", "MS_SCHED_PORT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    assert main([*_common(digits_dir), "--distributed", "--epochs", "1"]) == 2
    message = " ".join(capsys.readouterr().err.split())
    assert message.startswith("error: --distributed needs MindSpore's launcher")
    assert "MS_ROLE" in message and "msrun --worker_num=2" in message
    assert not (tmp_path / "runs").exists()


def test_msrun_without_distributed_is_refused(tmp_path, digits_dir, monkeypatch, capsys):
    # What msrun 2.7.2 sets in a worker (its scheduler gets MS_ROLE=MS_SCHED).
    for name, value in {"MS_ROLE": "MS_WORKER", "MS_WORKER_NUM": "2", "RANK_ID": "0",
                        "MS_SCHED_HOST": "127.0.0.1", "MS_SCHED_PORT": "8118"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(tmp_path)
    assert main([*_common(digits_dir), "--epochs", "1"]) == 2
    message = " ".join(capsys.readouterr().err.split())
    assert "running under msrun (MS_ROLE=MS_WORKER) without --distributed" in message
    assert not (tmp_path / "runs").exists()


# --------------------------------------------------------------- the module on its own (fast)
def test_launch_checks_read_msruns_variables():
    distributed.check_launch(False, {})
    distributed.check_launch(True, {"MS_ROLE": "MS_WORKER", "MS_WORKER_NUM": "2"})
    with pytest.raises(ConfigError, match="lacks MS_ROLE, MS_WORKER_NUM"):
        distributed.check_launch(True, {"MS_SCHED_HOST": "127.0.0.1", "MS_SCHED_PORT": "1"})
    with pytest.raises(ConfigError, match="without --distributed"):
        distributed.check_launch(False, {"MS_ROLE": "MS_SCHED"})
    assert distributed.msrun_role({"MS_ROLE": "MS_PSERVER"}) is None


def test_a_taken_scheduler_port_is_named():
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        message = config_error(distributed._check_port, "127.0.0.1", port)
    assert f"port {port} on 127.0.0.1 is already in use" in message
    assert "another --master_port" in message
    distributed._check_port("127.0.0.1", port)  # free again


def test_single_process_helpers_need_no_cluster():
    assert (distributed.rank(), distributed.world_size(), distributed.is_main()) == (0, 1, True)
    assert distributed.all_sum([1.5, 2.0]) == [1.5, 2.0]
    assert not distributed.any_worker(False) and distributed.any_worker(True)
    assert distributed.shared_time(1_790_000_123.7) == 1_790_000_123
    assert not distributed.is_peer_failure(RuntimeError("Launch kernel failed, AllReduce"))


def test_evaluation_and_export_are_not_distributed():
    message = config_error(parse_args, ["--eval-only", "--ckpt", "runs/x", "--distributed"])
    assert "unrecognized arguments: --distributed" in message  # mstrain eval's rule
