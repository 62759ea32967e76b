"""``--amp-level`` and ``--loss-scale`` as a user meets them: each level learns, a scaled run
resumes exactly, its checkpoint evaluates and exports in float32, and what cannot work is one
paragraph. Training runs in this process (``train_here``); the refusals a user meets at the
command line run as commands."""

from __future__ import annotations

import json
import re
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import ROOT, train_here
from tests.e2e.test_faults import QUICK, WITH_MINDSPORE, run_measured
from trainer.checkpoint import load_bundle

pytestmark = pytest.mark.e2e

# Where a run learns at all: 10 classes, so chance is 0.1; one epoch of each level reached
# 0.8-0.85 validation accuracy here.
LEARNED = 0.5
STOP_AT = textwrap.dedent("""
    import os, signal
    from mindspore.train import Callback

    class SignalAfter(Callback):
        launch_aware = True

        def __init__(self, step):
            self.step = step

        def on_train_step_end(self, run_context):
            if self.step is not None and run_context.original_args().cur_step_num >= self.step:
                self.step = None
                os.kill(os.getpid(), signal.SIGTERM)
""")
# A tracker of the user's, as docs/tracking.md describes one: what it is told goes to a file.
RECORDER = textwrap.dedent("""
    import json
    from callbacks.tracking import TrackingLogger

    class Recorder(TrackingLogger):
        def __init__(self, path):
            super().__init__(log_every=20)
            self.path, self.metrics = path, []

        def log_hparams(self, params, metrics):
            pass

        def log_metrics(self, metrics, step):
            self.metrics.append([step, dict(metrics)])

        def log_artifact(self, path, kind="file"):
            pass

        def finalize(self, status):
            with open(self.path, "w") as out:
                json.dump(self.metrics, out)
""")
LOSS_LINE = re.compile(r"^Epoch:\[ *0/ *1\], step:\[ *\d+/ *\d+\], loss:\[[\d.]+/[\d.]+\], "
                       r"time:[\d.]+ ms, lr:[\d.]+, loss scale:\d+, overflows:\d+$", re.M)


def _common(data: Path) -> list[str]:
    return ["--data-dir", str(data), "--epochs", "1", "--optimizer", "adam", "--lr", "0.005",
            "--no-plot", "--no-progress", "--log-every", "20", "--output-dir", "runs",
            "--seed", "7"]


def _rows(run_dir: Path) -> list[dict]:
    rows = json.loads((run_dir / "history.json").read_text())["rows"]
    return [{k: v for k, v in row.items() if k != "epoch_time"} for row in rows]


def _latest(run_dir: Path):
    folder = run_dir / "checkpoints"
    return load_bundle(folder / json.loads((folder / "latest.json").read_text())["file"])


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("amp")
    (folder / "stopper.py").write_text(STOP_AT)
    (folder / "recorder.py").write_text(RECORDER)
    return folder


def _train(work: Path, *args: str):
    return train_here(list(args), cwd=work, env={"PYTHONPATH": str(work)})


@pytest.fixture(scope="module")
def scaled(work, digits_dir) -> Path:
    """O2 with a dynamic scale that starts far too high, so the first updates overflow."""
    result = _train(work, *_common(digits_dir), "--amp-level", "O2", "--loss-scale", "dynamic",
                    "--loss-scale-value", str(2**24), "--run-name", "scaled",
                    "--callback", f"recorder:Recorder(path={str(work / 'tracked.json')!r})")
    assert result.returncode == 0, result.stderr
    return work / "runs" / "scaled"


@pytest.mark.parametrize("level, scale", [("O1", "none"), ("O3", "fixed"), ("auto", "dynamic")])
def test_each_level_learns(work, digits_dir, level, scale):
    result = _train(work, *_common(digits_dir), "--amp-level", level, "--loss-scale", scale,
                    "--run-name", f"{level}-{scale}")
    assert result.returncode == 0, result.stderr
    run_dir = work / "runs" / f"{level}-{scale}"
    row = _rows(run_dir)[-1]
    assert row["val_accuracy"] >= LEARNED and row["test_accuracy"] >= LEARNED, row
    assert f"Training step: mixed precision {level}" in result.stdout
    params = _latest(run_dir).params
    assert all(p.asnumpy().dtype == np.float32 for n, p in params.items()
               if not n.startswith(("loss_scale", "train_stats", "global_step")))
    if scale == "none":
        assert "loss_scale" not in row and "loss scale:" not in result.stdout
        assert not any(n.startswith("loss_scale") for n in params)
    else:
        assert row["loss_scale"] == 1024.0 and row["overflow_steps"] == 0
        assert LOSS_LINE.search(result.stdout), result.stdout
        assert float(params["loss_scale.value"].asnumpy()) == 1024.0
    assert not (work / "rewritten_network").exists()  # O1's rewrite keeps its code in the cache


def test_a_dynamic_scale_falls_on_overflow_and_the_run_learns(scaled):
    row = _rows(scaled)[-1]
    assert row["val_accuracy"] >= LEARNED, row
    assert row["overflow_steps"] >= 1 and row["loss_scale"] == 2**24 / 2**row["overflow_steps"]
    params = _latest(scaled).params
    assert int(params["loss_scale.overflows"].asnumpy()) == row["overflow_steps"]
    # What TensorBoard and MLflow are given: the scale every 20 steps, and the epoch's figures.
    tracked = json.loads((scaled.parent.parent / "tracked.json").read_text())
    steps = [(step, m["step/loss_scale"]) for step, m in tracked if "step/loss_scale" in m]
    assert [step for step, _ in steps] == [20, 40] and all(v <= 2**24 for _, v in steps)
    epoch = next(m for _, m in tracked if "train/loss_scale" in m)
    assert epoch["train/loss_scale"] == row["loss_scale"]
    assert epoch["train/overflow_steps"] == row["overflow_steps"]


