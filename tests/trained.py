"""A pytest plugin with one small trained LeNet, shared by the evaluate, predict and export tests.

Test modules load it with ``pytest_plugins = ["tests.trained"]``, so the fixture is defined once
and the model is trained once per pytest run, whichever of those modules are selected.

Measured here: LeNet-5 with Adam (lr 0.005), 3 epochs on the 1,600 generated training digits of
``digits_dir``, reaches 0.95-0.97 accuracy on its 400 test digits in a few seconds; the tests
using it ask for much less.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import ROOT, train_here


@dataclass
class TrainedRun:
    """A finished run of train.py."""

    work: Path  # the folder train.py ran in
    run_dir: Path
    data_dir: Path
    test_count: int = 400  # the test split of digits_dir

    @property
    def checkpoint(self) -> Path:
        """The newest bundle, as latest.json names it."""
        folder = self.run_dir / "checkpoints"
        return folder / json.loads((folder / "latest.json").read_text())["file"]

    @property
    def best(self) -> Path:
        """The best bundle (best.ckpt), which naming the run directory evaluates."""
        return self.run_dir / "checkpoints" / "best.ckpt"

    def history(self, key: str) -> list[float]:
        """Every epoch's value of ``key`` in history.json."""
        return json.loads((self.run_dir / "history.json").read_text())["history"][key]

    def test(self, which: str) -> dict:
        """The test split's scores training recorded at its end: ``final`` or ``best``."""
        return json.loads((self.run_dir / "history.json").read_text())["test"][which]

    def last(self, key: str) -> float:
        """The last epoch's value of ``key`` in history.json (e.g. ``val_accuracy``)."""
        return json.loads((self.run_dir / "history.json").read_text())["history"][key][-1]


@pytest.fixture(scope="session")
def trained_lenet(tmp_path_factory, digits_dir) -> TrainedRun:
    """LeNet-5 trained for 3 epochs on ``digits_dir`` through train.py."""
    work = tmp_path_factory.mktemp("trained")
    result = train_here(["--net", "lenet", "--data-dir", str(digits_dir), "--epochs", "3",
                         "--optimizer", "adam", "--lr", "0.005", "--no-plot", "--no-progress",
                         "--log-every", "0", "--output-dir", "runs", "--run-name", "lenet"],
                        cwd=work)
    assert result.returncode == 0, result.stderr
    return TrainedRun(work, work / "runs" / "lenet", digits_dir)


def run_predict(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """Runs ``python predict.py ARGS`` in a subprocess, as a user would."""
    return subprocess.run([sys.executable, str(ROOT / "predict.py"), *args], cwd=cwd,
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONUNBUFFERED": "1", "GLOG_v": "3"})


@pytest.fixture
def predict_cli(tmp_path):
    """``predict_cli(*args)`` runs predict.py in ``tmp_path``."""

    def _run(*args: str) -> subprocess.CompletedProcess:
        return run_predict(list(args), cwd=tmp_path)

    return _run
