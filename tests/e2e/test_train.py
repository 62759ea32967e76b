"""End to end: ``python train.py`` on generated digits, as a user runs it.

Measured on the generated data used here (3 epochs): LeNet-5 with the tutorial's lr 0.01 reaches
0.93-0.99 validation accuracy over seeds 0-3 on 6,000 training digits; the MLP reaches 0.94 on
1,600; the small user network 0.92-0.94 after 2 epochs. The thresholds below leave a wide margin.
"""

from __future__ import annotations

import csv
import json
import re
import shutil
import subprocess
import textwrap
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import run_train, train_here
from trainer.checkpoint import load_bundle
from trainer.cli import parse_args
from trainer.config import load_config
from trainer.data.idx import SPLIT_FILES, read_idx

pytestmark = pytest.mark.e2e

TESTS = Path(__file__).resolve().parents[1]
LENET_MIN_ACCURACY = 0.85
MLP_MIN_ACCURACY = 0.80
USER_NET_MIN_ACCURACY = 0.75
TRAIN_SIZE, TEST_SIZE = 6000, 600


def kept(count: int) -> int:
    """Training digits left once the default --val-split 0.1 has held its tenth out."""
    return count - round(0.1 * count)


LOSS_LINE = re.compile(r"^Epoch:\[\s*(\d+)/\s*(\d+)\], step:\[\s*(\d+)/\s*(\d+)\], "
                       r"loss:\[(\d+\.\d{3})/(\d+\.\d{3})\], time:\d+\.\d{3} ms(, lr:\d+\.\d{5})?$")
EPOCH_LINE = re.compile(r"^Epoch time: \d+\.\d{3} ms, per step time: \d+\.\d{3} ms, "
                        r"avg loss: \d+\.\d{3}$")
USER_NET = textwrap.dedent("""
    from mindspore import nn


    def build(num_classes=10):
        return nn.SequentialCell(nn.Flatten(), nn.Dense(32 * 32, 64), nn.ReLU(),
                                 nn.Dense(64, num_classes))


    build.image_size = 32  # so the pipeline must resize MNIST's 28x28 digits
""")
HOOKS = ("on_train_begin", "on_train_epoch_begin", "on_train_step_end", "on_train_epoch_end",
         "on_train_end", "on_eval_begin", "on_eval_end")


@dataclass
class Run:
    argv: list[str]
    result: subprocess.CompletedProcess
    run_dir: Path

    @property
    def rows(self) -> list[dict]:
        return json.loads((self.run_dir / "history.json").read_text())["rows"]

    def check(self) -> Run:
        assert self.result.returncode == 0, self.result.stdout + self.result.stderr
        assert "Traceback" not in self.result.stderr
        return self


def train(cwd: Path, name: str, *args: str, env: dict[str, str] | None = None,
          process: bool = False) -> Run:
    """train.py with ``args``: in this process, or with ``process`` as a command of its own
    (the LeNet run, the user's path)."""
    argv = ["--output-dir", "runs", "--run-name", name, "--no-progress", *args]
    runner = run_train if process else train_here
    return Run(argv, runner(argv, cwd=cwd, env=env), cwd / "runs" / name)


def final_weights(run_dir: Path) -> dict[str, np.ndarray]:
    pointer = json.loads((run_dir / "checkpoints" / "latest.json").read_text())
    bundle = load_bundle(run_dir / "checkpoints" / pointer["file"])
    return {k: v.asnumpy() for k, v in bundle.params.items() if not isinstance(v, str)}


def hooks_env() -> dict[str, str]:
    return {"PYTHONPATH": str(TESTS)}


# -------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("e2e")


@pytest.fixture(scope="module")
def big_digits(work) -> Path:
    """More digits than the shared fixture, so LeNet learns in 3 epochs at the tutorial's lr."""
    from trainer.data.synthetic import generate_digits

    return generate_digits(work / "digits", train_size=TRAIN_SIZE, test_size=TEST_SIZE, seed=5)


@pytest.fixture(scope="module")
def lenet_run(work, big_digits) -> Run:
    """The tutorial's recipe, 3 epochs, with the plot on."""
    return train(work, "e2e", "--data-dir", str(big_digits), "--epochs", "3",
                 "--batch-size", "32", process=True).check()


@pytest.fixture(scope="module")
def seed_runs(work, digits_dir) -> dict[str, Run]:
    common = ["--data-dir", str(digits_dir), "--epochs", "2", "--batch-size", "32",
              "--log-every", "0", "--no-plot"]
    return {name: train(work, name, *common, "--seed", seed).check()
            for name, seed in (("seed5", "5"), ("seed5-again", "5"), ("seed6", "6"))}


