"""Resume: exact at an epoch boundary and mid-epoch, after SIGTERM and SIGKILL, and honest about
damaged or mismatched checkpoints."""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import ROOT, train_here
from trainer.checkpoint import CheckpointStore, load_bundle

pytestmark = pytest.mark.e2e

KILLER = textwrap.dedent("""
    import os, signal
    from mindspore.train import Callback

    class SignalAt(Callback):
        '''Sends a signal to its own process when the run's step counter reaches `step`.'''

        def __init__(self, step, sig="SIGTERM"):
            self.step, self.sig = step, getattr(signal, sig)

        def on_train_step_end(self, run_context):
            if run_context.original_args().cur_step_num == self.step:
                os.kill(os.getpid(), self.sig)

    class SignalAfter(SignalAt):
        '''The same at the first step end at or after `step`, with several steps per launch.'''

        launch_aware = True

        def on_train_step_end(self, run_context):
            if self.step is not None and run_context.original_args().cur_step_num >= self.step:
                self.step = None
                os.kill(os.getpid(), self.sig)
""")


def _common(data: Path) -> list[str]:
    return ["--data-dir", str(data), "--output-dir", "runs", "--batch-size", "32", "--lr", "0.05",
            "--val-split", "0",
            "--no-progress", "--no-plot", "--log-every", "0", "--seed", "7"]


def _weights(run_dir: Path) -> dict[str, np.ndarray]:
    bundle = load_bundle(run_dir / "checkpoints" / json.loads(
        (run_dir / "checkpoints" / "latest.json").read_text())["file"])
    return {k: v.asnumpy() for k, v in bundle.params.items() if not isinstance(v, str)}


def _history(run_dir: Path) -> list[dict]:
    rows = json.loads((run_dir / "history.json").read_text())["rows"]
    return [{k: v for k, v in row.items() if k != "epoch_time"} for row in rows]


def _newest_step(checkpoints: Path) -> int:
    periodic = CheckpointStore(checkpoints).periodic()
    return int(periodic[-1].name.split("gs")[1].split(".")[0]) if periodic else -1


def _run(work: Path, *args: str) -> subprocess.CompletedProcess:
    """train.py in this process (the signals come from the run's own callbacks, which its
    handlers take as from outside); the SIGKILL test and tests/e2e run real processes."""
    return train_here(list(args), cwd=work, env={"PYTHONPATH": str(work)})


@pytest.fixture(scope="module")
def work(tmp_path_factory, digits_dir) -> Path:
    """A folder with a reference run of 3 uninterrupted epochs and the signal helper module."""
    folder = tmp_path_factory.mktemp("resume")
    (folder / "killer.py").write_text(KILLER)
    result = _run(folder, *_common(digits_dir), "--epochs", "3", "--run-name", "straight")
    assert result.returncode == 0, result.stderr
    return folder


def _assert_same_as_straight(work: Path, name: str, straight_name: str = "straight") -> None:
    straight, other = _weights(work / "runs" / straight_name), _weights(work / "runs" / name)
    assert straight.keys() == other.keys()
    differing = [k for k in straight if not np.array_equal(straight[k], other[k])]
    assert differing == [], f"parameters differ after resume: {differing}"
    assert _history(work / "runs" / name) == _history(work / "runs" / straight_name)


def test_resume_at_epoch_boundary_is_bit_identical(work, digits_dir):
    first = _run(work, *_common(digits_dir), "--epochs", "1", "--run-name", "boundary")
    assert first.returncode == 0, first.stderr
    second = _run(work, *_common(digits_dir), "--epochs", "3", "--run-name", "boundary",
                  "--resume", "auto")
    assert second.returncode == 0, second.stderr
    assert "Resumed from" in second.stdout and "epoch 1" in second.stdout
    _assert_same_as_straight(work, "boundary")


def test_sigterm_mid_epoch_saves_and_resume_is_bit_identical(work, digits_dir):
    # 1600 digits at batch 32 are 50 steps an epoch; step 70 is in the middle of epoch 2.
    stopped = _run(work, *_common(digits_dir), "--epochs", "3", "--run-name", "mid",
                   "--callback", "killer:SignalAt(step=70)")
    assert stopped.returncode == 130, stopped.stderr
    assert "--resume auto" in stopped.stderr and "Traceback" not in stopped.stderr
    latest = json.loads((work / "runs" / "mid" / "checkpoints" / "latest.json").read_text())
    bundle = load_bundle(work / "runs" / "mid" / "checkpoints" / latest["file"])
    assert bundle.epoch == 1 and bundle.meta.step_in_epoch > 0
    assert len(_history(work / "runs" / "mid")) == 1  # the partial epoch is not recorded

    resumed = _run(work, *_common(digits_dir), "--epochs", "3", "--run-name", "mid",
                   "--resume", "auto")
    assert resumed.returncode == 0, resumed.stderr
    assert "+ " in resumed.stdout and "steps" in resumed.stdout  # says where in the epoch
    _assert_same_as_straight(work, "mid")


