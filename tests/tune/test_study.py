"""End to end: real studies of ``python -m trainer.tune`` on generated digits, SQLite storage.

Short trials (a logistic regression, one or two epochs of 1,440 digits): a learning rate of 0.03
or 0.05 reaches well above chance after one epoch, 1e-5 stays near chance, so the pruner has a
clear bad region to stop.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest

from tests.conftest import ROOT, run_here, train_here, write_yaml
from trainer.config import load_config

pytestmark = pytest.mark.e2e
optuna.logging.set_verbosity(optuna.logging.WARNING)

# A logistic regression (tests.cbkit.Tiny) compiles in a fraction of the MLP's time; one step per
# launch and no best checkpoint (scored on the test split again) keep each trial near 2 s.
COMMON = """
net: tests.cbkit:Tiny
batch_size: 16
steps_per_launch: 1
save_best: false
log_every: 0
plot: false
progress: false
"""


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    """One decoded-data cache for the module's studies (each decodes the digits once)."""
    return tmp_path_factory.mktemp("tune-cache")


def tune_cmd(recipe: Path, data: Path, out: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "trainer.tune", "--config", str(recipe), "--data-dir",
            str(data), "--output-dir", str(out), *args]


def tune_env(cache: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONUNBUFFERED": "1", "GLOG_v": "3", "MSTRAIN_CACHE": str(cache),
            "PYTHONPATH": str(ROOT)}


def run_tune(cmd: list[str], cwd: Path, cache: Path) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, env=tune_env(cache), capture_output=True, text=True,
                          timeout=150)


def tune_here(cmd: list[str], cwd: Path, cache: Path) -> subprocess.CompletedProcess:
    """The command of ``cmd`` run by its main in this process (see tests.conftest.run_here)."""
    from trainer.tune.cli import main

    args = cmd[cmd.index("trainer.tune") + 1:]
    return run_here(main, args, cwd, {"MSTRAIN_CACHE": str(cache)})


def start_tune(cmd: list[str], cwd: Path, cache: Path, log: Path) -> subprocess.Popen:
    handle = open(log, "w")
    return subprocess.Popen(cmd, cwd=cwd, env=tune_env(cache), stdout=handle,
                            stderr=subprocess.STDOUT, text=True)


def wait_for(path: Path, proc: subprocess.Popen, log: Path, timeout: float = 120) -> None:
    end = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, f"the study ended before {path} appeared:\n{log.read_text()}"
        assert time.monotonic() < end, f"{path} did not appear:\n{log.read_text()}"
        time.sleep(0.1)


def load(study_dir: Path) -> optuna.Study:
    return optuna.load_study(study_name=study_dir.name, storage=f"sqlite:///{study_dir}/study.db")


def states(study: optuna.Study) -> list[str]:
    return [t.state.name for t in study.get_trials()]


def staged(folder: Path) -> list[Path]:
    return [p for p in folder.rglob(".*") if ".tmp" in p.name]


def rows(run_dir: str | Path) -> list[dict]:
    return json.loads((Path(run_dir) / "history.json").read_text())["rows"]