# ------------------------------------------------------------------------------- LeNet run
def test_lenet_prints_tutorial_loss_lines(lenet_run):
    lines = lenet_run.result.stdout.splitlines()
    steps = kept(TRAIN_SIZE) // 32
    loss_lines = [m for m in map(LOSS_LINE.match, lines) if m]
    assert len(loss_lines) == 3 * (steps // 100)  # every 100 steps by default
    for match in loss_lines:
        assert int(match.group(2)) == 3 and int(match.group(4)) == steps
        assert int(match.group(3)) % 100 == 0
    assert [int(m.group(1)) for m in loss_lines] == sorted(int(m.group(1)) for m in loss_lines)
    assert sum(bool(EPOCH_LINE.match(line)) for line in lines) == 3


def test_lenet_loss_falls_and_accuracy_is_reached(lenet_run):
    rows = lenet_run.rows
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    losses = [r["loss"] for r in rows]
    assert losses[-1] < losses[0] * 0.5, losses
    assert rows[-1]["val_accuracy"] >= LENET_MIN_ACCURACY, rows
    assert rows[-1]["val_loss"] < rows[0]["val_loss"]
    match = re.search(r"^Validation accuracy: (\d\.\d{4})", lenet_run.result.stdout, re.M)
    assert match and match.group(1) == f"{rows[-1]['val_accuracy']:.4f}"
    match = re.search(r"^Test accuracy: (\d\.\d{4})", lenet_run.result.stdout, re.M)
    assert match and match.group(1) == f"{rows[-1]['test_accuracy']:.4f}"
    assert rows[-1]["test_accuracy"] >= LENET_MIN_ACCURACY


def test_lenet_run_directory(lenet_run):
    run_dir = lenet_run.run_dir
    for name in ("config.yaml", "history.json", "history.csv", "history.png"):
        assert (run_dir / name).is_file(), name
    assert (run_dir / "history.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with open(run_dir / "history.csv", newline="") as handle:
        table = list(csv.DictReader(handle))
    assert [int(r["epoch"]) for r in table] == [1, 2, 3]
    for row, json_row in zip(table, lenet_run.rows):
        assert float(row["val_accuracy"]) == pytest.approx(json_row["val_accuracy"])
        assert float(row["loss"]) == pytest.approx(json_row["loss"])
    leftovers = [p for p in run_dir.rglob("*") if p.name.startswith(".") and ".tmp" in p.name]
    assert leftovers == []


def test_lenet_latest_checkpoint(lenet_run):
    folder = lenet_run.run_dir / "checkpoints"
    pointer = json.loads((folder / "latest.json").read_text())
    ckpt = folder / pointer["file"]
    assert ckpt.suffix == ".ckpt" and ckpt.is_file()
    bundle = load_bundle(ckpt)
    assert bundle.epoch == 3 and bundle.global_step == 3 * (kept(TRAIN_SIZE) // 32)
    assert bundle.meta.run.net == "lenet"
    assert "conv1.weight" in "".join(bundle.params)
    assert (folder / "best.ckpt").is_file()


def test_saved_config_is_the_resolved_one(lenet_run):
    saved = load_config(lenet_run.run_dir / "config.yaml")
    assert saved == parse_args(lenet_run.argv).config
    assert (saved.net, saved.epochs, saved.lr) == ("lenet", 3, 0.01)


def test_eval_only_reproduces_the_best_checkpoints_test_score(work, big_digits, lenet_run):
    result = train_here(["--eval-only", "--ckpt", str(lenet_run.run_dir), "--data-dir",
                        str(big_digits)], cwd=work)
    assert result.returncode == 0, result.stderr
    match = re.search(r"test accuracy (\d\.\d+) \((\d+)/(\d+)\), test loss (\d+\.\d+)",
                      result.stdout)
    assert match, result.stdout
    correct, count = int(match.group(2)), int(match.group(3))
    # A run directory stands for its best bundle: the first epoch with the best val_accuracy,
    # whose test score training recorded at its end.
    best = max(lenet_run.rows, key=lambda row: row["val_accuracy"])
    assert f"checkpoints/best.ckpt (epoch {best['epoch']}," in result.stdout
    scored = json.loads((lenet_run.run_dir / "history.json").read_text())["test"]["best"]
    assert count == TEST_SIZE
    assert match.group(1) == f"{scored['test_accuracy']:.4f}"
    assert abs(correct / count - scored["test_accuracy"]) < 1e-6
    assert float(match.group(4)) == pytest.approx(scored["test_loss"], abs=1e-4)
    assert not (work / "runs" / "eval").exists()


# ----------------------------------------------------------------------- other networks
def test_mlp_learns(work, digits_dir):
    run = train(work, "mlp", "--net", "mlp", "--data-dir", str(digits_dir), "--epochs", "3",
                "--no-plot").check()
    rows = run.rows
    assert rows[-1]["loss"] < rows[0]["loss"]
    assert rows[-1]["val_accuracy"] >= MLP_MIN_ACCURACY, rows
    bundle = load_bundle(run.run_dir / "checkpoints" / "best.ckpt")
    assert any("dense_relu_sequential" in name for name in bundle.params)


def test_user_network_from_the_current_folder(tmp_path, digits_dir):
    (tmp_path / "mymod.py").write_text(USER_NET)
    run = train(tmp_path, "mine", "--net", "mymod:build", "--data-dir", str(digits_dir),
                "--epochs", "2", "--no-plot", "--log-every", "0").check()
    rows = run.rows
    assert rows[-1]["loss"] < rows[0]["loss"]
    assert rows[-1]["val_accuracy"] >= USER_NET_MIN_ACCURACY, rows
    assert load_config(run.run_dir / "config.yaml").net == "mymod:build"
    weights = final_weights(run.run_dir)
    assert any(w.shape == (64, 32 * 32) for w in weights.values())  # resized to 32x32


# ---------------------------------------------------------------------------- determinism
def test_same_seed_gives_bit_identical_weights(seed_runs):
    first = final_weights(seed_runs["seed5"].run_dir)
    second = final_weights(seed_runs["seed5-again"].run_dir)
    assert first.keys() == second.keys() and len(first) > 0
    differing = [k for k in first if not np.array_equal(first[k], second[k])]
    assert differing == []

    def strip(rows):
        return [{k: v for k, v in r.items() if k != "epoch_time"} for r in rows]

    assert strip(seed_runs["seed5"].rows) == strip(seed_runs["seed5-again"].rows)


def test_different_seed_gives_different_weights(seed_runs):
    first = final_weights(seed_runs["seed5"].run_dir)
    other = final_weights(seed_runs["seed6"].run_dir)
    assert first.keys() == other.keys()
    differing = [k for k in first if not np.array_equal(first[k], other[k])]
    assert any(k.endswith("weight") for k in differing)


# ------------------------------------------------------------------------------ callbacks
def check_hooks(record: dict, run: Run, epochs: int, steps: int) -> None:
    calls = record["calls"]
    missing = [h for h in HOOKS if h not in calls]
    assert missing == [], calls
    assert calls["on_train_begin"] == calls["on_train_end"] == 1
    assert calls["on_train_epoch_begin"] == calls["on_train_epoch_end"] == epochs
    assert calls["on_train_step_end"] == epochs * steps
    assert calls["on_eval_end"] == epochs  # validation after every epoch
    order = record["order"]
    assert order[0] == "on_train_begin" and order[-1] == "on_train_end"
    assert order.index("on_eval_end") < order.index("on_train_end")
    assert record["eval_accuracy"] == pytest.approx([r["val_accuracy"] for r in run.rows])


def test_callback_from_the_command_line(tmp_path, digits_dir):
    record = tmp_path / "hooks.json"
    spec = f"userpkg.hooks:HookRecorder(path={str(record)!r}, tag='cli')"
    run = train(tmp_path, "cb", "--net", "mlp", "--data-dir", str(digits_dir), "--epochs", "2",
                "--batch-size", "64", "--no-plot", "--log-every", "0", "--callback", spec,
                env=hooks_env(), process=True).check()  # a command: its exit closes the files
    data = json.loads(record.read_text())
    assert data["args"] == {"path": str(record), "tag": "cli"}
    check_hooks(data, run, epochs=2, steps=kept(1600) // 64)
    # A file the callback left open at the end keeps every byte, as at a normal exit.
    assert record.with_suffix(".log").read_text() == "written in on_train_end\n" * 1000
    saved = load_config(run.run_dir / "config.yaml")
    assert saved.callbacks == [{"class": "userpkg.hooks:HookRecorder",
                                "args": {"path": str(record), "tag": "cli"}}]


def test_callback_from_yaml(tmp_path, digits_dir):
    record = tmp_path / "hooks.json"
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(textwrap.dedent(f"""
        net: mlp
        epochs: 1
        batch_size: 80
        log_every: 0
        plot: false
        callbacks:
          - class: userpkg.hooks.HookRecorder
            args: {{path: {json.dumps(str(record))}, tag: {{from: yaml, n: 2}}}}
    """))
    run = train(tmp_path, "cb-yaml", "--config", str(recipe), "--data-dir", str(digits_dir),
                env=hooks_env()).check()
    data = json.loads(record.read_text())
    assert data["args"]["tag"] == {"from": "yaml", "n": 2}
    check_hooks(data, run, epochs=1, steps=kept(1600) // 80)


# ------------------------------------------------------------------------------- data forms
def test_gzipped_data_trains(tmp_path, digits_gz_dir):
    data_dir = Path(shutil.copytree(digits_gz_dir, tmp_path / "gz"))
    run = train(tmp_path, "gz", "--net", "mlp", "--data-dir", str(data_dir), "--epochs", "1",
                "--batch-size", "64", "--no-plot", "--log-every", "0").check()
    assert f"Training mlp on {kept(640)} samples" in run.result.stdout
    assert len(run.rows) == 1
    for split, names in SPLIT_FILES.items():  # the originals are still there, untouched
        for name in names:
            assert (data_dir / split / f"{name}.gz").is_file()



def test_synthetic_source_generates_and_trains(tmp_path):
    data_dir = tmp_path / "generated"
    run = train(tmp_path, "syn", "--data-source", "synthetic", "--data-dir", str(data_dir),
                "--synthetic-train-size", "320", "--synthetic-test-size", "80", "--net", "mlp",
                "--epochs", "1", "--no-plot").check()
    for split, names in SPLIT_FILES.items():
        for name in names:
            assert (data_dir / split / name).is_file()
    assert len(read_idx(data_dir / "train" / SPLIT_FILES["train"][1])) == 320
    assert len(read_idx(data_dir / "test" / SPLIT_FILES["test"][1])) == 80
    assert f"Training mlp on {kept(320)} samples" in run.result.stdout
    assert "Test accuracy" in run.result.stdout
    assert len(run.rows) == 1


def test_overwrite_starts_afresh_and_keeps_the_earlier_run_aside(work, digits_dir):
    args = ["--net", "mlp", "--data-dir", str(digits_dir), "--epochs", "1", "--batch-size",
            "100", "--log-every", "0", "--no-plot"]
    first = train(work, "again", *args).check()
    earlier = (first.run_dir / "history.json").read_bytes()
    refused = train(work, "again", *args, "--lr", "0.05")
    assert refused.result.returncode == 2 and "already holds a run" in refused.result.stderr
    second = train(work, "again", *args, "--lr", "0.05", "--overwrite").check()
    assert "Moved the earlier run to" in second.result.stdout
    aside = [p for p in (work / "runs").iterdir() if p.name.startswith("again.replaced-")]
    assert len(aside) == 1 and (aside[0] / "history.json").read_bytes() == earlier
    assert second.rows and (second.run_dir / "config.yaml").read_text().count("lr: 0.05") == 1


def test_validation_is_held_out_of_the_training_files_and_the_test_split_scored_once(
        work, digits_dir):
    run = train(work, "holdout", "--net", "mlp", "--lr", "0.05", "--data-dir", str(digits_dir),
                "--epochs", "2", "--batch-size", "32", "--log-every", "0", "--no-plot").check()
    out = run.result.stdout
    assert "Training mlp on 1440 samples (45 steps/epoch" in out
    assert "validating on 160 digits held out of the training files" in out
    assert "the test split's 400 are scored once, at the end" in out
    history = json.loads((run.run_dir / "history.json").read_text())
    rows, test = history["rows"], history["test"]
    assert all("val_accuracy" in row for row in rows)
    assert "test_accuracy" in rows[-1] and "test_accuracy" not in rows[0]
    assert test["final"]["test_accuracy"] == rows[-1]["test_accuracy"] > 0.5
    assert Path(test["best"]["checkpoint"]).name == "best.ckpt"
    assert f"Test accuracy: {test['final']['test_accuracy']:.4f}" in out
    # --eval-only on the run directory scores its best bundle on the test split: the same number.
    evaluated = train_here(["--eval-only", "--ckpt", str(run.run_dir), "--data-dir",
                            str(digits_dir)], cwd=work)
    assert evaluated.returncode == 0, evaluated.stderr
    assert f"test accuracy {test['best']['test_accuracy']:.4f}" in evaluated.stdout


def test_val_split_zero_validates_on_the_test_split_and_says_so(work, digits_dir):
    run = train(work, "on-test", "--data-dir", str(digits_dir), "--epochs", "1",
                "--batch-size", "64", "--log-every", "0", "--no-plot", "--val-split",
                "0").check()
    assert "validating on the test split's 400 digits (--val-split 0)" in run.result.stdout
    assert json.loads((run.run_dir / "history.json").read_text())["test"] == {}