def test_loss_lines_after_a_mid_epoch_resume_count_the_epochs_own_steps(work, digits_dir):
    args = [*_common(digits_dir), "--epochs", "3", "--run-name", "lines", "--log-every", "10"]
    stopped = _run(work, *args, "--callback", "killer:SignalAfter(step=70)")
    assert stopped.returncode == 130, stopped.stderr
    at = load_bundle(work / "runs" / "lines" / "checkpoints" / json.loads(
        (work / "runs" / "lines" / "checkpoints" / "latest.json").read_text())["file"])
    within = at.meta.step_in_epoch
    assert at.epoch == 1 and 0 < within < 50
    resumed = _run(work, *args, "--resume", "auto")
    assert resumed.returncode == 0, resumed.stderr
    lines = re.findall(r"Epoch:\[\s*(\d+)/\s*3\], step:\[\s*(\d+)/\s*50\]", resumed.stdout)
    seen = [(int(e), int(s)) for e, s in lines]
    # Steps are counted from each epoch's start, also in the epoch the run resumed in.
    expected = [(1, s) for s in range(10, 51, 10) if s > within] + [(2, s) for s in range(10, 51,
                                                                                           10)]
    assert seen == expected, resumed.stdout


def test_one_step_per_launch_gives_the_same_run(work, digits_dir):
    """The reference run launched 50 steps at a time (auto with the native kernels; 16, 16, 16,
    2 with MindSpore's operators)."""
    single = _run(work, *_common(digits_dir), "--epochs", "3", "--run-name", "single",
                  "--steps-per-launch", "1")
    assert single.returncode == 0, single.stderr
    assert "one step per launch" in single.stdout
    _assert_same_as_straight(work, "single")


def test_loss_lines_land_on_the_same_steps_with_several_steps_per_launch(work, digits_dir):
    def lines(*extra: str) -> list[str]:
        result = _run(work, *_common(digits_dir), "--epochs", "1", "--log-every", "7",
                      "--run-name", f"lines{len(extra)}", *extra)
        assert result.returncode == 0, result.stderr
        return [line.split(", time:")[0] for line in result.stdout.splitlines()
                if line.startswith("Epoch:[")]

    launched = lines()
    assert lines("--steps-per-launch", "1") == launched
    assert [int(line.split("step:[")[1].split("/")[0]) for line in launched] == list(
        range(7, 50, 7))


def test_sigterm_between_launches_resumes_exactly_under_another_grouping(work, digits_dir):
    """Stopped at the end of a 16-step launch in epoch 2 (its launches end at global steps 66,
    82, 98), resumed with 5 steps per launch, whose groups split that position: the feed trims
    the group it falls in."""
    stopped = _run(work, *_common(digits_dir), "--epochs", "3", "--run-name", "launched",
                   "--steps-per-launch", "16", "--callback", "killer:SignalAfter(step=70)")
    assert stopped.returncode == 130, stopped.stderr
    assert _newest_step(work / "runs" / "launched" / "checkpoints") in (82, 98)
    resumed = _run(work, *_common(digits_dir), "--epochs", "3", "--run-name", "launched",
                   "--resume", "auto", "--steps-per-launch", "5")
    assert resumed.returncode == 0, resumed.stderr
    _assert_same_as_straight(work, "launched")


def test_streaming_pipeline_resumes_mid_epoch_bit_identically(work, digits_dir):
    """--no-data-cache: MindSpore's own shuffle, restored through set_init_step."""
    stream = [*_common(digits_dir), "--epochs", "3", "--no-data-cache"]
    straight = _run(work, *stream, "--run-name", "stream-straight")
    assert straight.returncode == 0, straight.stderr
    stopped = _run(work, *stream, "--run-name", "stream-mid",
                   "--callback", "killer:SignalAt(step=70)")
    assert stopped.returncode == 130, stopped.stderr
    crossed = _run(work, *_common(digits_dir), "--epochs", "3", "--run-name", "stream-mid",
                   "--resume", "auto")  # the cached feed orders batches differently
    assert crossed.returncode == 2 and "data_cache" in crossed.stderr, crossed.stderr
    resumed = _run(work, *stream, "--run-name", "stream-mid", "--resume", "auto")
    assert resumed.returncode == 0, resumed.stderr
    _assert_same_as_straight(work, "stream-mid", "stream-straight")