def test_pruning_stops_a_bad_region_early_and_best_yaml_trains(tmp_path, digits_dir, cache):
    recipe = write_yaml(tmp_path, """
search:
  lr: [0.05, 0.03, 0.00001]
tune:
  trials: 3
  pruner: median
  pruner_startup_trials: 2
  pruner_warmup_epochs: 1
  enqueue:
    - {lr: 0.05}
    - {lr: 0.03}
    - {lr: 0.00001}
epochs: 2
""" + COMMON, name="prune.yaml")
    out = tmp_path / "runs"
    result = tune_here(tune_cmd(recipe, digits_dir, out), tmp_path, cache)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "Traceback" not in result.stdout + result.stderr
    folder = out / "prune"
    study = load(folder)
    trials = study.get_trials()
    assert [t.params["lr"] for t in trials] == [0.05, 0.03, 0.00001]  # the queued points
    assert states(study) == ["COMPLETE", "COMPLETE", "PRUNED"]
    good, bad = trials[0], trials[2]
    # The bad trial was stopped after its first epoch; the good ones trained both.
    assert list(bad.intermediate_values) == [1] and bad.intermediate_values[1] < 0.2
    assert len(rows(bad.user_attrs["run_dir"])) == 1
    assert all(len(rows(t.user_attrs["run_dir"])) == 2 for t in trials[:2])
    assert good.intermediate_values[1] > 0.4 and "Trial 2 pruned" in result.stdout
    assert bad.user_attrs["outcome"] == "pruned at epoch 1 of 2"
    # Results: the table, the summary, the plots, and the best trial as a recipe.
    with open(folder / "trials.csv", newline="") as handle:
        table = list(csv.DictReader(handle))
    assert [r["state"] for r in table] == ["complete", "complete", "pruned"]
    assert float(table[0]["val_accuracy"]) == pytest.approx(good.value)
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["trials"]["complete"] == 2 and summary["trials"]["pruned"] == 1
    assert summary["pruning"]["epochs_saved"] == 1 and 0 < summary["pruning"]["share_saved"] < 1
    assert summary["best"]["trial"] == study.best_trial.number
    assert 0 < summary["best"]["test_accuracy"] <= 1
    for name in ("history.png", "importances.png", "parallel.png"):
        assert (folder / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    assert not staged(folder)
    best = folder / "best.yaml"
    assert load_config(best).lr == study.best_params["lr"]
    trained = train_here(["--config", str(best), "--data-dir", str(digits_dir), "--output-dir",
                          str(tmp_path / "again"), "--run-name", "best", "--no-progress"],
                         cwd=tmp_path, env={"MSTRAIN_CACHE": str(cache)})
    assert trained.returncode == 0, trained.stderr[-3000:]
    # The recipe is the trial: the same seed and options train to the same validation accuracy.
    again = rows(tmp_path / "again" / "best")
    assert len(again) == 2
    assert max(r["val_accuracy"] for r in again) == pytest.approx(study.best_value, abs=1e-6)


def test_two_workers_share_the_study_without_clashing(tmp_path, digits_dir, cache):
    recipe = write_yaml(tmp_path, """
search:
  lr: {low: 0.01, high: 0.1, log: true}
tune:
  trials: 4
  sampler: random
  sampler_seed: 0
  pruner: none
epochs: 1
""" + COMMON, name="shared.yaml")
    out = tmp_path / "runs"
    # A process of its own: the workers write to the command's own standard output.
    result = run_tune(tune_cmd(recipe, digits_dir, out, "--workers", "2"), tmp_path, cache)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    study = load(out / "shared")
    trials = study.get_trials()
    assert states(study) == ["COMPLETE"] * 4  # exactly the trials asked for, none failed
    workers = {t.user_attrs["worker"]["pid"] for t in trials}
    assert len(workers) == 2 and os.getpid() not in workers  # both worker processes ran trials
    assert len({t.params["lr"] for t in trials}) == 4  # no two workers drew the same value
    dirs = [t.user_attrs["run_dir"] for t in trials]
    assert dirs == [str(out / "shared" / f"trial-{n:04d}") for n in range(4)]
    assert all(len(rows(d)) == 1 for d in dirs)
    assert "[worker 1] " in result.stdout and "[worker 2] " in result.stdout
    assert "Study shared: 4 of 4 trial(s) finished (4 complete" in result.stdout


def test_interrupted_and_killed_studies_continue_with_the_same_command(tmp_path, digits_dir,
                                                                       cache):
    recipe = write_yaml(tmp_path, """
search:
  lr: {low: 0.02, high: 0.06}
tune:
  trials: 2
  sampler: random
  sampler_seed: 0
  pruner: none
epochs: 2
# Long enough (about 1.6 s a trial) for a signal to land in the middle of training.
callbacks: [{class: "tests.cbkit:Slow", args: {seconds: 0.01}}]
""" + COMMON, name="resume.yaml")
    out = tmp_path / "runs"
    folder = out / "resume"
    cmd = tune_cmd(recipe, digits_dir, out)
    log = tmp_path / "tune.log"

    # Ctrl-C during the first trial: it stops after its step with a checkpoint, is marked failed
    # and queued again; nothing is left running or half-written.
    proc = start_tune(cmd, tmp_path, cache, log)
    wait_for(folder / "trial-0000" / "checkpoints" / "latest.json", proc, log)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=120) == 130, log.read_text()
    text = log.read_text()
    assert "stopped: Tuning interrupted by Ctrl-C (SIGINT)" in text and "Traceback" not in text
    study = load(folder)
    assert states(study) == ["FAIL", "WAITING"]
    assert study.trials[0].user_attrs["outcome"].startswith("interrupted by Ctrl-C (SIGINT)")
    assert study.trials[1].params == study.trials[0].params
    assert not staged(folder)

    # The same command continues: the queued trial resumes its run; then SIGKILL mid-trial.
    proc = start_tune(cmd, tmp_path, cache, log)
    wait_for(folder / "trial-0002" / "checkpoints" / "latest.json", proc, log)
    proc.kill()
    proc.wait(timeout=60)
    assert "Resumed from" in log.read_text()
    study = load(folder)
    assert states(study) == ["FAIL", "COMPLETE", "RUNNING"]  # the killed trial is left running
    assert study.trials[1].user_attrs["run_dir"] == str(folder / "trial-0000")

    # Once more: the dead process's trial is failed at once and queued again, and the study
    # ends with its two trials.
    result = tune_here(cmd, tmp_path, cache)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    study = load(folder)
    assert states(study) == ["FAIL", "COMPLETE", "FAIL", "COMPLETE"]
    assert study.trials[3].params == study.trials[2].params
    assert study.trials[3].user_attrs["run_dir"] == str(folder / "trial-0002")
    assert "Resumed from" in result.stdout
    assert len(rows(folder / "trial-0002")) == 2
    assert "Study resume: 2 of 2 trial(s) finished (2 complete" in result.stdout
    with open(folder / "trials.csv", newline="") as handle:
        outcomes = [r["outcome"] for r in csv.DictReader(handle)]
    assert outcomes[2] == "its process ended during the trial"
