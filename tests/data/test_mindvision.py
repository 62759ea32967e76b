"""mindvision 0.1.0: its Mnist as a data source, its LeNet, its callbacks, and the tutorial's code.

Measured on the generated digits used here (1,600 training digits, 2 epochs, batch 16, lr 0.02):
LeNet reaches 0.65-0.92 validation accuracy with either source and seeds 0-1. The thresholds
leave a margin.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import ROOT, run_train, train_here
from trainer.checkpoint import load_bundle
from trainer.data.idx import SPLIT_FILES, read_idx

pytestmark = pytest.mark.e2e

MIN_ACCURACY = 0.5
TUTORIAL = ROOT / "tests" / "scripts" / "mindvision_tutorial.py"
# mindvision's LossMonitor lines (its format, which our own LossMonitor copies).
MV_STEP_LINE = re.compile(r"^Epoch:\[\s*(\d+)/\s*(\d+)\], step:\[\s*(\d+)/\s*(\d+)\], "
                          r"loss:\[(\d+\.\d{3})/(\d+\.\d{3})\], time:\d+\.\d{3} ms, "
                          r"lr:(\d+\.\d{5})$")
EPOCH_LINE = re.compile(r"^Epoch time: \d+\.\d{3} ms, per step time: \d+\.\d{3} ms, "
                        r"avg loss: (\d+\.\d{3})$")
STOPPER = textwrap.dedent("""
    import os
    import signal

    from mindspore.train import Callback


    class StopAt(Callback):
        def __init__(self, step):
            self.step = step

        def on_train_step_end(self, run_context):
            if run_context.original_args().cur_step_num == self.step:
                os.kill(os.getpid(), signal.SIGTERM)
""")


def _common(data: Path) -> list[str]:
    return ["--data-dir", str(data), "--output-dir", "runs", "--epochs", "2", "--val-split", "0",
            "--batch-size", "16",
            "--lr", "0.02", "--seed", "0", "--no-progress", "--no-plot", "--log-every", "0"]


def _rows(run_dir: Path) -> list[dict]:
    return json.loads((run_dir / "history.json").read_text())["rows"]


def _weights(run_dir: Path) -> dict[str, np.ndarray]:
    folder = run_dir / "checkpoints"
    bundle = load_bundle(folder / json.loads((folder / "latest.json").read_text())["file"])
    return {k: v.asnumpy() for k, v in bundle.params.items() if not isinstance(v, str)}


def _python(*args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    """Runs ``python ARGS`` in a subprocess with the environment ``run_train`` gives."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "GLOG_v": "3",
           "MSTRAIN_CACHE": str(cwd / ".cache")}
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=env)


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("mindvision")
    (folder / "stopper.py").write_text(STOPPER)
    return folder


@pytest.fixture(scope="module")
def mv_run(work, digits_dir) -> subprocess.CompletedProcess:
    """``--data-source mindvision`` with mindvision's own LossMonitor added on the command line."""
    result = train_here([*_common(digits_dir), "--data-source", "mindvision", "--run-name", "mv",
                         "--callback", "mindvision.engine.callback:LossMonitor(lr_init=0.02, "
                         "per_print_times=25)"], cwd=work)
    assert result.returncode == 0, result.stderr
    return result