def test_sigkill_at_random_moments_never_damages_latest(work, digits_dir):
    """Kill a run that saves every 2 steps at random moments; each restart resumes cleanly."""
    rng = random.Random(11)
    args = [*_common(digits_dir), "--epochs", "2", "--run-name", "killed",
            "--save-every-steps", "2", "--keep-last", "2"]
    env = {**os.environ, "GLOG_v": "3", "PYTHONPATH": str(work),
           "MSTRAIN_CACHE": str(work / ".cache")}
    checkpoints = work / "runs" / "killed" / "checkpoints"
    for attempt in range(3):
        extra = ["--resume", "auto"] if (checkpoints / "latest.json").exists() else []
        proc = subprocess.Popen([sys.executable, str(ROOT / "train.py"), *args, *extra],
                                cwd=work, env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        # Wait until training is under way (a bundle appears), then kill at a random moment.
        before = _newest_step(checkpoints)
        deadline = time.time() + 120
        while proc.poll() is None and time.time() < deadline and \
                _newest_step(checkpoints) == before:
            time.sleep(0.05)
        time.sleep(rng.uniform(0.05, 0.6))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        store = CheckpointStore(checkpoints)
        bundle, notes = store.latest()
        assert bundle is not None and notes == [], f"attempt {attempt}: {notes}"
        for path in checkpoints.glob("*.ckpt"):  # every file under a real name is complete
            if not path.name.startswith("."):  # a temporary the kill interrupted is not one
                load_bundle(path)
    final = _run(work, *args, "--resume", "auto")
    # A kill after the last save leaves nothing to train, which is said plainly.
    assert final.returncode == 0 or (final.returncode == 2 and "nothing is left" in
                                     final.stderr), final.stderr
    assert not [p for p in checkpoints.iterdir() if p.name.startswith(".")]
    history = _history(work / "runs" / "killed")
    assert [row["epoch"] for row in history] == [1, 2]


def test_truncated_bundle_is_refused_and_auto_falls_back(work, digits_dir, tmp_path):
    run = work / "runs" / "straight"
    copy = tmp_path / "runs" / "copy"
    import shutil

    shutil.copytree(run, copy)
    checkpoints = copy / "checkpoints"
    newest = checkpoints / json.loads((checkpoints / "latest.json").read_text())["file"]
    newest.chmod(0o600)
    data = newest.read_bytes()
    newest.write_bytes(data[: len(data) // 2])

    direct = train_here([*_common(digits_dir), "--epochs", "4", "--run-name", "copy",
                         "--resume", str(newest)], cwd=tmp_path)
    assert direct.returncode == 2
    assert str(newest) in direct.stderr and "Traceback" not in direct.stderr

    auto = train_here([*_common(digits_dir), "--epochs", "4", "--run-name", "copy",
                       "--resume", "auto"], cwd=tmp_path)
    assert auto.returncode == 0, auto.stderr
    assert "damaged" in auto.stdout.lower() or "damaged" in auto.stderr.lower()
    assert "Falling back" in auto.stdout + auto.stderr


def test_flipped_byte_fails_the_checksum(work, tmp_path):
    import shutil

    source = next((work / "runs" / "straight" / "checkpoints").glob("epoch-*.ckpt"))
    target = tmp_path / "bad.ckpt"
    shutil.copy(source, target)
    target.chmod(0o600)
    data = bytearray(target.read_bytes())
    # Flip a byte inside the tensor payload (the middle of the file is weights).
    data[len(data) // 2] ^= 0xFF
    target.write_bytes(bytes(data))
    from trainer.errors import CheckpointError

    with pytest.raises(CheckpointError, match="checksum|cannot be read"):
        load_bundle(target)


def test_resume_with_other_network_or_batch_size_lists_the_differences(work, digits_dir):
    ckpt = work / "runs" / "straight" / "checkpoints" / "best.ckpt"
    result = _run(work, *_common(digits_dir), "--epochs", "4", "--run-name", "other",
                  "--batch-size", "64", "--resume", str(ckpt))
    assert result.returncode == 2
    assert "batch_size" in result.stderr and "32" in result.stderr and "64" in result.stderr
    assert "--init-from" in result.stderr
    result = _run(work, *[a for a in _common(digits_dir)], "--epochs", "4", "--net", "mlp",
                  "--run-name", "other", "--resume", str(ckpt))
    assert result.returncode == 2 and "net" in result.stderr and "mlp" in result.stderr


def test_init_from_takes_weights_only(work, digits_dir):
    ckpt = work / "runs" / "straight" / "checkpoints" / "best.ckpt"
    result = _run(work, *_common(digits_dir), "--epochs", "1", "--run-name", "finetune",
                  "--lr", "0.01", "--init-from", str(ckpt))
    assert result.returncode == 0, result.stderr
    assert "Initialised the weights" in result.stdout
    history = _history(work / "runs" / "finetune")
    # Starting from trained weights, the first epoch is already far better than chance.
    assert history[0]["val_accuracy"] > 0.5


def test_training_longer_and_nothing_left(work, digits_dir, tmp_path):
    import shutil

    shutil.copytree(work / "runs" / "straight", tmp_path / "runs" / "longer")
    done = train_here([*_common(digits_dir), "--epochs", "3", "--run-name", "longer",
                       "--resume", "auto"], cwd=tmp_path)
    # A job scheduler re-running the same command finds the run complete: exit 0, nothing written.
    before = {p: p.stat().st_mtime_ns for p in (tmp_path / "runs" / "longer").rglob("*")}
    assert done.returncode == 0, done.stderr
    assert "is complete" in done.stdout and "--epochs" in done.stdout
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "runs" / "longer").rglob("*")} == before
    more = train_here([*_common(digits_dir), "--epochs", "4", "--run-name", "longer",
                       "--resume", "auto"], cwd=tmp_path)
    assert more.returncode == 0, more.stderr
    history = _history(tmp_path / "runs" / "longer")
    assert [row["epoch"] for row in history] == [1, 2, 3, 4]
    bundle = load_bundle(next((tmp_path / "runs" / "longer" / "checkpoints")
                              .glob("epoch-0004-*.ckpt")))
    rates = bundle.params["learning_rate"].asnumpy()
    assert rates.shape[0] == 4 * 50 + 1 and np.allclose(rates, 0.05)


def test_resume_auto_without_checkpoints_explains(tmp_path, digits_dir):
    result = train_here([*_common(digits_dir), "--epochs", "1", "--run-name", "nothing",
                         "--resume", "auto"], cwd=tmp_path)
    assert result.returncode == 2
    assert "no valid checkpoint" in result.stderr and "--run-name" in result.stderr


OPTIONS = ["--accumulate-steps", "3", "--ema-decay", "0.9", "--clip-grad-norm", "1.0",
           "--label-smoothing", "0.1", "--augment", "--optimizer", "adamw", "--lr", "0.003",
           "--no-decay-bias", "--weight-decay", "0.01", "--init", "he", "--val-split", "0.1"]


def test_every_train_step_option_resumes_bit_exactly_also_mid_accumulation(work, digits_dir):
    """1,440 training digits after the 10% held out: 45 steps an epoch, 15 updates, launched 16
    steps at a time. The signal goes out at the first launch end from step 37 on and the run
    stops at the next, in the middle of an epoch and between two micro-batches of one update."""
    args = ["--data-dir", str(digits_dir), "--output-dir", "runs", "--batch-size", "32",
            "--no-progress", "--no-plot", "--log-every", "0", "--seed", "11", "--epochs", "2",
            "--steps-per-launch", "16", *OPTIONS]
    straight = _run(work, *args, "--run-name", "options-straight")
    assert straight.returncode == 0, straight.stderr
    stopped = _run(work, *args, "--run-name", "options", "--callback",
                   "killer:SignalAfter(step=37)")
    assert stopped.returncode == 130, stopped.stderr
    bundle = load_bundle(work / "runs" / "options" / "checkpoints" / json.loads(
        (work / "runs" / "options" / "checkpoints" / "latest.json").read_text())["file"])
    assert bundle.meta.step_in_epoch > 0 and bundle.global_step % 3 != 0  # mid-accumulation
    assert int(bundle.params["grad_accum.count"].asnumpy()) == bundle.global_step % 3
    resumed = _run(work, *args, "--run-name", "options", "--resume", "auto")
    assert resumed.returncode == 0, resumed.stderr
    _assert_same_as_straight(work, "options", "options-straight")
    weights = _weights(work / "runs" / "options")
    assert any(k.startswith("ema.") for k in weights) and "grad_accum.count" in weights
    tests = [json.loads((work / "runs" / name / "history.json").read_text())["test"]
             for name in ("options", "options-straight")]
    for scored in tests:
        scored["best"].pop("checkpoint")  # in each run's own folder
    assert tests[0] == tests[1] and tests[0]["final"]["test_accuracy"] > 0.5