def test_resume_mid_epoch_is_exact_with_a_level_and_a_scale(work, digits_dir, scaled):
    args = [*_common(digits_dir), "--amp-level", "O2", "--loss-scale", "dynamic",
            "--loss-scale-value", str(2**24), "--run-name", "resumed"]
    stopped = _train(work, *args, "--callback", "stopper:SignalAfter(step=20)")
    assert stopped.returncode == 130, stopped.stderr
    bundle = _latest(work / "runs" / "resumed")
    assert bundle.epoch == 0 and bundle.meta.step_in_epoch > 0
    resumed = _train(work, *args, "--resume", "auto")
    assert resumed.returncode == 0, resumed.stderr
    straight, other = _latest(scaled).params, _latest(work / "runs" / "resumed").params
    assert straight.keys() == other.keys()
    assert {"loss_scale.value", "loss_scale.counter", "loss_scale.overflows"} <= straight.keys()
    assert [k for k in straight if not np.array_equal(straight[k].asnumpy(),
                                                      other[k].asnumpy())] == []
    assert _rows(work / "runs" / "resumed") == _rows(scaled)


def test_resume_with_another_level_is_refused(work, digits_dir, scaled):
    result = _train(work, *_common(digits_dir), "--amp-level", "O0", "--loss-scale", "dynamic",
                    "--loss-scale-value", str(2**24), "--run-name", "scaled", "--epochs", "2",
                    "--resume", "auto")
    assert result.returncode == 2
    message = " ".join(result.stderr.split())
    assert "belongs to a different set-up" in message
    assert "amp_level: checkpoint 'O2', now 'O0'" in message and "Traceback" not in message


def test_the_amp_checkpoint_evaluates_and_exports_in_float32(work, digits_dir, scaled):
    import mindspore as ms
    from mindspore import nn

    from trainer.data.idx import read_idx
    from trainer.serving.loading import load_network
    from trainer.serving.predict import network_inputs

    evaluated = _train(work, "--eval-only", "--ckpt", str(scaled), "--data-dir", str(digits_dir))
    assert evaluated.returncode == 0, evaluated.stderr
    match = re.search(r"test accuracy (\d\.\d+) \((\d+)/(\d+)\)", evaluated.stdout)
    best = json.loads((scaled / "history.json").read_text())["test"]["best"]
    assert match and match.group(1) == f"{best['test_accuracy']:.4f}"  # as training scored it
    exported = _train(work, "--export", "mindir", "--ckpt", str(scaled), "--data-dir",
                      str(digits_dir))
    assert exported.returncode == 0, exported.stderr
    assert "input [N, 1, 32, 32] float32" in exported.stdout
    loaded = load_network(scaled)
    assert all(p.dtype == ms.float32 for p in loaded.cell.get_parameters())
    images = read_idx(digits_dir / "test" / "t10k-images-idx3-ubyte")[:8]
    x = ms.Tensor(network_inputs(images, 32))
    served = nn.GraphCell(ms.load(str(scaled / "export" / "lenet.mindir")))(x)
    assert served.dtype == ms.float32
    np.testing.assert_allclose(served.asnumpy(), loaded.cell(x).asnumpy(), rtol=1e-5, atol=1e-5)


def test_a_network_mindspore_cannot_copy_is_refused_and_leaves_no_run(work, digits_dir):
    (work / "locked_net.py").write_text(textwrap.dedent("""
        import threading
        from mindspore import nn

        class Locked(nn.Cell):
            def __init__(self, num_classes=10):
                super().__init__()
                self.guard = threading.Lock()
                self.body = nn.SequentialCell(nn.Flatten(), nn.Dense(28 * 28, num_classes))

            def construct(self, x):
                return self.body(x)
    """))
    result = _train(work, *_common(digits_dir), "--net", "locked_net:Locked", "--amp-level",
                    "O2", "--run-name", "locked")
    assert result.returncode == 2
    message = " ".join(result.stderr.split())
    assert message.startswith("error: --amp-level O2 needs a copy of the network Locked")
    assert "Traceback" not in result.stderr
    assert not (work / "runs" / "locked").exists()


# ---------------------------------------------------------------- as commands, measured
def test_an_unknown_level_at_the_command_line(tmp_path):
    result = run_measured([sys.executable, str(ROOT / "train.py"), "--amp-level", "O4"],
                          cwd=tmp_path)
    assert result.status == 2
    assert result.message.startswith("error: argument --amp-level: invalid choice: 'O4' (choose "
                                      "from 'O0', 'O1', 'O2', 'O3', 'auto').")
    assert "Traceback" not in result.stderr
    assert result.seconds < QUICK[0] and result.peak_mb < QUICK[1]
    assert list(tmp_path.iterdir()) == []


def test_an_unusable_gpu_is_one_paragraph(tmp_path, digits_dir):
    from trainer.device import gpu_problem

    problem = gpu_problem()
    if problem is None:
        pytest.skip("this machine has a working CUDA 11 GPU set-up")
    result = run_measured([sys.executable, str(ROOT / "train.py"), "--device", "GPU",
                           "--data-dir", str(digits_dir), "--run-name", "gpu"], cwd=tmp_path)
    assert result.status == 2
    assert result.message.startswith(f"error: --device GPU cannot be used here: {problem}. "
                                      "MindSpore 2.7.2 runs on an NVIDIA GPU with CUDA 11.1 or "
                                      "11.6")
    assert "Traceback" not in result.stderr and "[ERROR]" not in result.stderr
    assert result.seconds < WITH_MINDSPORE[0] and result.peak_mb < WITH_MINDSPORE[1]
    assert not (tmp_path / "runs").exists()