# ------------------------------------------------------------------------- lazy import
def test_importing_the_product_does_not_import_mindvision(tmp_path):
    code = textwrap.dedent(f"""
        import json, runpy, sys
        sys.argv = ["train.py", "--help"]
        try:
            runpy.run_path({str(ROOT / "train.py")!r}, run_name="__main__")
        except SystemExit:
            pass
        import callbacks, trainer, trainer.data.mindvision, trainer.networks.mindvision
        import trainer.engine.trainer
        from trainer.cli import parse_args
        parse_args(["--data-source", "mindvision", "--net", "mindvision-lenet"])
        print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] == "mindvision")))
    """)
    result = _python("-c", code, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "--data-source" in result.stdout  # the help text was printed
    assert json.loads(result.stdout.splitlines()[-1]) == []


# ------------------------------------------------------------------------ the pipeline
def _first_batch(dataset):
    return next(dataset.create_tuple_iterator(output_numpy=True, num_epochs=1))


@pytest.mark.parametrize("image_size", [32, 28])
def test_both_sources_give_the_same_batches(digits_dir, tmp_path, monkeypatch, image_size):
    from trainer import data
    from trainer.data import mindvision as mv_data

    monkeypatch.setenv("MSTRAIN_CACHE", str(tmp_path))
    args = dict(image_size=image_size, num_workers=1)
    for split, batch, training in (("train", 16, True), ("test", 256, False)):
        folder = digits_dir / split
        ours = data.build_dataset(folder, split, batch_size=batch, training=training, **args)
        theirs = mv_data.build_dataset(folder, split, batch_size=batch,
                                       training=training, **args)
        assert theirs.get_dataset_size() == ours.get_dataset_size()
        (x1, y1), (x2, y2) = _first_batch(ours), _first_batch(theirs)
        assert x1.shape == x2.shape == (batch, 1, image_size, image_size)
        assert y1.shape == y2.shape == (batch,)
        assert x1.dtype == x2.dtype == np.float32
        assert y1.dtype == y2.dtype == np.int32
        if not training:  # same order: same digits, same normalisation (resize rounding apart)
            np.testing.assert_array_equal(y1, y2)
            np.testing.assert_allclose(x1, x2, atol=0.02)
    # Evaluation keeps the last incomplete batch, so every test digit is scored.
    test = mv_data.build_dataset(digits_dir / "test", "test", batch_size=256,
                                 training=False, **args)
    labels = np.concatenate([y for _, y in test.create_tuple_iterator(output_numpy=True,
                                                                      num_epochs=1)])
    np.testing.assert_array_equal(labels, read_idx(digits_dir / "test" / SPLIT_FILES["test"][1]))


def test_gzipped_data_reaches_mindvision_through_links(digits_gz_dir, tmp_path, monkeypatch):
    from trainer.data import prepare_split
    from trainer.data.mindvision import build_dataset, mindvision_root

    monkeypatch.setenv("MSTRAIN_CACHE", str(tmp_path))
    split = prepare_split(digits_gz_dir, "test")  # raw copies, not in a folder named "test"
    root = mindvision_root(split.folder, "test")
    assert root.is_relative_to(tmp_path)
    assert mindvision_root(split.folder, "test") == root  # the links are reused
    dataset = build_dataset(split.folder, "test", image_size=32, batch_size=64, training=False)
    labels = np.concatenate([y for _, y in dataset.create_tuple_iterator(output_numpy=True,
                                                                         num_epochs=1)])
    names = SPLIT_FILES["test"]
    np.testing.assert_array_equal(labels, read_idx(digits_gz_dir / "test" / f"{names[1]}.gz"))


# ----------------------------------------------------------------------- training runs
def test_mindvision_source_learns_and_its_loss_monitor_works(work, mv_run):
    rows = _rows(work / "runs" / "mv")
    assert [r["epoch"] for r in rows] == [1, 2]
    assert rows[-1]["loss"] < rows[0]["loss"] * 0.9, rows
    assert rows[-1]["val_accuracy"] >= MIN_ACCURACY, rows
    assert (work / "runs" / "mv" / "checkpoints" / "best.ckpt").is_file()
    lines = mv_run.stdout.splitlines()
    steps = [m for m in map(MV_STEP_LINE.match, lines) if m]
    # mindvision's LossMonitor: every 25 of the 2 x 100 steps, with the rate it was given.
    assert [(int(m.group(1)), int(m.group(3))) for m in steps] == [
        (epoch, step) for epoch in (0, 1) for step in (25, 50, 75, 100)]
    assert all(m.group(2) == "2" and m.group(4) == "100" and m.group(7) == "0.02000"
               for m in steps)
    # Its epoch summaries and ours agree on the mean loss.
    means = [float(m.group(1)) for m in map(EPOCH_LINE.match, lines) if m]
    assert len(means) == 4
    for epoch, row in enumerate(rows):
        assert abs(means[2 * epoch] - means[2 * epoch + 1]) <= 0.002, means
        assert abs(means[2 * epoch] - row["loss"]) <= 0.002, (means, rows)


def test_resume_mid_epoch_with_mindvision_source_is_exact(work, mv_run, digits_dir):
    args = [*_common(digits_dir), "--data-source", "mindvision", "--run-name", "mv-stopped"]
    stopped = train_here([*args, "--callback", "stopper:StopAt(step=130)"], cwd=work)
    assert stopped.returncode == 130, stopped.stderr
    saved = re.search(r"after global step (\d+)", stopped.stderr)
    assert saved and 100 < int(saved.group(1)) < 200, stopped.stderr  # inside the second epoch
    resumed = train_here([*args, "--resume", "auto"], cwd=work)
    assert resumed.returncode == 0, resumed.stderr
    straight, other = _weights(work / "runs" / "mv"), _weights(work / "runs" / "mv-stopped")
    assert straight.keys() == other.keys()
    assert [k for k in straight if not np.array_equal(straight[k], other[k])] == []
    def history(name: str) -> list[dict]:
        return [{k: v for k, v in r.items() if k != "epoch_time"} for r in _rows(work / "runs"
                                                                               / name)]

    assert history("mv-stopped") == history("mv")


def test_mindvision_lenet_and_val_acc_monitor_from_python(tmp_path, digits_dir, capsys,
                                                          monkeypatch):
    from callbacks import ValAccMonitor
    from trainer import TrainConfig, Trainer

    monkeypatch.setenv("MSTRAIN_CACHE", str(tmp_path / ".cache"))
    out = str(tmp_path / "out")
    trainer = Trainer(TrainConfig(data_source="mnist", net="mindvision-lenet",
                                  data_dir=str(digits_dir), val_split=0, epochs=2, batch_size=16,
                                  lr=0.02, seed=0, output_dir=out, run_name="py", progress=False,
                                  plot=False, log_every=0))
    history = trainer.fit(callbacks=[ValAccMonitor(ckpt_directory=out + "/mv")])
    history = history.history["val_accuracy"]
    stdout = capsys.readouterr().out
    assert history[-1] >= MIN_ACCURACY, history
    # mindvision's monitor evaluated the same network on the same test split after each epoch.
    printed = [float(v) for v in re.findall(r"Accuracy:\s+(\d\.\d{3})", stdout)]
    assert len(printed) == 2
    assert all(abs(a - b) <= 0.0006 for a, b in zip(printed, history)), (printed, history)
    assert f"the best Accuracy is: {max(history): 5.3f}" in stdout
    import mindspore as ms

    best = ms.load_checkpoint(str(tmp_path / "out" / "mv" / "best.ckpt"))
    assert "backbone.conv1.weight" in best  # mindvision's LeNet inside our train step


def test_tutorial_code_runs_unchanged(tmp_path, digits_dir):
    """The tutorial's Mnist(...).run(), lenet(...), Model(...).train(...) with LossMonitor.

    It runs in PyNative mode (MindSpore's default; the tutorial sets no mode), about 10x slower a
    step than graph mode, so the run is one epoch of 100 steps at a higher rate. The tutorial sets
    no seed; the test seeds from outside so the run repeats. In these 100 steps seeds 0-7 all
    learn something: the epoch's mean loss is 1.74-2.25 and the test accuracy 0.27-0.76 (seed 0:
    1.74 and 0.59). The thresholds hold for every one of them, so a machine whose arithmetic
    sends the run along another path still passes.
    """
    seeded = ("import runpy, sys, mindspore; mindspore.set_seed(0); "
              "mindspore.dataset.config.set_seed(0); sys.argv = sys.argv[1:]; "
              "runpy.run_path(sys.argv[0], run_name='__main__')")
    result = _python("-c", seeded, str(TUTORIAL), str(digits_dir), "1", "16", "0.05",
                     cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    means = [float(m.group(1)) for m in map(EPOCH_LINE.match, result.stdout.splitlines()) if m]
    # The loss starts at ln(10) = 2.303 (LeNet's logits start near zero), so an epoch mean below
    # 2.27 means the loss went down.
    assert len(means) == 1 and means[0] < 2.27, result.stdout
    accuracy = re.search(r"^eval: \{'acc': ([\d.]+)\}$", result.stdout, re.M)
    assert accuracy, result.stdout
    assert float(accuracy.group(1)) >= 0.2, result.stdout  # twice chance


# -------------------------------------------------------------- mindvision not usable
BLOCK_IMPORT = textwrap.dedent("""
    import sys


    class _NoMindvision:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] == "mindvision":
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None


    sys.meta_path.insert(0, _NoMindvision())
""")
BROKEN_PACKAGE = 'raise ImportError("numpy.core.multiarray failed to import")\n'


@pytest.mark.parametrize("case, flags, expected", [
    ("missing", ["--data-source", "mindvision"], "which is not installed"),
    ("missing", ["--net", "mindvision-lenet"], "which is not installed"),
    ("broken", ["--data-source", "mindvision"], "installed but cannot be imported "
                                                "(ImportError: numpy.core.multiarray"),
])
def test_unusable_mindvision_is_a_clear_error(tmp_path, digits_dir, case, flags, expected):
    shim = tmp_path / "shim"
    if case == "missing":
        shim.mkdir()
        (shim / "sitecustomize.py").write_text(BLOCK_IMPORT)
    else:
        (shim / "mindvision").mkdir(parents=True)
        (shim / "mindvision" / "__init__.py").write_text(BROKEN_PACKAGE)
    result = run_train([*_common(digits_dir), *flags], cwd=tmp_path,
                       env={"PYTHONPATH": str(shim)})
    assert result.returncode == 2, result.stderr
    message = " ".join(result.stderr.split())
    assert message.startswith("error: "), message
    assert "Traceback" not in result.stderr
    assert f"{flags[0]} {flags[1]} needs" in message and expected in message
    assert 'pip install "mindvision==0.1.0" "opencv-python-headless<4.11"' in message
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").rglob("*.ckpt"))
